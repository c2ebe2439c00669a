"""HTTP destination against a real aiohttp sink on loopback: retries, Retry-After, permanent failures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import delivery_support as S
import pytest

from engine.config import Config
from engine.runtime import Engine


def config(url: str, retry: str = "{initial_delay: 0.05, multiplier: 2, jitter: 0.2, max_attempts: 10}",
           extra: str = "") -> str:
    return f"""
engine:
  store: {{path: var/e.db}}
  admin: {{enabled: false}}
destinations:
  - name: platform
    type: http
    retry: {retry}
    http: {{url: "{url}/records"{extra}}}
"""


async def test_a_record_refused_with_503_three_times_is_delivered_once_on_the_fourth_attempt(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    sink = await S.Sink(script=[503, 503, 503]).start()
    try:
        engine: Engine = await engine_factory(make_config(config(sink.url)))
        [mid] = await S.inject(engine, records=[{"patient_id": "42"}], destinations=("platform",))
        await S.wait_for(lambda: sink.accepted)
        await S.wait_for(lambda: S.rows(engine, "SELECT 1 FROM deliveries WHERE state = 'sent'"))
        assert len(sink.requests) == 4 and len(sink.accepted) == 1
        assert sink.accepted[0].body == b'{"patient_id":"42"}' and sink.accepted[0].message_id == mid
        assert len({r.key for r in sink.requests}) == 1  # one Idempotency-Key across every attempt
        gaps = [b.at - a.at for a, b in zip(sink.requests, sink.requests[1:], strict=False)]
        for n, gap in enumerate(gaps):  # backoff 0.05 * 2**n, jitter at most -20 %
            assert gap >= 0.05 * 2**n * 0.8 - 0.01
        [(attempts, response)] = await S.rows(engine, "SELECT attempts, last_response FROM deliveries")
        assert attempts == 4 and response.startswith("HTTP 200")
    finally:
        await sink.stop()


async def test_retry_after_on_503_is_honoured(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    sink = await S.Sink(script=[503], retry_after="1").start()
    try:
        engine: Engine = await engine_factory(make_config(config(sink.url)))
        await S.inject(engine, records=[{"patient_id": "1"}], destinations=("platform",))
        await S.wait_for(lambda: sink.accepted)
        assert sink.requests[1].at - sink.requests[0].at >= 0.95  # not the 0.05 s backoff
    finally:
        await sink.stop()


async def test_retry_after_longer_than_max_delay_is_capped(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    sink = await S.Sink(script=[429], retry_after="3600").start()
    try:
        engine: Engine = await engine_factory(make_config(config(
            sink.url, retry="{initial_delay: 0.05, max_delay: 0.2, jitter: 0}")))
        await S.inject(engine, records=[{"patient_id": "1"}], destinations=("platform",))
        await S.wait_for(lambda: sink.accepted, timeout=10)
        assert sink.requests[1].at - sink.requests[0].at >= 0.19
    finally:
        await sink.stop()


async def test_a_400_is_dead_after_one_attempt_with_the_status_and_body_in_the_reason(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    sink = await S.Sink(default=400).start()
    try:
        engine: Engine = await engine_factory(make_config(config(sink.url)))
        [mid] = await S.inject(engine, records=[{"patient_id": "1"}], destinations=("platform",))
        [dead] = await S.wait_for(lambda: S.rows(
            engine, "SELECT message_id, destination, attempts, error, kind FROM dead_letters"))
        assert dead[:3] == (mid, "platform", 1) and dead[4] == "delivery"
        assert "HTTP 400" in dead[3] and "rejected: field x is bad" in dead[3]
        assert len(sink.requests) == 1
        [(state,)] = await S.rows(engine, "SELECT state FROM deliveries")
        assert state == "dead"
    finally:
        await sink.stop()


async def test_a_status_override_turns_409_into_success(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    sink = await S.Sink(default=409).start()
    try:
        engine: Engine = await engine_factory(make_config(config(
            sink.url, retry='{status_overrides: {"409": success}}')))
        await S.inject(engine, records=[{"patient_id": "1"}], destinations=("platform",))
        await S.wait_for(lambda: S.rows(engine, "SELECT 1 FROM deliveries WHERE state = 'sent'"))
    finally:
        await sink.stop()


async def test_bearer_token_comes_from_the_named_environment_variable(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from aiohttp import web

    seen: list[str] = []

    class AuthSink(S.Sink):  # type: ignore[misc,name-defined]
        async def handle(self, request: web.Request) -> web.Response:
            seen.append(request.headers.get("Authorization", ""))
            return await super().handle(request)

    monkeypatch.setenv("PLATFORM_TOKEN", "s3cret")
    sink = await AuthSink().start()
    try:
        engine: Engine = await engine_factory(make_config(config(
            sink.url, extra=", auth: {bearer_token_env: PLATFORM_TOKEN}")))
        await S.inject(engine, records=[{"patient_id": "1"}], destinations=("platform",))
        await S.wait_for(lambda: sink.accepted)
        assert seen == ["Bearer s3cret"]
    finally:
        await sink.stop()


async def test_a_refused_connection_is_retried_and_the_destination_shows_down(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    port = free_port()
    engine: Engine = await engine_factory(make_config(config(
        f"http://127.0.0.1:{port}", retry="{initial_delay: 0.01, max_delay: 0.02, max_attempts: 1000}")))
    await S.inject(engine, records=[{"patient_id": "1"}], destinations=("platform",))
    status = await S.wait_for(lambda: [d for d in engine.delivery.status() if d["state"] == "down"])
    assert "ClientConnectorError" in status[0]["last_error"]["text"]
    [(state, attempts)] = await S.rows(engine, "SELECT state, attempts FROM deliveries")
    assert state == "queued" and attempts >= 3


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_fhir_resources_go_to_their_type_bundles_to_the_base_and_operation_outcomes_are_kept(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    from aiohttp import web

    paths: list[tuple[str, str, str]] = []
    outcome = (b'{"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code":'
               b' "informational", "diagnostics": "created"}]}')

    class FhirSink(S.Sink):  # type: ignore[misc,name-defined]
        async def handle(self, request: web.Request) -> web.Response:
            body = await request.read()
            paths.append((request.method, request.path, request.content_type))
            if b"Bad" in body:
                bad = (b'{"resourceType": "OperationOutcome", "issue": [{"severity": "error",'
                       b' "code": "invalid", "diagnostics": "Patient.gender: unknown code"}]}')
                return web.Response(status=422, body=bad, content_type="application/fhir+json")
            return web.Response(status=201, body=outcome, content_type="application/fhir+json")

    sink = await FhirSink().start()
    try:
        engine: Engine = await engine_factory(make_config(f"""
engine:
  store: {{path: var/e.db}}
  admin: {{enabled: false}}
destinations:
  - name: fhir
    type: fhir
    ordering: fifo
    fhir: {{base_url: "{sink.url}/fhir/"}}
"""))
        await S.inject(engine, destinations=("fhir",), records=[
            {"resourceType": "Patient", "id": "p1"},
            {"resourceType": "Bundle", "type": "transaction", "entry": []},
            {"resourceType": "Patient", "name": [{"text": "Bad"}]}])
        [(error,)] = await S.wait_for(lambda: S.rows(engine, "SELECT error FROM dead_letters"))
        assert "HTTP 422" in error and "error invalid: Patient.gender: unknown code" in error
        assert paths == [("POST", "/fhir/Patient", "application/fhir+json"),
                         ("POST", "/fhir", "application/fhir+json"),
                         ("POST", "/fhir/Patient", "application/fhir+json")]
        sent = await S.rows(engine, "SELECT last_response FROM deliveries WHERE state = 'sent'")
        assert sent == [("HTTP 201: OperationOutcome: information informational: created",)] * 2
    finally:
        await sink.stop()
