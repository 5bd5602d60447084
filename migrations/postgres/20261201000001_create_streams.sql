-- Hash-chained streams of the replicated state (cluster/src/kv.rs, "Streams"): every entry the
-- leader flushed, in the same transaction as the map's changes, and each stream's head, which
-- stays when old entries are purged. hash = SHA-256(prev_hash || seq as 8 bytes big-endian || text).
CREATE TABLE stream_entries (
    stream    TEXT   NOT NULL,
    seq       BIGINT NOT NULL CHECK (seq > 0),
    version   BIGINT NOT NULL,
    prev_hash BYTEA  NOT NULL,
    hash      BYTEA  NOT NULL,
    text      TEXT   NOT NULL,
    PRIMARY KEY (stream, seq)
);

CREATE TABLE stream_heads (
    stream   TEXT   PRIMARY KEY,
    last_seq BIGINT NOT NULL,
    hash     BYTEA  NOT NULL
);
