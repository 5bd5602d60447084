//! One typed `Settings`: defaults, then an optional TOML file, then `TESSERA_…` environment
//! variables (nested keys with `__`, e.g. `TESSERA_RAFT__HEARTBEAT_MS`).
//!
//! Secrets are [`Secret`]s: they deserialize from configuration but never print, neither in
//! `Debug` nor in the effective configuration that `tessera config check` shows.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use actix_web::http::header::HeaderName;
use base64::Engine;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tessera_cluster::{FlushConfig, ProposerConfig, RaftTuning, StoreTuning};

use crate::net::Cidr;

/// Shortest accepted secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// `dev` generates missing secrets into the data directory; `prod` refuses to start without them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    #[default]
    Dev,
    Prod,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A secret value from configuration. Prints as `<redacted>`, serializes as `<redacted>`.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(SecretString::from(value))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The 32-byte key this secret writes as base64url (43 characters, no padding), if it does.
    pub fn key_bytes(&self) -> Option<[u8; 32]> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(self.expose().trim()).ok()?.try_into().ok()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        // Environment values that look like numbers arrive as numbers; a secret is their text.
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A database URL. Its password never prints (`Debug`, effective configuration).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> DatabaseUrl {
        DatabaseUrl(url.into())
    }

    /// The URL with its password, for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `<redacted>`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub profile: Profile,
    /// This node's Raft id (≥ 1, unique in the cluster, never reused).
    pub node_id: u64,
    /// Public API listener.
    pub listen: SocketAddr,
    /// Peer listener: Raft RPC and forwarding between nodes. Keep it on a private network.
    pub peer_listen: SocketAddr,
    /// Address other nodes use to reach this node's public API (default: `listen`).
    pub advertise_addr: Option<String>,
    /// Address other nodes use to reach this node's peer listener (default: `peer_listen`).
    pub advertise_peer_addr: Option<String>,
    /// Raft log, local snapshots, dev secrets and (by default) the SQLite snapshot store.
    pub data_dir: PathBuf,
    /// Durable snapshot store: `postgres://…` or `sqlite:…`. Default: SQLite in `data_dir`.
    pub database_url: Option<DatabaseUrl>,
    /// Initialise a one-member cluster on the first start of a node with an empty data
    /// directory (and no snapshot to restore). Nodes that will join a cluster set `false`.
    pub bootstrap: bool,
    /// Rebuild from the snapshot store when starting with an empty data directory. Nodes that
    /// join a running cluster set `false` (they catch up from the leader instead).
    pub restore: bool,
    /// Reads (verify, sessions, profile) fail closed with 503 on a node whose replica is older
    /// than this: not confirmed current by a leader with a quorum (or, on the leader, by a
    /// quorum). At most `raft.election_timeout_max_ms`: openraft's leader lease, the earliest a
    /// newer leader can exist, so no node serves a read that a newer leader overwrote.
    pub max_staleness_ms: u64,
    /// Test-only: expose `/admin/faults` on the peer listener to partition this node.
    pub fault_injection: bool,
    /// Log filter, `tracing` syntax.
    pub log: String,
    pub log_format: LogFormat,
    /// HTTP worker threads for the public listener (0: one per core).
    pub workers: usize,
    /// Largest accepted request body on the public API.
    pub max_body_bytes: usize,
    /// Seconds given to in-flight requests on shutdown.
    pub shutdown_timeout_secs: u64,
    /// Shared by all nodes; authenticates peer traffic.
    pub cluster_secret: Option<Secret>,
    /// Shared by all nodes; keys the refresh-token MACs. Never stored with the data.
    pub refresh_pepper: Option<Secret>,
    /// Shared by all nodes; 32 bytes, base64url. Seals signing keys in the replicated store.
    pub key_encryption_key: Option<Secret>,
    /// Bearer token for the admin API (`/v1/admin/…`).
    pub admin_token: Option<Secret>,
    /// Peers whose `X-Forwarded-For` is believed (addresses or CIDRs, e.g. `10.0.0.0/8`).
    /// Everyone else's client address is the socket's. A list, or a comma-separated string.
    #[serde(deserialize_with = "list_or_commas")]
    pub trusted_proxies: Vec<Cidr>,
    /// Browser origins allowed to call the API with credentials (exact match, e.g.
    /// `https://app.example.com`). A list, or a comma-separated string (`TESSERA_CORS_ORIGINS`).
    #[serde(deserialize_with = "list_or_commas")]
    pub cors_origins: Vec<String>,
    /// `Strict-Transport-Security: max-age=…; includeSubDomains` on every response when set.
    pub hsts_max_age_secs: Option<u64>,
    pub cookies: CookieSettings,
    pub device: DeviceSettings,
    pub lockout: LockoutSettings,
    pub throttle: ThrottleSettings,
    pub password: PasswordSettings,
    pub tokens: TokenSettings,
    pub sessions: SessionSettings,
    pub audit: AuditSettings,
    pub mfa: MfaSettings,
    pub keys: KeySettings,
    /// Endpoints that receive security events (`[[webhooks]]`, see docs/audit.md).
    pub webhooks: Vec<WebhookSettings>,
    pub webhook_delivery: WebhookDelivery,
    pub argon2: Argon2Settings,
    pub raft: RaftTuning,
    pub proposer: ProposerConfig,
    pub flush: FlushConfig,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            profile: Profile::Dev,
            node_id: 1,
            listen: "127.0.0.1:8080".parse().expect("valid literal"),
            peer_listen: "127.0.0.1:7070".parse().expect("valid literal"),
            advertise_addr: None,
            advertise_peer_addr: None,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            bootstrap: true,
            restore: true,
            max_staleness_ms: 1_500,
            fault_injection: false,
            log: "info,openraft=warn,sqlx=warn,actix_server=warn".to_string(),
            log_format: LogFormat::Text,
            workers: 0,
            max_body_bytes: 16 * 1024,
            shutdown_timeout_secs: 10,
            cluster_secret: None,
            refresh_pepper: None,
            key_encryption_key: None,
            admin_token: None,
            trusted_proxies: Vec::new(),
            cors_origins: Vec::new(),
            hsts_max_age_secs: None,
            cookies: CookieSettings::default(),
            device: DeviceSettings::default(),
            lockout: LockoutSettings::default(),
            throttle: ThrottleSettings::default(),
            password: PasswordSettings::default(),
            tokens: TokenSettings::default(),
            sessions: SessionSettings::default(),
            audit: AuditSettings::default(),
            mfa: MfaSettings::default(),
            keys: KeySettings::default(),
            webhooks: Vec::new(),
            webhook_delivery: WebhookDelivery::default(),
            argon2: Argon2Settings::default(),
            raft: RaftTuning::default(),
            proposer: ProposerConfig::default(),
            flush: FlushConfig::default(),
        }
    }
}

