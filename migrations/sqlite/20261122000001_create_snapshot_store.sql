-- The durable snapshot of the replicated key-value map (see cluster/src/durable/mod.rs).
-- One row per live key; `version` is the Raft log index that last wrote it.
CREATE TABLE kv_store (
    key     TEXT    PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL CHECK (version > 0),
    value   TEXT    NOT NULL CHECK (json_valid(value))
) WITHOUT ROWID;

-- The watermark: every change up to `applied_index` is in kv_store. `meta` holds the log id
-- at that index and the cluster membership, which a restore needs.
CREATE TABLE snapshot_meta (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    applied_index INTEGER NOT NULL,
    meta          TEXT,
    flushed_at    TEXT
);

INSERT INTO snapshot_meta (id, applied_index) VALUES (1, 0);
