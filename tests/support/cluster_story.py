"""What the cluster stories (tests/cluster/) share: lease timings, the config body, what is missing."""

from __future__ import annotations

import importlib.util

from cluster import REPO

LEASE = 2.0
"""engine.cluster.lease in the stories (default 15 s): a dead node's deliveries wait this long."""
HEARTBEAT = 0.3
CLUSTER_SETTINGS = f"cluster: {{node_id: \"${{NODE_ID}}\", heartbeat: {HEARTBEAT}s, lease: {LEASE}s}}"


def missing() -> str | None:
    """What the stories need that this checkout does not have yet (None: everything is there)."""
    if importlib.util.find_spec("postgres") is None:
        return "needs tests/support/postgres.py (branch pgstore, not merged here yet)"
    if not (REPO / "engine" / "store" / "postgres.py").exists():
        return "needs the PostgreSQL store (engine/store/postgres.py, branch pgstore, not merged here yet)"
    if importlib.util.find_spec("engine.cluster") is None:
        return "needs engine/cluster (nodes, leases, branch cluster, not merged here yet)"
    return None


def person_route_to_sink(sink_url: str, *, destination: str = "") -> str:
    """The stories' config body: ADT^A01 → the shipped person route → an `http` destination `sink`."""
    return f"""
destinations:
  - name: sink
    type: http
    routes: [adt_person]
    retry: {{initial_delay: 0.2s, max_delay: 1s}}
    http: {{url: "{sink_url}/in", read_timeout: 5s}}
{destination}
routes: [{REPO / 'mappings' / 'adt_person.yaml'}]
"""
