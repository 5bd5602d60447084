//! What every handler of the public listener shares.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_actors::domain::StepUp;
use tessera_actors::factor_keys::FactorKeys;

use metrics_exporter_prometheus::PrometheusHandle;
use tessera_actors::domain::PasswordPolicy;
use tessera_actors::ports::{Clock, Entropy, Replicator};
use tessera_actors::{Record, Registry};
use tessera_cluster::ClusterNode;

use crate::audit::store::AuditReader;
use crate::config::{Secret, WebhookSettings};
use crate::gateway::Gateway;
use crate::http::client::ClientPolicy;
use crate::http::cookies::CookiePolicy;
use crate::http::csrf::Csrf;
use crate::passwords::Passwords;
use crate::tokens::AccessTokens;

pub struct AppState {
    /// This node, for the operator views and its freshness (reads of the replicated state go
    /// through `replica`).
    pub node: ClusterNode<Record>,
    pub gateway: Gateway,
    pub registry: Arc<Registry>,
    pub passwords: Arc<Passwords>,
    pub tokens: Arc<AccessTokens>,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    /// How requests map to devices and client networks.
    pub clients: ClientPolicy,
    pub cookies: CookiePolicy,
    pub csrf: Csrf,
    /// Exact-match browser origins allowed with credentials.
    pub cors_origins: Vec<String>,
    /// The local replica, for the reads the domain defines (session liveness, session lists).
    pub replica: Arc<dyn Replicator>,
    pub password_policy: PasswordPolicy,
    /// Reads fail closed on a node out of touch with a leader for longer than this.
    pub max_staleness: Duration,
    pub admin_token: Secret,
    pub metrics: PrometheusHandle,
    pub started: Instant,
    /// The audit trail in the snapshot store, for the admin query.
    pub audit: AuditReader,
    /// Opens the personal data of events without an account.
    pub audit_pii_key: [u8; 32],
    /// Configured webhook endpoints.
    pub webhooks: Arc<Vec<WebhookSettings>>,
    /// Seals new TOTP secrets and digests new recovery codes.
    pub factors: FactorKeys,
    /// The issuer named in `otpauth://` URIs.
    pub mfa_issuer: String,
    /// How fresh a session must be for sensitive operations.
    pub step_up: StepUp,
    /// How long verifiers may cache the JWK Set.
    pub jwks_max_age_secs: u64,
    /// Turns true when the node begins to stop: long-lived responses (the revocation stream)
    /// end then instead of holding the graceful shutdown.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}