/// Access tokens (EdDSA JWTs).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    /// `iss` of every access token and the discovery document's issuer. Default: the
    /// `http://<advertised public address>` of the node that initialised the cluster, recorded
    /// in the replicated store so every node agrees; set it explicitly (the same on every node)
    /// when nodes sit behind a load balancer.
    pub issuer: Option<String>,
    /// `aud` of every access token, required on verification.
    pub audience: String,
    pub access_ttl_secs: u64,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// Verified-token cache entries kept per node.
    pub verify_cache_entries: usize,
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            issuer: None,
            audience: "tessera".to_string(),
            access_ttl_secs: 600,
            leeway_secs: 5,
            verify_cache_entries: 100_000,
        }
    }
}

/// The signing keys' schedule (see docs/runbooks/key-rotation.md).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeySettings {
    /// How long a key signs before its successor takes over.
    pub rotation_days: u64,
    /// Overrides `rotation_days` with seconds (drills and tests).
    pub rotation_secs: Option<u64>,
    /// How long a successor is published in the JWKS before it signs: at least twice
    /// `jwks_max_age_secs`, so every verifier's cached key set holds it first.
    pub prepublish_secs: u64,
    /// `Cache-Control: max-age` of `/.well-known/jwks.json`.
    pub jwks_max_age_secs: u64,
}

impl Default for KeySettings {
    fn default() -> Self {
        KeySettings { rotation_days: 90, rotation_secs: None, prepublish_secs: 900, jwks_max_age_secs: 300 }
    }
}

impl KeySettings {
    pub fn rotate_every(&self) -> Duration {
        Duration::from_secs(self.rotation_secs.unwrap_or(self.rotation_days.saturating_mul(86_400)))
    }
}

