//! The cluster's signing keys and issuer as replicated records: reading them, the leader's
//! housekeeping that carries out [`KeyRecords::plan`], and an operator's immediate rotation.
//!
//! Every transition is one compare-and-set write over the key pointers (`signing/active`,
//! `signing/next`) and the key records it touches, with its audit events (`key.*`) in the same
//! write. Two leaders racing, or the schedule racing an operator, cannot both win: the loser's
//! compare fails, it reads the winner's result and decides again. Generating a key is
//! cryptography, so it comes through the [`KeyMaker`] port.
//!
//! [`KeyRecords::plan`]: crate::domain::KeyRecords::plan

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::audit::{Actor, Origin};
use crate::commit::{audited, log};
use crate::context::ActorContext;
use crate::domain::{
    Event, KeyPlan, KeyPolicy, KeyRecords, KeyRemoval, KeyRotation, KeyView, Millis, RotateDecision, Successor,
};
use crate::operation::Operation;
use crate::ports::{Replicator, Write, WriteOutcome};
use crate::protocol::ActorError;
use crate::record::{KeyLife, Record, SigningKey, keys};
use crate::service::Domain;

/// Makes signing keys (implemented at the edge, over ed25519 and the key-encryption key).
pub trait KeyMaker: Send + Sync {
    /// A fresh key, its private half sealed for storage.
    fn generate(&self, now: Millis) -> SigningKey;
}

/// How keys are made and how long they live.
#[derive(Clone)]
pub struct SigningPolicy {
    pub maker: Arc<dyn KeyMaker>,
    pub schedule: KeyPolicy,
}

/// Every key-related record of the local replica, each with the version that wrote it.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    /// Each stored key with its life so far, in kid order.
    pub keys: Vec<(SigningKey, KeyLife, u64)>,
    /// The active kid.
    pub active: Option<(String, u64)>,
    /// The published successor's kid.
    pub next: Option<(String, u64)>,
    /// The cluster's issuer.
    pub issuer: Option<(String, u64)>,
}

fn pointer(replica: &dyn Replicator, key: &str) -> Result<Option<(String, u64)>, ActorError> {
    match replica.read(key)? {
        Some((version, Record::ActiveSigningKey(kid) | Record::NextSigningKey(kid) | Record::Issuer(kid))) => {
            Ok(Some((kid, version)))
        }
        Some((_, other)) => Err(ActorError::Corrupt(format!("{key} holds {other:?}"))),
        None => Ok(None),
    }
}

impl KeySet {
    /// Reads the set from the replica.
    pub fn read(replica: &dyn Replicator) -> Result<KeySet, ActorError> {
        let mut set = KeySet::default();
        for (key, version, record) in replica.scan(keys::SIGNING_KEY_PREFIX)? {
            match record {
                Record::LifecycleKey(signing, life) => set.keys.push((signing, life, version)),
                // Written before the lifecycle: active from its creation if it is the active one.
                Record::SigningKey(signing) => set.keys.push((signing, KeyLife::default(), version)),
                other => return Err(ActorError::Corrupt(format!("{key} holds {other:?}"))),
            }
        }
        set.active = pointer(replica, keys::ACTIVE_SIGNING_KEY)?;
        set.next = pointer(replica, keys::NEXT_SIGNING_KEY)?;
        set.issuer = pointer(replica, keys::ISSUER)?;
        Ok(set)
    }

