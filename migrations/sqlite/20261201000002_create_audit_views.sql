-- The audit trail, one column per field (docs/audit.md). Each row of the `audit` stream holds
-- the canonical JSON text its hash covers; this view reads the fields out of it, so the hash
-- and the columns can never disagree. `ip`, `user_agent` and `changes.email` are sealed.
CREATE VIEW audit_events AS
SELECT seq,
       datetime(json_extract(text, '$.at') / 1000.0, 'unixepoch')  AS at,
       json_extract(text, '$.at')                                  AS at_ms,
       json_extract(text, '$.action')                              AS action,
       json_extract(text, '$.actor.type')                          AS actor_type,
       json_extract(text, '$.actor.id')                            AS actor_id,
       json_extract(text, '$.user_id')                             AS user_id,
       json_extract(text, '$.resource_type')                       AS resource_type,
       json_extract(text, '$.resource_id')                         AS resource_id,
       json_extract(text, '$.changes')                             AS changes,
       json_extract(text, '$.ip')                                  AS ip,
       json_extract(text, '$.user_agent')                          AS user_agent,
       json_extract(text, '$.request_id')                          AS request_id,
       prev_hash,
       hash,
       version
FROM stream_entries WHERE stream = 'audit';

CREATE INDEX stream_entries_audit_user ON stream_entries (json_extract(text, '$.user_id'), seq) WHERE stream = 'audit';
CREATE INDEX stream_entries_audit_action ON stream_entries (json_extract(text, '$.action'), seq) WHERE stream = 'audit';

-- Where the kept part of a stream begins once older entries were purged: the entry at
-- `first_seq` chains from `prev_hash`.
CREATE TABLE stream_anchors (
    stream    TEXT   PRIMARY KEY,
    first_seq BIGINT NOT NULL,
    prev_hash BLOB   NOT NULL
);
