-- 0002: several engine nodes on one PostgreSQL (issue #13 item 2; engine/cluster/), PostgreSQL.
-- nodes: one row per engine node, its heartbeat in the database server's clock (epoch seconds).
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid integer NOT NULL,
    admin_url TEXT,
    started_at double precision NOT NULL,
    heartbeat_at double precision NOT NULL,
    config_version TEXT NOT NULL,
    channels TEXT NOT NULL DEFAULT '[]',
    singletons TEXT NOT NULL DEFAULT '[]',
    state TEXT NOT NULL
);
-- Owner and lease of a delivery, and owner of a message, are set by the INSERT that creates the row
-- through these column defaults: the store's connections carry `-c yonglink.node_id=... -c
-- yonglink.lease=...` (engine/cluster/leases.py session_options), so the rooms' INSERTs are unchanged.
-- A connection without them (a tool) leaves owner NULL and the lease expired: some node takes the row.
-- Added without a default first, then the default set: existing rows get NULL, no table rewrite.
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS owner TEXT;
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS lease_until double precision;
ALTER TABLE deliveries ALTER COLUMN owner SET DEFAULT nullif(current_setting('yonglink.node_id', true), '');
ALTER TABLE deliveries ALTER COLUMN lease_until SET DEFAULT extract(epoch from clock_timestamp())
    + coalesce(nullif(current_setting('yonglink.lease', true), '')::double precision, 0);
ALTER TABLE messages ADD COLUMN IF NOT EXISTS owner TEXT;
ALTER TABLE messages ALTER COLUMN owner SET DEFAULT nullif(current_setting('yonglink.node_id', true), '');
CREATE INDEX IF NOT EXISTS deliveries_owner ON deliveries(owner, destination) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS deliveries_lease ON deliveries(lease_until) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS messages_owner ON messages(owner) WHERE state = 'received';
