"""yonglink installed from its wheel works outside the checkout: init, validate, test, run + send.

How the wheel gets a Python environment, and why:
- The wheel is built offline from a copy of the checkout's files (`git ls-files`, so stale `build/`
  leftovers cannot leak in), with `pip wheel --no-deps --no-build-isolation` and the setuptools of the
  test environment (the `test` extra pins one that builds wheels by itself).
- The fresh venv is made `--without-pip` and the wheel installed into it with this environment's pip
  (`pip --python`), `--no-deps --no-index`: no registry, no network.
- Its dependencies (aiohttp, hl7apy, fhir.resources, ...) are not installed again (that would take minutes
  and the network): a `.pth` file in the fresh venv appends this environment's site-packages to
  `sys.path`. A `.pth` line only appends a folder, it does not run the `.pth` files inside it, so the
  editable install of a checkout living there is not loaded, and the venv's own site-packages comes
  first: `engine`, `channels` and `yonglink_data` are the wheel's (asserted below). `PYTHONPATH` is removed
  from the environment of every command, and every command runs in a temp folder outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import site
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cli import main

REPO = Path(__file__).resolve().parents[1]
SHIPPED_TABLES = len(list((REPO / "mappings" / "tables").glob("*.yaml")))
"""The code tables the wheel ships (`yonglink validate` counts them; 13 before the datasets work)."""
COMMAND_TIMEOUT = 120
"""Seconds any one command may take before the test fails (a deadline, not a performance target)."""


def _checkout_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         cwd=REPO, check=True, capture_output=True).stdout.decode()
    return [name for name in out.split("\0") if name and os.path.lexists(REPO / name)]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A fresh venv with the yonglink wheel installed: (its bin folder, environment for commands)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    for name in _checkout_files():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_symlink():
            target.symlink_to(os.readlink(REPO / name))
        else:
            shutil.copy2(REPO / name, target)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    dist = base / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--wheel-dir", str(dist), str(source)],
                   check=True, env=env, cwd=base, timeout=COMMAND_TIMEOUT)
    (wheel,) = dist.glob("yonglink-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=COMMAND_TIMEOUT)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True, env=env).stdout.strip())
    (purelib / "_yonglink_test_dependencies.pth").write_text(
        "".join(f"{p}\n" for p in site.getsitepackages()), encoding="utf-8")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, env=env, cwd=base, timeout=COMMAND_TIMEOUT)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    yield venv / "bin", env


def _run(bin_dir: Path, env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir / "yonglink"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT)


@pytest.mark.slow
def test_the_wheel_runs_outside_the_checkout(installed: tuple[Path, dict[str, str]],
                                             tmp_path: Path) -> None:
    """Installed from the wheel, `yonglink init` writes a project that validate, test and run accept;
    a message sent over MLLP gets AA and its record reaches the outbox."""
    bin_dir, env = installed
    where = subprocess.run(
        [str(bin_dir / "python"), "-c",
         "import engine, channels, yonglink_data; print(engine.__file__, channels.__file__,"
         " yonglink_data.__file__)"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    for module_file in where.stdout.split():  # the wheel's modules, not the checkout's
        assert Path(module_file).is_relative_to(bin_dir.parent), where.stdout

    created = _run(bin_dir, env, tmp_path, "init", "project")
    assert created.returncode == 0, created.stderr
    project = tmp_path / "project"

    validated = _run(bin_dir, env, project, "validate")
    assert validated.returncode == 0, validated.stderr
    assert (f"config.yaml: valid (1 channels, 1 destinations, 1 routes, {SHIPPED_TABLES} code tables)"
            in validated.stdout)

    tested = _run(bin_dir, env, project, "test")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.splitlines()[-1] == "3 passed, 0 failed"

    run_env = {**env, "YONGLINK_MLLP_LISTEN": "127.0.0.1:0", "YONGLINK_ADMIN_LISTEN": "127.0.0.1:0"}
    with subprocess.Popen([str(bin_dir / "yonglink"), "run"], cwd=project, env=run_env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as engine:
        log_reader = threading.Thread(target=lambda: None)
        try:
            port, log_reader = _mllp_port(engine)
            sent = _run(bin_dir, env, project, "send", "--port", str(port), "samples/example_adt_a01.hl7")
            assert sent.returncode == 0, sent.stdout + sent.stderr
            assert sent.stdout.split("\t")[1:3] == ["EX-000001", "AA"]
            record = _wait_for_one(project / "var" / "outbox" / "person")
            assert record["name"] == "测试患者" and record["sex_code"] == "2"
        finally:
            engine.send_signal(signal.SIGTERM)
            code = engine.wait(timeout=COMMAND_TIMEOUT)
            if log_reader.ident is not None:
                log_reader.join(COMMAND_TIMEOUT)
        assert code == 0


@pytest.mark.slow
def test_the_wheel_ships_the_routes_and_their_tests(installed: tuple[Path, dict[str, str]],
                                                    tmp_path: Path) -> None:
    """Outside any project, `yonglink test` runs the route tests shipped in the wheel (with the sample
    messages they read) and `yonglink validate` accepts the shipped example config and its 17 routes."""
    bin_dir, env = installed
    tested = _run(bin_dir, env, tmp_path, "test", "-q")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.splitlines()[-1].endswith(" passed, 0 failed")

    example = bin_dir.parent / "lib"
    (config,) = example.glob("python*/site-packages/yonglink_data/config.example.yaml")
    validated = _run(bin_dir, env, tmp_path, "validate", "--config", str(config))
    assert validated.returncode == 0, validated.stderr
    assert f" routes, {SHIPPED_TABLES} code tables)" in validated.stdout


def _mllp_port(engine: subprocess.Popen[str]) -> tuple[int, threading.Thread]:
    """The MLLP port the engine bound (its JSON log says, `listen: 127.0.0.1:0` picks one); the rest of
    its log is read by a thread so that a full pipe never blocks the engine."""
    assert engine.stderr is not None
    stream = engine.stderr
    for line in stream:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "mllp listening":
            reader = threading.Thread(target=stream.read, daemon=True)
            reader.start()
            return int(str(event["listen"]).rsplit(":", 1)[1]), reader
    raise AssertionError(f"the engine exited ({engine.wait()}) before listening")


def _wait_for_one(folder: Path) -> dict[str, object]:
    deadline = time.monotonic() + COMMAND_TIMEOUT
    while time.monotonic() < deadline:
        files = sorted(folder.rglob("*.json")) if folder.is_dir() else []
        if files:
            return dict(json.loads(files[0].read_text(encoding="utf-8")))
        time.sleep(0.1)
    raise AssertionError(f"no record in {folder}")


def _make_plan(target: str, tmp_path: Path) -> list[str]:
    """The commands `make TARGET` would run on a fresh machine (`-n -B`: print, do not run)."""
    out = subprocess.run(["make", "--no-print-directory", "-n", "-B", target, f"VENV={tmp_path / 'venv'}"],
                         cwd=REPO, check=True, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    return out.stdout.splitlines()


def test_make_run_installs_runtime_dependencies_only(tmp_path: Path) -> None:
    """`make run` installs yonglink without the test extra; `make test` adds it (two stamps)."""
    run_plan = _make_plan("run", tmp_path)
    assert any(line.endswith("pip install --quiet -e .") for line in run_plan), run_plan
    assert not any("[test]" in line for line in run_plan), run_plan
    test_plan = _make_plan("test", tmp_path)
    assert any(line.endswith("pip install --quiet -e '.[test]'") for line in test_plan), test_plan


def test_init_writes_a_project_that_validate_and_test_accept(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """From the checkout: `yonglink init` then, inside the project, `validate` and `test` with no
    arguments pick its config.yaml and routes/tests."""
    assert main(["init", str(tmp_path / "p")]) == 0
    assert sorted(p.relative_to(tmp_path / "p").as_posix() for p in (tmp_path / "p").rglob("*.*")) == [
        "config.yaml", "routes/example_person.yaml", "routes/tests/example_person.yaml",
        "samples/example_adt_a01.hl7"]
    monkeypatch.chdir(tmp_path / "p")
    capsys.readouterr()
    assert main(["validate"]) == 0
    assert capsys.readouterr().out.startswith("config.yaml: valid (1 channels, 1 destinations, 1 routes")
    assert main(["test"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "3 passed, 0 failed"


def test_init_never_overwrites_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.yaml").write_text("mine\n", encoding="utf-8")
    assert main(["init", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (f"yonglink init: {tmp_path / 'config.yaml'} already exists; nothing"
                                       " written (choose an empty folder)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
    assert (tmp_path / "config.yaml").read_text(encoding="utf-8") == "mine\n"
