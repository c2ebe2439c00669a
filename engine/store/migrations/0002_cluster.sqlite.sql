-- 0002: several engine nodes on one PostgreSQL (issue #13 item 2; engine/cluster/), SQLite.
-- One engine owns a SQLite store (engine/store/lock.py): the cluster is that node alone and nothing reads
-- these columns or this table (engine/cluster/local.py). They exist so both backends share one schema
-- history; ADD COLUMN without a default writes nothing to existing rows, and the INSERTs leave them NULL.
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    admin_url TEXT,
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    config_version TEXT NOT NULL,
    channels TEXT NOT NULL DEFAULT '[]',
    singletons TEXT NOT NULL DEFAULT '[]',
    state TEXT NOT NULL
);
ALTER TABLE deliveries ADD COLUMN owner TEXT;
ALTER TABLE deliveries ADD COLUMN lease_until REAL;
ALTER TABLE messages ADD COLUMN owner TEXT;
