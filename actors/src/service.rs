//! `Domain`: where operations run on the leader, whether the edge of this node asked or a
//! follower forwarded them.

use std::sync::Arc;

use crate::context::ActorContext;
use crate::domain::IpPrefix;
use crate::operation::Operation;
use crate::protocol::ActorError;
use crate::registry::Registry;

#[derive(Clone)]
pub struct Domain {
    registry: Arc<Registry>,
}

impl Domain {
    pub fn new(registry: Arc<Registry>) -> Domain {
        Domain { registry }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn context(&self) -> &Arc<ActorContext> {
        self.registry.context()
    }

    /// Runs `operation` (from this node's edge or forwarded by another node).
    ///
    /// The answer stands only if this node still holds its leader lease once the operation has
    /// run: then no other leader can have existed meanwhile, so the actors decided on current
    /// state. Otherwise (this process was paused, or cut off, mid-operation) the caller gets
    /// `NotLeader` and retries; a write that did commit is found again by the retry (a refresh
    /// within the grace window gets the same successor).
    pub async fn run<O: Operation>(&self, operation: O) -> Result<O::Reply, ActorError> {
        let answer = operation.run(self).await;
        if self.context().replicator.holds_lease() {
            answer
        } else {
            tracing::warn!("leader lease lapsed while an operation ran; its answer is withheld");
            Err(ActorError::NotLeader)
        }
    }

    /// The client network limits apply to, if any (loopback may be exempt).
    pub(crate) fn limited(&self, ip: Option<IpPrefix>) -> Option<IpPrefix> {
        let exempt = self.context().throttle.exempt_loopback;
        ip.filter(|prefix| !(exempt && prefix.is_loopback()))
    }
}
