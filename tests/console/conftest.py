"""Headless Chromium for the console tests, driven by Playwright's Python package.

Chromium is the Debian package (`/usr/bin/chromium`, or `YONGLINK_CHROMIUM`), installed by `make test`;
Playwright's own browser download is never used. A missing browser FAILS these tests rather than
skipping them, so CI cannot pass without running them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
"""Screenshots land here (gitignored); CI can keep the folder as a build artifact."""


def chromium_path() -> str:
    """The Chromium binary (`YONGLINK_CHROMIUM` when set, else the Debian one), or a test failure."""
    override = os.environ.get("YONGLINK_CHROMIUM")
    candidates = [override] if override else ["/usr/bin/chromium", shutil.which("chromium"),
                                              shutil.which("chromium-browser")]
    for found in candidates:
        if found and Path(found).is_file() and os.access(found, os.X_OK):
            return found
    pytest.fail(f"headless Chromium not found ({override or '/usr/bin/chromium'}): install the Debian "
                "package `chromium` (make test does) or set YONGLINK_CHROMIUM", pytrace=False)


OpenConsole = Callable[..., Awaitable[Any]]


@pytest.fixture
async def open_console(tmp_path: Path) -> AsyncIterator[OpenConsole]:
    """`page = await open_console(url, locale="en-GB")`: a fresh browser profile on the console, ready.

    Page errors (uncaught exceptions in the console's JavaScript) fail the test, and so does any request
    to somewhere other than the engine (the console must work without a CDN or any other network).
    """
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("the playwright Python package is missing (pip install -e '.[test]')", pytrace=False)
    executable = chromium_path()
    errors: list[str] = []
    foreign: list[str] = []
    contexts: list[Any] = []
    async with async_playwright() as pw:

        async def open_page(url: str, *, locale: str = "en-GB", hash: str = "#/channels") -> Any:
            profile = tmp_path / f"chromium-profile-{len(contexts)}"
            context = await pw.chromium.launch_persistent_context(
                str(profile), executable_path=executable, args=CHROMIUM_ARGS, headless=True,
                locale=locale, viewport={"width": 1440, "height": 900})
            contexts.append(context)
            context.set_default_timeout(15_000)
            page = context.pages[0] if context.pages else await context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            origin = url.rstrip("/") + "/"
            page.on("request", lambda req: None if req.url.startswith(origin) or req.url.startswith("data:")
                    else foreign.append(req.url))
            await page.goto(url + "/" + hash)
            await page.wait_for_function("document.body.dataset.ready === '1'")
            return page

        yield open_page
        for context in contexts:
            await context.close()
    assert not errors, f"JavaScript errors in the console: {errors}"
    assert not foreign, f"the console fetched from outside the engine: {foreign}"


@pytest.fixture
def screenshot() -> Callable[[Any, str], Awaitable[Path]]:
    """`await screenshot(page, "console-channels")` saves test-artifacts/console-channels.png."""

    async def take(page: Any, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    return take
