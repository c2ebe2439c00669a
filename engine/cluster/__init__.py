"""Several engine nodes on one database (issue #13): node registry, singletons, leases, wake-ups.

`Cluster` (engine/cluster/base.py) is what the rest of the engine sees: this node's id, whether it
holds a named singleton, `notify`/`subscribe` for cross-node wake-ups, and the cluster view for
`/status`. `LocalCluster` (SQLite, one node) holds every singleton and notifies nobody, at no cost per
message; `PostgresCluster` (engine/cluster/postgres.py) uses advisory locks, LISTEN/NOTIFY and a
`nodes` table with heartbeats, and renews and reaps delivery leases (engine/cluster/leases.py).
"""

from engine.cluster.base import Cluster, Singleton, export_singleton, fifo_singleton
from engine.cluster.local import LocalCluster
from engine.cluster.nodes import NodeInfo, NodeState, default_node_id

__all__ = ["Cluster", "LocalCluster", "NodeInfo", "NodeState", "Singleton", "default_node_id",
           "export_singleton", "fifo_singleton"]
