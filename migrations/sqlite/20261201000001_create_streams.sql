-- Hash-chained streams of the replicated state (cluster/src/kv.rs, "Streams"): every entry the
-- leader flushed, in the same transaction as the map's changes, and each stream's head, which
-- stays when old entries are purged. hash = SHA-256(prev_hash || seq as 8 bytes big-endian || text).
CREATE TABLE stream_entries (
    stream    TEXT    NOT NULL,
    seq       INTEGER NOT NULL CHECK (seq > 0),
    version   INTEGER NOT NULL,
    prev_hash BLOB    NOT NULL,
    hash      BLOB    NOT NULL,
    text      TEXT    NOT NULL,
    PRIMARY KEY (stream, seq)
) WITHOUT ROWID;

CREATE TABLE stream_heads (
    stream   TEXT    PRIMARY KEY NOT NULL,
    last_seq INTEGER NOT NULL,
    hash     BLOB    NOT NULL
) WITHOUT ROWID;
