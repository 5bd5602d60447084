//! Reads that several places share: the actors on the leader and the edge on any node.

use crate::domain::{Family, FamilyId, Millis, UserId};
use crate::ports::Replicator;
use crate::protocol::ActorError;
use crate::record::{Record, keys};

/// One live session of a user, as stored.
#[derive(Clone, Debug)]
pub struct LiveFamily {
    pub id: FamilyId,
    pub version: u64,
    pub family: Family,
}

/// A user's live sessions (oldest first), and the index keys of sessions that are no longer
/// live (expired) so a writer can clean them up.
pub fn live_families(
    replica: &dyn Replicator,
    user: UserId,
    now: Millis,
) -> Result<(Vec<LiveFamily>, Vec<String>), ActorError> {
    let mut live = Vec::new();
    let mut stale = Vec::new();
    for (key, _, _) in replica.scan(&keys::user_families(user))? {
        let Some(id) = keys::family_of_user_family_key(&key) else { continue };
        match replica.read(&keys::family(id))? {
            Some((version, Record::Family(family))) if family.user == user && family.is_live(now) => {
                live.push(LiveFamily { id, version, family })
            }
            _ => stale.push(key),
        }
    }
    live.sort_by_key(|f| (f.family.created_at, f.id));
    Ok((live, stale))
}