/// Second factors and step-up (see docs/mfa.md).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MfaSettings {
    /// The issuer authenticator apps show next to the account (`otpauth://totp/<issuer>:<email>`).
    pub issuer: String,
    /// Sensitive operations (password change, MFA changes, logging out other sessions) need a
    /// session authenticated at most this long ago; older ones re-authenticate first (RFC 9470).
    pub step_up_max_age_secs: u64,
}

impl Default for MfaSettings {
    fn default() -> Self {
        MfaSettings { issuer: "Tessera".into(), step_up_max_age_secs: 300 }
    }
}

/// The audit trail (see docs/audit.md).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Days an event is kept in the snapshot store before the leader purges it.
    pub retention_days: u64,
    /// Events the replicas may hold that the snapshot store has not taken (it is unreachable)
    /// before writes that record events are refused with 503.
    pub max_backlog: usize,
    /// A signed checkpoint of the chain after this many events …
    pub checkpoint_every: u64,
    /// … or this long after the last one, whichever comes first.
    pub checkpoint_interval_secs: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            retention_days: 90,
            max_backlog: 100_000,
            checkpoint_every: 1_000,
            checkpoint_interval_secs: 60,
        }
    }
}

/// One webhook endpoint (Standard Webhooks).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Names the endpoint's replicated delivery cursor: keep it when the URL changes.
    pub name: String,
    /// `https://…` (or `http://` for a receiver on the same host or network).
    pub url: String,
    /// `whsec_` and base64 of 24 to 64 random bytes, as the receiver's library generates it.
    pub secret: Secret,
    /// Event actions to send (`login.failed`, `session.revoked`, …), or `["*"]` for all.
    pub events: Vec<String>,
}

impl WebhookSettings {
    /// The signing key: the base64 after `whsec_`.
    pub fn key(&self) -> Option<Vec<u8>> {
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
        let encoded = self.secret.expose().strip_prefix("whsec_")?;
        let key = STANDARD.decode(encoded).or_else(|_| STANDARD_NO_PAD.decode(encoded)).ok()?;
        (24..=64).contains(&key.len()).then_some(key)
    }

    pub fn wants(&self, action: &str) -> bool {
        self.events.iter().any(|e| e == "*" || e == action)
    }
}

/// How webhooks are delivered.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookDelivery {
    /// Delays before each retry of a failed delivery (±10% jitter); when they are used up the
    /// endpoint is disabled. About 5 s, 5 min, 30 min, 2 h, 5 h, 10 h: about 18 hours in all.
    pub retry_ms: Vec<u64>,
    /// Time allowed for one attempt.
    pub timeout_ms: u64,
}

impl Default for WebhookDelivery {
    fn default() -> Self {
        WebhookDelivery {
            retry_ms: vec![5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000],
            timeout_ms: 10_000,
        }
    }
}

/// Refresh-token families.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    /// How long after a rotation the previous refresh token may be retried from the same device.
    pub grace_secs: u64,
    /// A session not refreshed for this long expires.
    pub idle_secs: u64,
    /// A session expires this long after login, however active.
    pub absolute_secs: u64,
    /// How long an ended (expired or revoked) session's record is kept before it is deleted;
    /// at least the access-token lifetime plus leeway.
    pub retention_secs: u64,
    /// Seconds an idle actor stays in memory on the leader.
    pub actor_idle_secs: u64,
    /// Live sessions allowed per user.
    pub max_per_user: usize,
    /// What a login beyond `max_per_user` does.
    pub over_cap: OverCap,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverCap {
    /// Revoke the oldest session (default).
    #[default]
    EvictOldest,
    /// Refuse the new login with 409 (not a failed attempt).
    Deny,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            grace_secs: 10,
            idle_secs: 7 * 24 * 3600,
            absolute_secs: 30 * 24 * 3600,
            retention_secs: 24 * 3600,
            actor_idle_secs: 300,
            max_per_user: 5,
            over_cap: OverCap::EvictOldest,
        }
    }
}

/// Failed-login delays and lockout, per account.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutSettings {
    /// Consecutive failures that lock the account (1–100).
    pub threshold: u32,
    /// Wait after the first failure; it doubles with each further failure up to `max_delay_ms`.
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    pub lock_secs: u64,
    /// After this many temporary locks the account stays locked until an administrator
    /// unlocks it (0: never).
    pub permanent_after_locks: u32,
    /// A password check not reported within this time counts as a failure.
    pub permit_ttl_ms: u64,
}