    /// What the rule looks at.
    pub fn records(&self) -> KeyRecords<'_> {
        KeyRecords {
            keys: self
                .keys
                .iter()
                .map(|(key, life, _)| KeyView {
                    kid: &key.kid,
                    created_at: key.created_at,
                    activated_at: life.activated_at,
                    retired_at: life.retired_at,
                })
                .collect(),
            active: self.active.as_ref().map(|(kid, _)| kid.as_str()),
            next: self.next.as_ref().map(|(kid, _)| kid.as_str()),
            issuer: self.issuer.as_ref().map(|(issuer, _)| issuer.as_str()),
        }
    }

    fn key(&self, kid: &str) -> Result<&(SigningKey, KeyLife, u64), ActorError> {
        self.keys
            .iter()
            .find(|(key, _, _)| key.kid == kid)
            .ok_or_else(|| ActorError::Corrupt(format!("signing key {kid} is named but not stored")))
    }

    fn pointer_version(pointer: &Option<(String, u64)>) -> Option<u64> {
        pointer.as_ref().map(|(_, version)| *version)
    }

    /// The compares that pin both pointers: the write applies only if no transition came first.
    fn pinned(&self) -> Write {
        Write::default()
            .expect(keys::ACTIVE_SIGNING_KEY, Self::pointer_version(&self.active))
            .expect(keys::NEXT_SIGNING_KEY, Self::pointer_version(&self.next))
    }

    /// `key` begins to sign now (the pointer moves to it; a successor pointer is cleared).
    fn activate(&self, write: Write, key: SigningKey, version: Option<u64>, now: Millis) -> Write {
        let kid = key.kid.clone();
        let life = KeyLife { activated_at: Some(now), retired_at: None };
        let mut write = write
            .expect(keys::signing_key(&kid), version)
            .put(keys::signing_key(&kid), Record::LifecycleKey(key, life))
            .put(keys::ACTIVE_SIGNING_KEY, Record::ActiveSigningKey(kid));
        if self.next.is_some() {
            write = write.delete(keys::NEXT_SIGNING_KEY);
        }
        write
    }

    /// The active key `kid` stops signing: retired (kept until its tokens expire) or removed.
    fn retire(&self, write: Write, kid: &str, revoke: bool, now: Millis) -> Result<(Write, Event), ActorError> {
        let (key, life, version) = self.key(kid)?;
        let write = write.expect(keys::signing_key(kid), Some(*version));
        Ok(if revoke {
            (
                write.delete(keys::signing_key(kid)),
                Event::KeyRemoved { kid: kid.to_string(), reason: KeyRemoval::Revoked },
            )
        } else {
            let view = KeyView { kid, created_at: key.created_at, activated_at: life.activated_at, retired_at: None };
            let life = KeyLife { activated_at: Some(view.active_since()), retired_at: Some(now) };
            let retired = Record::LifecycleKey(key.clone(), life);
            (write.put(keys::signing_key(kid), retired), Event::KeyRetired { kid: kid.to_string() })
        })
    }
}

/// What one housekeeping round did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Advanced {
    /// Recorded a first key (its kid) and/or the issuer.
    Provisioned {
        key: Option<String>,
        issuer: Option<String>,
    },
    Published {
        kid: String,
    },
    Activated {
        kid: String,
        retired: String,
    },
    Removed {
        kid: String,
    },
}

/// Commits `write` with the audit records of `events` (origin: Tessera itself, or an
/// operator); `false` if a compare failed (someone else's transition came first).
async fn commit(
    cx: &ActorContext,
    now: Millis,
    origin: &Origin,
    events: Vec<Event>,
    write: Write,
) -> Result<bool, ActorError> {
    let write = audited(cx, now, origin, &events, write, None)?;
    match cx.replicator.write(write).await? {
        WriteOutcome::Committed { .. } => {
            log(&events);
            Ok(true)
        }
        WriteOutcome::Conflict { .. } => Ok(false),
    }
}

