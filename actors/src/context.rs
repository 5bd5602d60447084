//! What every actor shares: its ports and the policies it applies.

use std::sync::Arc;

use crate::domain::{Pepper, SessionPolicy};
use crate::ports::{Clock, Entropy, Replicator};

pub struct ActorContext {
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    pub replicator: Arc<dyn Replicator>,
    pub pepper: Pepper,
    pub sessions: SessionPolicy,
}