impl Default for LockoutSettings {
    fn default() -> Self {
        LockoutSettings {
            threshold: 10,
            base_delay_ms: 1_000,
            max_delay_ms: 16_000,
            lock_secs: 3_600,
            permanent_after_locks: 0,
            permit_ttl_ms: 10_000,
        }
    }
}

/// Per-client-network limits (IPv4 /24, IPv6 /64), cluster-wide.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleSettings {
    /// Failed logins per network (across all accounts) per `login_window_secs`.
    pub login_failures: u32,
    pub login_window_secs: u64,
    /// Registration attempts per network per `registration_window_secs`.
    pub registrations: u32,
    pub registration_window_secs: u64,
    pub exempt_loopback: bool,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            login_failures: 100,
            login_window_secs: 600,
            registrations: 20,
            registration_window_secs: 3_600,
            exempt_loopback: false,
        }
    }
}

/// Cookie sessions for browser apps.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CookieSettings {
    /// Base of the cookie names: `__Host-<name>-at`, `__Secure-<name>-rt`, `__Host-<name>-csrf`.
    /// Two deployments with different names can run side by side during a rollout.
    pub name: String,
    pub same_site: SameSite,
    /// A parent domain to share the cookies with (then every name takes the `__Secure-` prefix,
    /// since `__Host-` cookies cannot carry a domain).
    pub domain: Option<String>,
}

impl Default for CookieSettings {
    fn default() -> Self {
        CookieSettings { name: "tessera".to_string(), same_site: SameSite::Strict, domain: None }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

/// How a session is tied to the device it was created on.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceSettings {
    /// Request headers whose values make up the device fingerprint.
    #[serde(deserialize_with = "list_or_commas")]
    pub headers: Vec<HeaderField>,
    /// A refresh or cookie-authenticated request from another device: `reject` (401, nothing
    /// changes) or `log` (allowed, counted and logged).
    pub binding: DeviceBinding,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        DeviceSettings {
            headers: vec![HeaderField(actix_web::http::header::USER_AGENT)],
            binding: DeviceBinding::Reject,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceBinding {
    Reject,
    Log,
}

/// An HTTP header name from configuration (checked when the configuration is read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderField(pub HeaderName);

impl FromStr for HeaderField {
    type Err = String;

    fn from_str(text: &str) -> Result<HeaderField, String> {
        HeaderName::try_from(text).map(HeaderField).map_err(|_| format!("{text:?} is not a header name"))
    }
}

impl Serialize for HeaderField {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.as_str())
    }
}

/// A list from TOML (`["a", "b"]`) or from one environment variable (`a,b`), each item parsed.
fn list_or_commas<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Text(String),
    }
    let items = match Either::deserialize(deserializer)? {
        Either::List(items) => items,
        Either::Text(text) => text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect(),
    };
    items.iter().map(|item| item.parse::<T>().map_err(serde::de::Error::custom)).collect()
}

/// Password rules (NIST SP 800-63B style).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordSettings {
    /// Minimum length in Unicode code points (8 at least; 15 recommended).
    pub min_length: usize,
    /// Minimum zxcvbn score, 0–4 (0 turns the guessability check off).
    pub min_score: u8,
}

impl Default for PasswordSettings {
    fn default() -> Self {
        PasswordSettings { min_length: 8, min_score: 3 }
    }
}

/// Password hashing (Argon2id) and the pool it runs on.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Argon2Settings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Hashing threads (0: one per core).
    pub threads: usize,
    /// Hashes waiting for a thread; beyond it requests get 503 at once.
    pub queue: usize,
}

