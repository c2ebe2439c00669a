"""What the cluster stories (tests/cluster/) share: lease timings and the config body."""

from __future__ import annotations

from cluster import REPO

LEASE = 2.0
"""engine.cluster.lease in the stories (default 15 s): a dead node's deliveries wait this long."""
HEARTBEAT = 0.3
CLUSTER_SETTINGS = f"cluster: {{node_id: \"${{NODE_ID}}\", heartbeat: {HEARTBEAT}s, lease: {LEASE}s}}"


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
