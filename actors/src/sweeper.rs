//! Deletes session families that ended long enough ago ([`Family::collectable`]), so the
//! replicated store holds what is live plus a bounded tail instead of every login ever made.
//!
//! The leader walks the `fam/` keys of its replica a page at a time, resuming after the last
//! key it saw, and wraps around at the end, so each call does bounded work however many
//! families exist. Each collectable family is deleted, with its entry in the user's index,
//! by a compare-and-set on the version it was judged at: a family that changed meanwhile is
//! left for the next pass. An ended family never becomes live again, so a family actor still
//! holding the deleted state answers only what the rule already said (expired, revoked).
//!
//! [`Family::collectable`]: crate::domain::Family::collectable

use std::sync::Arc;

use crate::context::ActorContext;
use crate::ports::{Write, WriteOutcome};
use crate::protocol::ActorError;
use crate::record::{Record, keys};

/// One pass's work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Families read.
    pub scanned: usize,
    /// Families deleted.
    pub collected: usize,
    /// This page reached the last family; the next call starts again from the first.
    pub wrapped: bool,
}

pub struct Sweeper {
    cx: Arc<ActorContext>,
    /// The last family key the previous page read.
    after: Option<String>,
}

impl Sweeper {
    pub fn new(cx: Arc<ActorContext>) -> Sweeper {
        Sweeper { cx, after: None }
    }

    /// Reads up to `page` families after the previous page and deletes the collectable ones.
    /// Call it only on the leader; elsewhere the writes fail with `NotLeader`.
    pub async fn sweep(&mut self, page: usize) -> Result<Swept, ActorError> {
        let now = self.cx.clock.now();
        let families = self.cx.replicator.scan_page(keys::FAMILY_PREFIX, self.after.as_deref(), page)?;
        let wrapped = families.len() < page;
        self.after = if wrapped { None } else { families.last().map(|(key, _, _)| key.clone()) };
        let deletions: Vec<_> = families
            .iter()
            .filter_map(|(key, version, record)| match record {
                Record::Family(family) if family.collectable(now, &self.cx.sessions) => {
                    let id = keys::family_of_key(key)?;
                    let write = Write::default()
                        .expect(key.clone(), Some(*version))
                        .delete(key.clone())
                        .delete(keys::user_family(family.user, id));
                    Some(self.cx.replicator.write(write))
                }
                _ => None,
            })
            .collect();
        let mut collected = 0;
        for outcome in futures::future::join_all(deletions).await {
            if let WriteOutcome::Committed { .. } = outcome? {
                collected += 1;
            }
        }
        Ok(Swept { scanned: families.len(), collected, wrapped })
    }
}
