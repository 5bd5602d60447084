-- The audit trail, one column per field (docs/audit.md). Each row of the `audit` stream holds
-- the canonical JSON text its hash covers; this view reads the fields out of it, so the hash
-- and the columns can never disagree. `ip`, `user_agent` and `changes.email` are sealed.
CREATE VIEW audit_events AS
SELECT seq,
       to_timestamp((e->>'at')::bigint / 1000.0)  AS at,
       (e->>'at')::bigint                         AS at_ms,
       e->>'action'                               AS action,
       e->'actor'->>'type'                        AS actor_type,
       e->'actor'->>'id'                          AS actor_id,
       e->>'user_id'                              AS user_id,
       e->>'resource_type'                        AS resource_type,
       e->>'resource_id'                          AS resource_id,
       e->'changes'                               AS changes,
       e->>'ip'                                   AS ip,
       e->>'user_agent'                           AS user_agent,
       e->>'request_id'                           AS request_id,
       prev_hash,
       hash,
       version
FROM (SELECT seq, prev_hash, hash, version, text::jsonb AS e FROM stream_entries WHERE stream = 'audit') AS rows;

-- "Everything about this user" and "every event of this kind" without a scan.
CREATE INDEX stream_entries_audit_user ON stream_entries (((text::jsonb)->>'user_id'), seq) WHERE stream = 'audit';
CREATE INDEX stream_entries_audit_action ON stream_entries (((text::jsonb)->>'action'), seq) WHERE stream = 'audit';

-- Where the kept part of a stream begins once older entries were purged: the entry at
-- `first_seq` chains from `prev_hash`.
CREATE TABLE stream_anchors (
    stream    TEXT   PRIMARY KEY,
    first_seq BIGINT NOT NULL,
    prev_hash BYTEA  NOT NULL
);
