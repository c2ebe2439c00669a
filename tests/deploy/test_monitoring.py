"""The shipped Grafana dashboard, Prometheus alert rules and systemd unit are checked against the real thing:
every metric they name exists in a running engine's /metrics; promtool and systemd-analyze accept them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from channels.mllp.client import MllpClient
from engine.config import Config
from engine.runtime import Engine

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
OURS = re.compile(r"\b((?:yonglink|process|python_gc)_[a-z_]+)\b")
CONFIG = """
engine:
  store: {path: var/monitoring.db}
  admin: {listen: "127.0.0.1:0"}
channels:
  - name: his
    type: mllp
    mllp: {listen: "127.0.0.1:0"}
destinations:
  - name: sink
    type: stub
routes: [routes/*.yaml]
"""
ROUTE = "id: fwd\nmatch:\n  message_type: ADT^A04\npassthrough: true\ndestinations: [sink]\n"
ADT = b"MSH|^~\\&|HIS|NBH|EMPI|NB|20261101120000||ADT^A04|C1|P|2.5.1\rPID|1||P1^^^NBH^PI||X^Y||19900101|M\r"


def expressions() -> dict[str, list[str]]:
    """Every PromQL expression shipped, by file."""
    dashboard = json.loads((DEPLOY / "grafana" / "yonglink.json").read_text(encoding="utf-8"))
    dash_exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", ())]
    dash_exprs += [v["query"] for v in dashboard["templating"]["list"] if v.get("type") == "query"]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    rule_exprs = [str(r["expr"]) for g in rules["groups"] for r in g["rules"]]
    return {"grafana/yonglink.json": dash_exprs, "prometheus/alerts.yml": rule_exprs}


def exported_names(text: str) -> set[str]:
    """Sample names and family names (a labelled counter not yet incremented has only its TYPE line)."""
    names = set(re.findall(r"^([a-zA-Z_:][\w:]*)[{ ]", text, re.M))
    names |= set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    for family in re.findall(r"^# TYPE (\S+) histogram$", text, re.M):
        names |= {f"{family}_bucket", f"{family}_count", f"{family}_sum"}
    return names


async def test_every_metric_named_by_the_dashboard_and_the_alerts_exists(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "fwd.yaml").write_text(ROUTE, encoding="utf-8")
    engine: Engine = await engine_factory(make_config(CONFIG))
    host, port = str(engine.channels["his"].describe()["listen"]).rsplit(":", 1)
    async with MllpClient(host, int(port)) as client:
        assert b"MSA|AA|C1" in await client.send(ADT)
    async with aiohttp.ClientSession() as http, http.get(f"{engine.admin.url}/metrics") as resp:
        exported = exported_names(await resp.text())
    named = {(file, name) for file, exprs in expressions().items() for e in exprs for name in OURS.findall(e)}
    assert len(named) >= 15
    missing = sorted((file, name) for file, name in named if name not in exported)
    assert not missing, f"named but not exported: {missing}"


def test_the_dashboard_is_grafana_json_with_unique_panel_ids() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "yonglink.json").read_text(encoding="utf-8"))
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] and dashboard["schemaVersion"] >= 36


def test_promtool_accepts_the_alert_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing: scripts/system-deps.sh installs Debian's prometheus package")
        pytest.skip("promtool not installed (scripts/system-deps.sh installs it)")
    proc = subprocess.run([promtool, "check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 8 rules found" in proc.stdout


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    """The unit as shipped, with ExecStart pointed at a binary that exists here (the real path is the
    install location, absent on a build machine)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not available on this machine")
    unit = (DEPLOY / "systemd" / "yonglink.service").read_text(encoding="utf-8")
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit and "NoNewPrivileges=yes" in unit
    local = tmp_path / "yonglink.service"
    local.write_text(unit.replace("/opt/yonglink/venv/bin/yonglink", shutil.which("true") or "/bin/true"),
                     encoding="utf-8")
    proc = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True, timeout=60,
                          check=False)
    # systemd-analyze exits 0 on unknown keys and bad values and only prints them: any line about the
    # unit file (e.g. "yonglink.service:12: Unknown key ...") is a failure
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if "yonglink.service" in line]
    assert proc.returncode == 0 and not problems, proc.stdout + proc.stderr
