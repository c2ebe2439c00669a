-- 0001: the schema of every room as it was before numbered migrations (issue #13), SQLite.
-- Idempotent (IF NOT EXISTS): a store made by the old per-room DDL upgrades by running it again.

-- the store itself
CREATE TABLE IF NOT EXISTS engine_meta (key TEXT PRIMARY KEY, value TEXT);

-- messages and mapped results (engine/store/messages.py, inserts.py)
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    received_at REAL NOT NULL,
    peer TEXT,
    content_type TEXT NOT NULL,
    charset TEXT,
    sending_application TEXT,
    sending_facility TEXT,
    control_id TEXT,
    message_type TEXT,
    dedupe_key TEXT,
    state TEXT NOT NULL,
    error TEXT,
    processed_at REAL,
    metadata TEXT,
    raw BLOB
);
DROP INDEX IF EXISTS messages_dedupe;
DROP INDEX IF EXISTS messages_control_id;
CREATE INDEX IF NOT EXISTS messages_lookup ON messages(control_id, dedupe_key);
CREATE INDEX IF NOT EXISTS messages_channel_time ON messages(channel, received_at);
CREATE INDEX IF NOT EXISTS messages_unprocessed ON messages(seq) WHERE state = 'received';
CREATE TABLE IF NOT EXISTS results (
    message_id TEXT NOT NULL,
    route_id TEXT NOT NULL,
    dataset TEXT,
    record TEXT,
    filtered TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (message_id, route_id)
);

-- access audit (engine/store/access_audit.py)
CREATE TABLE IF NOT EXISTS access_audit (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    remote TEXT,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS access_audit_at ON access_audit(at);

-- deliveries, attempts, dead letters, DLQ audit (engine/delivery/outbox.py)
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    message_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    route_id TEXT NOT NULL,
    dataset TEXT,
    channel TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    created_at REAL NOT NULL,
    first_attempt_at REAL,
    last_attempt_at REAL,
    last_error TEXT,
    last_response TEXT,
    order_value TEXT,
    content_type TEXT NOT NULL,
    payload BLOB,
    UNIQUE (message_id, route_id, destination)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(destination, next_attempt_at) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS deliveries_fifo ON deliveries(destination, seq) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries(destination) WHERE state = 'dead';
CREATE INDEX IF NOT EXISTS deliveries_sent ON deliveries(last_attempt_at)
    WHERE state = 'sent' AND payload IS NOT NULL;
CREATE TABLE IF NOT EXISTS delivery_attempts (
    delivery_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at REAL NOT NULL,
    result TEXT NOT NULL,
    error TEXT,
    response TEXT,
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    message_id TEXT NOT NULL,
    channel TEXT,
    destination TEXT,
    route_id TEXT,
    dataset TEXT,
    delivery_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    first_attempt_at REAL,
    last_attempt_at REAL,
    created_at REAL NOT NULL,
    error TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_time ON dead_letters(created_at);
CREATE INDEX IF NOT EXISTS dead_letters_message ON dead_letters(message_id);
CREATE TABLE IF NOT EXISTS dlq_audit (
    seq INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    action TEXT NOT NULL,
    who TEXT NOT NULL,
    dead_letter_id TEXT,
    message_id TEXT,
    destination TEXT,
    detail TEXT
);

-- export connector (channels/export/records.py)
CREATE TABLE IF NOT EXISTS export_records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    org TEXT NOT NULL DEFAULT '',
    collected_at REAL NOT NULL,
    exported_at REAL,
    payload BLOB NOT NULL,
    UNIQUE (destination, delivery_id)
);
CREATE INDEX IF NOT EXISTS export_records_period ON export_records(destination, collected_at);
CREATE INDEX IF NOT EXISTS export_records_pending ON export_records(destination, collected_at)
    WHERE exported_at IS NULL;
CREATE TABLE IF NOT EXISTS export_files (
    destination TEXT NOT NULL,
    dataset TEXT NOT NULL,
    org TEXT NOT NULL DEFAULT '',
    period_start REAL NOT NULL,
    period_end REAL NOT NULL,
    file TEXT NOT NULL,
    records INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    written_at REAL NOT NULL,
    PRIMARY KEY (destination, dataset, org, period_start)
);
CREATE TABLE IF NOT EXISTS export_cursor (
    destination TEXT PRIMARY KEY,
    next_period_start REAL NOT NULL
);

-- traffic history (engine/admin/traffic_history.py)
CREATE TABLE IF NOT EXISTS traffic_history (
    step INTEGER NOT NULL,
    at REAL NOT NULL,
    received INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    dead INTEGER NOT NULL,
    PRIMARY KEY (step, at)
) WITHOUT ROWID;
