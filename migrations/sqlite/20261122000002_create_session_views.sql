-- Operator views over the snapshot store. Timestamps are stored as Unix milliseconds.

CREATE VIEW identities AS
SELECT json_extract(value, '$.Identity.user')                                          AS user_id,
       json_extract(value, '$.Identity.email')                                         AS email,
       json_extract(value, '$.Identity.credential_version')                            AS credential_version,
       json_extract(value, '$.Identity.disabled')                                      AS disabled,
       datetime(json_extract(value, '$.Identity.created_at') / 1000.0, 'unixepoch')    AS created_at,
       version
FROM kv_store WHERE key LIKE 'user/%';

CREATE VIEW session_families AS
SELECT substr(key, 5)                                                                     AS family_id,
       json_extract(value, '$.Family.user')                                               AS user_id,
       json_extract(value, '$.Family.generation')                                         AS generation,
       datetime(json_extract(value, '$.Family.revoked.at') / 1000.0, 'unixepoch')         AS revoked_at,
       json_extract(value, '$.Family.revoked.reason')                                     AS revoke_reason,
       json_extract(value, '$.Family.login_device')                                       AS device_hash,
       json_extract(value, '$.Family.rotated_by')                                         AS last_device_hash,
       json_extract(value, '$.Family.ip_prefix')                                          AS last_ip_cidr,
       datetime(json_extract(value, '$.Family.auth_time') / 1000.0, 'unixepoch')          AS auth_time,
       datetime(json_extract(value, '$.Family.created_at') / 1000.0, 'unixepoch')         AS created_at,
       datetime(json_extract(value, '$.Family.last_seen') / 1000.0, 'unixepoch')          AS last_seen_at,
       datetime(json_extract(value, '$.Family.idle_deadline') / 1000.0, 'unixepoch')      AS idle_deadline,
       datetime(json_extract(value, '$.Family.absolute_deadline') / 1000.0, 'unixepoch')  AS absolute_deadline,
       version
FROM kv_store WHERE key LIKE 'fam/%';

CREATE INDEX kv_store_family_user ON kv_store (json_extract(value, '$.Family.user')) WHERE key LIKE 'fam/%';
CREATE INDEX kv_store_identity_email ON kv_store (json_extract(value, '$.Identity.email')) WHERE key LIKE 'user/%';