/// On the leader: makes the one transition the schedule says is due (see
/// [`KeyRecords::plan`]); `this_issuer` is recorded if the cluster has none. `None` if nothing
/// was due, or another transition came first (the next round decides again).
///
/// [`KeyRecords::plan`]: crate::domain::KeyRecords::plan
pub async fn advance(cx: &ActorContext, this_issuer: &str) -> Result<Option<Advanced>, ActorError> {
    let now = cx.clock.now();
    let set = KeySet::read(&*cx.replicator)?;
    let plan = set.records().plan(this_issuer, &cx.signing.schedule, now);
    let system = Origin { actor: Actor::System, ..Origin::default() };
    let (write, events, advanced) = match plan {
        KeyPlan::Current => return Ok(None),
        KeyPlan::Provision { first_key, issuer } => {
            let mut write = Write::default();
            let mut events = Vec::new();
            let mut key = None;
            if first_key {
                let fresh = cx.signing.maker.generate(now);
                let kid = fresh.kid.clone();
                write = set.activate(set.pinned(), fresh, None, now);
                events.push(Event::KeyActivated { kid: kid.clone(), rotation: KeyRotation::First });
                key = Some(kid);
            }
            if let Some(issuer) = &issuer {
                write = write.expect(keys::ISSUER, None).put(keys::ISSUER, Record::Issuer(issuer.clone()));
            }
            (write, events, Advanced::Provisioned { key, issuer })
        }
        KeyPlan::Publish => {
            let fresh = cx.signing.maker.generate(now);
            let kid = fresh.kid.clone();
            let write = set
                .pinned()
                .expect(keys::signing_key(&kid), None)
                .put(keys::signing_key(&kid), Record::LifecycleKey(fresh, KeyLife::default()))
                .put(keys::NEXT_SIGNING_KEY, Record::NextSigningKey(kid.clone()));
            (write, vec![Event::KeyPublished { kid: kid.clone() }], Advanced::Published { kid })
        }
        KeyPlan::Activate { next, retiring } => {
            let (key, _, version) = set.key(&next)?;
            let write = set.activate(set.pinned(), key.clone(), Some(*version), now);
            let (write, retired) = set.retire(write, &retiring, false, now)?;
            let events = vec![Event::KeyActivated { kid: next.clone(), rotation: KeyRotation::Scheduled }, retired];
            (write, events, Advanced::Activated { kid: next, retired: retiring })
        }
        KeyPlan::Remove { kid } => {
            let (_, _, version) = set.key(&kid)?;
            let write = set.pinned().expect(keys::signing_key(&kid), Some(*version)).delete(keys::signing_key(&kid));
            (
                write,
                vec![Event::KeyRemoved { kid: kid.clone(), reason: KeyRemoval::Expired }],
                Advanced::Removed { kid },
            )
        }
    };
    Ok(commit(cx, now, &system, events, write).await?.then_some(advanced))
}

/// An operator's "rotate now": the key `target` (the one active when they asked) stops
/// signing at once, retired or (`revoke`) removed, and its successor signs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RotateKeys {
    pub target: String,
    pub revoke: bool,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RotateOutcome {
    /// This request rotated `replaced` out; `active` signs now.
    Rotated { active: String, replaced: String, revoked: bool },
    /// `target` had already been rotated out (by a concurrent request, or the schedule);
    /// `active` signs now. Nothing was changed.
    AlreadyRotated { active: String },
    /// The cluster has no signing key yet.
    NoActiveKey,
}

/// Attempts before a rotation that keeps losing races to other transitions gives up.
const ROTATE_ATTEMPTS: usize = 4;

impl Operation for RotateKeys {
    type Reply = RotateOutcome;

    async fn run(self, domain: &Domain) -> Result<RotateOutcome, ActorError> {
        let cx = domain.context();
        for _ in 0..ROTATE_ATTEMPTS {
            let now = cx.clock.now();
            // On the leader, a lost compare means the winner is applied here already.
            let set = KeySet::read(&*cx.replicator)?;
            let (current, successor, revoke) = match set.records().rotate(&self.target, self.revoke) {
                RotateDecision::NoActiveKey => return Ok(RotateOutcome::NoActiveKey),
                RotateDecision::AlreadyRotated { active } => return Ok(RotateOutcome::AlreadyRotated { active }),
                RotateDecision::Rotate { current, successor, revoke } => (current, successor, revoke),
            };
            let (key, version) = match successor {
                Successor::Published(kid) => {
                    let (key, _, version) = set.key(&kid)?;
                    (key.clone(), Some(*version))
                }
                Successor::Fresh => (cx.signing.maker.generate(now), None),
            };
            let kid = key.kid.clone();
            let write = set.activate(set.pinned(), key, version, now);
            let (write, ended) = set.retire(write, &current, revoke, now)?;
            let rotation = if revoke { KeyRotation::Emergency } else { KeyRotation::Immediate };
            let events = vec![Event::KeyActivated { kid: kid.clone(), rotation }, ended];
            if commit(cx, now, &self.origin, events, write).await? {
                return Ok(RotateOutcome::Rotated { active: kid, replaced: current, revoked: revoke });
            }
        }
        Err(ActorError::Contention)
    }
}
