"""Who this node is, decided once from the config, for both the cluster and the store's connections.

`yonglink run` builds the store before the engine (to claim it first), the engine builds the cluster:
both ask here, so the `owner` the store's connections write (engine/cluster/leases.py session options)
is the id the cluster claims with.
"""

from __future__ import annotations

import dataclasses

from engine.cluster.leases import with_session_options
from engine.cluster.nodes import default_node_id
from engine.config import Config, StoreConfig
from engine.store.connection import Dialect


def node_id_of(config: Config) -> str:
    """`engine.cluster.node_id`, or `<hostname>-<pid>`."""
    return config.engine.cluster.node_id or default_node_id()


def store_config_of(config: Config) -> StoreConfig:
    """`engine.store`, with this node's id and lease in a PostgreSQL DSN's session settings (the `owner`
    and `lease_until` column defaults read them); a SQLite store as configured."""
    st = config.engine.store
    if st.backend is Dialect.POSTGRES and st.dsn:
        return dataclasses.replace(st, dsn=with_session_options(st.dsn, node_id_of(config),
                                                                 config.engine.cluster.lease))
    return st
