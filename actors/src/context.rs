//! What every actor shares: its ports and the policies it applies.

use std::sync::Arc;

use crate::domain::{LockoutPolicy, Pepper, SessionCap, SessionPolicy, WindowPolicy};
use crate::factor_keys::FactorKeys;
use crate::keys::SigningPolicy;
use crate::ports::{Clock, Entropy, Replicator};

pub struct ActorContext {
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    pub replicator: Arc<dyn Replicator>,
    pub pepper: Pepper,
    pub sessions: SessionPolicy,
    pub lockout: LockoutPolicy,
    pub cap: SessionCap,
    pub throttle: ThrottlePolicy,
    pub audit: AuditPolicy,
    /// Opens TOTP secrets and makes recovery-code digests.
    pub factors: FactorKeys,
    /// Makes signing keys and schedules their rotation.
    pub signing: SigningPolicy,
}

/// How security events are recorded.
#[derive(Clone)]
pub struct AuditPolicy {
    /// Seals personal data of events that belong to no account (an address without one).
    pub cluster_pii_key: [u8; 32],
    /// Audit entries the replicas may hold unflushed (the durable store unreachable) before
    /// writes that record events are refused.
    pub max_backlog: usize,
}

/// Per-network limits.
#[derive(Clone, Copy, Debug)]
pub struct ThrottlePolicy {
    /// Failed logins per client network, across all accounts.
    pub login_failures: WindowPolicy,
    /// Registration attempts per client network.
    pub registrations: WindowPolicy,
    /// Whether loopback clients are exempt (they are not by default).
    pub exempt_loopback: bool,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            login_failures: WindowPolicy { limit: 100, window: std::time::Duration::from_secs(600) },
            registrations: WindowPolicy { limit: 20, window: std::time::Duration::from_secs(3600) },
            exempt_loopback: false,
        }
    }
}