impl Default for Argon2Settings {
    fn default() -> Self {
        Argon2Settings { memory_kib: 19_456, iterations: 2, parallelism: 1, threads: 0, queue: 64 }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(#[from] Box<figment::Error>);

impl Settings {
    /// Defaults, then `file` (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, LoadError> {
        Self::figment(file).extract().map_err(|e| LoadError(Box::new(e)))
    }

    fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::new();
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment.merge(Env::prefixed("TESSERA_").split("__").ignore(&["config"]))
    }

    pub fn tuning(&self) -> StoreTuning {
        StoreTuning { raft: self.raft.clone(), proposer: self.proposer.clone(), flush: self.flush.clone() }
    }

    pub fn database_url(&self) -> DatabaseUrl {
        self.database_url
            .clone()
            .unwrap_or_else(|| DatabaseUrl(format!("sqlite://{}", self.data_dir.join("tessera.sqlite").display())))
    }

    /// The configured issuer, or one derived from the public address actually advertised (which
    /// the cluster records as its issuer if this node initialises it).
    pub fn issuer(&self, advertised_public: &str) -> String {
        self.tokens.issuer.clone().unwrap_or_else(|| format!("http://{advertised_public}"))
    }

    pub fn advertised_public(&self) -> String {
        self.advertise_addr.clone().unwrap_or_else(|| self.listen.to_string())
    }

    pub fn advertised_peer(&self) -> String {
        self.advertise_peer_addr.clone().unwrap_or_else(|| self.peer_listen.to_string())
    }

    /// Every problem with this configuration, each naming the setting.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.node_id == 0 {
            problems.push("node_id must be at least 1".to_string());
        }
        if self.listen == self.peer_listen && self.listen.port() != 0 {
            problems.push(format!("listen and peer_listen must differ (both {})", self.listen));
        }
        if !(1024..=1024 * 1024).contains(&self.max_body_bytes) {
            problems.push("max_body_bytes must be between 1024 and 1048576".to_string());
        }
        if self.workers > 256 {
            problems.push("workers must be at most 256".to_string());
        }
        let url = self.database_url().0;
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.starts_with("sqlite:")) {
            problems.push("database_url must start with postgres://, postgresql:// or sqlite:".to_string());
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            problems.push(format!("log: {e}"));
        }
        let t = &self.tokens;
        if !(1..=86_400).contains(&t.access_ttl_secs) {
            problems.push("tokens.access_ttl_secs must be between 1 and 86400".to_string());
        }
        if t.audience.is_empty() || t.issuer.as_deref() == Some("") {
            problems.push("tokens.audience and tokens.issuer must not be empty".to_string());
        }
        if t.leeway_secs > 300 {
            problems.push("tokens.leeway_secs must be at most 300".to_string());
        }
        if self.profile == Profile::Prod && t.issuer.is_none() {
            problems.push("tokens.issuer is required in the prod profile (set TESSERA_TOKENS__ISSUER)".to_string());
        }
        let k = &self.keys;
        if k.prepublish_secs < 2 * k.jwks_max_age_secs {
            problems.push(
                "keys.prepublish_secs must be at least twice keys.jwks_max_age_secs, so every cached key set \
                 holds a successor before it signs"
                    .to_string(),
            );
        }
        if k.jwks_max_age_secs == 0 || k.rotate_every().as_secs() <= k.prepublish_secs {
            problems.push(
                "keys: need jwks_max_age_secs > 0 and a rotation period (rotation_days or rotation_secs) longer \
                 than prepublish_secs"
                    .to_string(),
            );
        }
        let s = &self.sessions;
        if s.idle_secs == 0 || s.absolute_secs < s.idle_secs || s.grace_secs > 300 {
            problems.push("sessions: need 0 < idle_secs ≤ absolute_secs and grace_secs ≤ 300".to_string());
        }
        if s.retention_secs < t.access_ttl_secs + t.leeway_secs {
            problems.push(
                "sessions.retention_secs must be at least tokens.access_ttl_secs + tokens.leeway_secs, so no \
                 deleted session still has a valid access token"
                    .to_string(),
            );
        }
        let l = &self.lockout;
        if !(1..=100).contains(&l.threshold) {
            problems.push("lockout.threshold must be between 1 and 100".to_string());
        }
        if l.max_delay_ms < l.base_delay_ms || l.lock_secs == 0 || l.permit_ttl_ms == 0 {
            problems
                .push("lockout: need base_delay_ms ≤ max_delay_ms, positive lock_secs and permit_ttl_ms".to_string());
        }
        let th = &self.throttle;
        if th.login_failures == 0
            || th.registrations == 0
            || th.login_window_secs == 0
            || th.registration_window_secs == 0
        {
            problems.push("throttle: limits and windows must be positive".to_string());
        }
        if self.password.min_length < 8 || self.password.min_length > 64 || self.password.min_score > 4 {
            problems.push("password: min_length must be 8–64 and min_score 0–4".to_string());
        }
        let a = &self.audit;
        if a.retention_days == 0 || a.max_backlog == 0 || a.checkpoint_every == 0 || a.checkpoint_interval_secs == 0 {
            problems.push(
                "audit: retention_days, max_backlog, checkpoint_every and checkpoint_interval_secs must be positive"
                    .to_string(),
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for hook in &self.webhooks {
            let name_ok = !hook.name.is_empty()
                && hook.name.len() <= 64
                && hook.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name_ok || !names.insert(hook.name.clone()) {
                problems
                    .push(format!("webhooks: name {:?} must be unique, 1–64 letters, digits, '-' or '_'", hook.name));
            }
            let url_ok = (hook.url.starts_with("https://") || hook.url.starts_with("http://"))
                && reqwest::Url::parse(&hook.url).is_ok_and(|u| u.host().is_some());
            if !url_ok {
                problems.push(format!("webhooks.{}: url must be an http(s) URL with a host", hook.name));
            }
            if hook.key().is_none() {
                problems.push(format!("webhooks.{}: secret must be whsec_ and base64 of 24–64 bytes", hook.name));
            }
            if hook.events.is_empty() {
                problems.push(format!("webhooks.{}: events must name at least one action, or \"*\"", hook.name));
            }
        }
        if self.webhook_delivery.retry_ms.is_empty() || self.webhook_delivery.timeout_ms == 0 {
            problems.push("webhook_delivery: retry_ms must list at least one delay and timeout_ms be positive".into());
        }
        if self.sessions.max_per_user == 0 {
            problems.push("sessions.max_per_user must be positive".to_string());
        }
        for origin in &self.cors_origins {
            let valid = (origin.starts_with("https://") || origin.starts_with("http://"))
                && !origin.ends_with('/')
                && origin.matches('/').count() == 2
                && origin != "*";
            if !valid {
                problems.push(format!("cors_origins: {origin:?} is not an origin like https://app.example.com"));
            }
        }
        let c = &self.cookies;
        let token = |s: &str| !s.is_empty() && s.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
        if !token(&c.name) {
            problems.push("cookies.name must be letters, digits, '-' or '_'".to_string());
        }
        if c.domain.as_deref().is_some_and(|d| d.is_empty() || d.contains(['/', ':', ' ', ';'])) {
            problems.push("cookies.domain must be a bare domain name".to_string());
        }
        let a = &self.argon2;
        if a.memory_kib < 8 * a.parallelism.max(1) || a.iterations == 0 || a.parallelism == 0 || a.queue == 0 {
            problems.push(
                "argon2: memory_kib ≥ 8 × parallelism, iterations, parallelism and queue must be positive".to_string(),
            );
        }
        if self.max_staleness_ms == 0 || self.max_staleness_ms > self.raft.election_timeout_max_ms {
            problems.push(format!(
                "max_staleness_ms must be positive and at most raft.election_timeout_max_ms ({})",
                self.raft.election_timeout_max_ms
            ));
        }
        if self.fault_injection && self.profile == Profile::Prod {
            problems.push("fault_injection is for tests and is refused in the prod profile".to_string());
        }
        problems.extend(self.tuning().problems());
        problems.extend(self.secret_problems());
        problems
    }

    /// The cluster secrets this configuration can carry: (setting, environment variable, value).
    pub fn secrets(&self) -> [(&'static str, &'static str, Option<&Secret>); 4] {
        [
            ("cluster_secret", "TESSERA_CLUSTER_SECRET", self.cluster_secret.as_ref()),
            ("refresh_pepper", "TESSERA_REFRESH_PEPPER", self.refresh_pepper.as_ref()),
            ("key_encryption_key", "TESSERA_KEY_ENCRYPTION_KEY", self.key_encryption_key.as_ref()),
            ("admin_token", "TESSERA_ADMIN_TOKEN", self.admin_token.as_ref()),
        ]
    }

    /// Problems with configured secrets (too short, a malformed key; missing in `prod`).
    fn secret_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, env, configured) in self.secrets() {
            match configured {
                Some(secret) if key == "key_encryption_key" && secret.key_bytes().is_none() => problems
                    .push("key_encryption_key must be 32 bytes written as base64url (43 characters)".to_string()),
                Some(secret) if secret.expose().len() < MIN_SECRET_LEN => {
                    problems.push(format!("{key} must be at least {MIN_SECRET_LEN} bytes"))
                }
                Some(_) => {}
                None if self.profile == Profile::Prod => {
                    problems.push(format!("{key} is required in the prod profile (set {env})"))
                }
                None => {}
            }
        }
        problems
    }

    /// The effective configuration as TOML, secrets and database passwords redacted.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = Some(self.database_url());
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

