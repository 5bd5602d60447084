-- Operator views over the snapshot store. Timestamps are stored as Unix milliseconds.

CREATE VIEW identities AS
SELECT i->>'user'                                           AS user_id,
       i->>'email'                                          AS email,
       (i->>'credential_version')::integer                  AS credential_version,
       (i->>'disabled')::boolean                            AS disabled,
       to_timestamp((i->>'created_at')::bigint / 1000.0)    AS created_at,
       version
FROM (SELECT version, value->'Identity' AS i FROM kv_store WHERE key LIKE 'user/%') AS rows;

CREATE VIEW session_families AS
SELECT substr(key, 5)                                                AS family_id,
       f->>'user'                                                    AS user_id,
       (f->>'generation')::bigint                                    AS generation,
       to_timestamp((f->'revoked'->>'at')::bigint / 1000.0)          AS revoked_at,
       f->'revoked'->>'reason'                                       AS revoke_reason,
       f->>'login_device'                                            AS device_hash,
       f->>'rotated_by'                                              AS last_device_hash,
       f->>'ip_prefix'                                               AS last_ip_cidr,
       to_timestamp((f->>'auth_time')::bigint / 1000.0)              AS auth_time,
       to_timestamp((f->>'created_at')::bigint / 1000.0)             AS created_at,
       to_timestamp((f->>'last_seen')::bigint / 1000.0)              AS last_seen_at,
       to_timestamp((f->>'idle_deadline')::bigint / 1000.0)          AS idle_deadline,
       to_timestamp((f->>'absolute_deadline')::bigint / 1000.0)      AS absolute_deadline,
       version
FROM (SELECT key, version, value->'Family' AS f FROM kv_store WHERE key LIKE 'fam/%') AS rows;

-- "All live sessions of a user" and "the account with this email" without a scan.
CREATE INDEX kv_store_family_user ON kv_store ((value->'Family'->>'user')) WHERE key LIKE 'fam/%';
CREATE INDEX kv_store_identity_email ON kv_store ((value->'Identity'->>'email')) WHERE key LIKE 'user/%';