/// `postgres://user:password@host/db` → `postgres://user:<redacted>@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's `Jail` closures return its large error type
mod tests {
    use super::*;

    #[test]
    fn environment_variables_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TESSERA_LISTEN", "127.0.0.1:9999");
            jail.set_env("TESSERA_NODE_ID", "3");
            jail.set_env("TESSERA_RAFT__HEARTBEAT_MS", "200");
            jail.set_env("TESSERA_CLUSTER_SECRET", "12345678901234567890123456789012345");
            jail.set_env("TESSERA_PROFILE", "prod");
            let settings = Settings::load(None).expect("loads");
            assert_eq!(settings.listen.port(), 9999);
            assert_eq!(settings.node_id, 3);
            assert_eq!(settings.raft.heartbeat_ms, 200);
            assert_eq!(settings.profile, Profile::Prod);
            assert_eq!(settings.cluster_secret.unwrap().expose(), "12345678901234567890123456789012345");
            Ok(())
        });
    }

    #[test]
    fn a_file_is_overridden_by_the_environment_and_unknown_keys_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("t.toml", "node_id = 7\ndata_dir = \"/tmp/x\"\n[raft]\nheartbeat_ms = 300\n")?;
            jail.set_env("TESSERA_NODE_ID", "8");
            let settings = Settings::load(Some(Path::new("t.toml"))).expect("loads");
            assert_eq!((settings.node_id, settings.raft.heartbeat_ms), (8, 300));
            assert_eq!(settings.data_dir, PathBuf::from("/tmp/x"));

            jail.create_file("bad.toml", "node_idd = 7\n")?;
            let error = Settings::load(Some(Path::new("bad.toml"))).unwrap_err().to_string();
            assert!(error.contains("node_idd"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn secrets_and_database_passwords_never_print() {
        let settings = Settings {
            cluster_secret: Some(Secret::new("super-secret-value-that-is-long-enough".into())),
            database_url: Some(DatabaseUrl::new("postgres://tessera:hunter2@db/tessera")),
            ..Settings::default()
        };
        let shown = format!("{} {:?}", settings.redacted_toml(), settings);
        assert!(!shown.contains("super-secret"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://tessera:<redacted>@db/tessera"));
    }

    #[test]
    fn every_problem_is_named() {
        let settings = Settings {
            node_id: 0,
            peer_listen: "127.0.0.1:8080".parse().unwrap(),
            database_url: Some(DatabaseUrl::new("mysql://x")),
            max_body_bytes: 1,
            ..Settings::default()
        };
        let problems = settings.problems().join("\n");
        for needle in ["node_id", "peer_listen", "database_url", "max_body_bytes"] {
            assert!(problems.contains(needle), "{needle} missing from {problems}");
        }
    }

    #[test]
    fn proxies_and_device_headers_are_checked_when_read() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TESSERA_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1");
            jail.set_env("TESSERA_DEVICE__HEADERS", "user-agent,accept-language");
            let settings = Settings::load(None).expect("loads");
            assert_eq!(
                settings.trusted_proxies,
                vec![Cidr::parse("10.0.0.0/8").unwrap(), Cidr::parse("192.0.2.1").unwrap()]
            );
            assert_eq!(settings.device.headers.len(), 2);
            jail.set_env("TESSERA_TRUSTED_PROXIES", "10.0.0.0/8,nonsense");
            let error = Settings::load(None).unwrap_err().to_string();
            assert!(error.contains("nonsense") && error.to_lowercase().contains("trusted_proxies"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn an_ended_session_is_kept_until_its_access_tokens_have_expired() {
        let mut settings = Settings::default();
        assert!(settings.problems().iter().all(|p| !p.contains("retention_secs")), "the defaults hold");
        settings.sessions.retention_secs = settings.tokens.access_ttl_secs + settings.tokens.leeway_secs - 1;
        assert!(settings.problems().iter().any(|p| p.contains("sessions.retention_secs")));
    }
}
