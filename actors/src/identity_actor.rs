//! The `Identity` actor: one per active login identity, on the leader.
//!
//! It serializes everything that happens to one account: handing out the password hash to
//! verify against, and opening a session once the edge reports a successful verification.
//! Opening a session is one compare-and-set write: the identity must be unchanged since it was
//! loaded (so a password change or a disable in between wins), and the new family key must be
//! absent.

use std::sync::Arc;

use actix::prelude::*;

use crate::context::ActorContext;
use crate::domain::{Amr, DeviceHash, Family, FamilyId, Generation, Identity, IpPrefix, LoginVerdict, Opening, UserId};
use crate::family_actor::grant;
use crate::ports::{Write, WriteOutcome, random};
use crate::protocol::{ActorError, LoginOutcome, LoginStart};
use crate::record::{Record, keys};

pub struct IdentityActor {
    user: UserId,
    identity: Identity,
    version: u64,
    cx: Arc<ActorContext>,
}

impl Actor for IdentityActor {
    type Context = Context<Self>;
}

impl IdentityActor {
    pub fn new(user: UserId, identity: Identity, version: u64, cx: Arc<ActorContext>) -> IdentityActor {
        IdentityActor { user, identity, version, cx }
    }
}

/// Ask for what to verify a password against.
#[derive(Message)]
#[rtype(result = "Result<LoginStart, ActorError>")]
pub struct BeginLogin;

/// Report a successful verification of `credential_version`; open a session.
#[derive(Message)]
#[rtype(result = "Result<LoginOutcome, ActorError>")]
pub struct CompleteLogin {
    pub credential_version: u32,
    pub device: DeviceHash,
    pub ip: Option<IpPrefix>,
}

impl Handler<BeginLogin> for IdentityActor {
    type Result = Result<LoginStart, ActorError>;

    fn handle(&mut self, _: BeginLogin, _: &mut Context<Self>) -> Self::Result {
        Ok(LoginStart::Proceed {
            user: self.user,
            password_hash: self.identity.password_hash.clone(),
            credential_version: self.identity.credential_version,
        })
    }
}

fn reload(cx: &ActorContext, user: UserId) -> Result<(Identity, u64), ActorError> {
    match cx.replicator.read(&keys::user(user))? {
        Some((version, Record::Identity(identity))) => Ok((identity, version)),
        Some((_, other)) => Err(ActorError::Corrupt(format!("user/{user} holds {other:?}"))),
        None => Err(ActorError::Corrupt(format!("user/{user} vanished"))),
    }
}

impl Handler<CompleteLogin> for IdentityActor {
    type Result = AtomicResponse<Self, Result<LoginOutcome, ActorError>>;

    fn handle(&mut self, msg: CompleteLogin, _: &mut Context<Self>) -> Self::Result {
        let (cx, user) = (Arc::clone(&self.cx), self.user);
        let mut current = (self.identity.clone(), self.version);
        let work = async move {
            let now = cx.clock.now();
            for _attempt in 0..2 {
                let (identity, version) = &current;
                match identity.accept_login(msg.credential_version) {
                    LoginVerdict::StaleCredential | LoginVerdict::Disabled => {
                        return (current, Ok(LoginOutcome::Rejected));
                    }
                    LoginVerdict::Accepted => {}
                }
                let id = FamilyId(random(&*cx.entropy));
                let opening = Opening {
                    user,
                    salt: random(&*cx.entropy),
                    device: msg.device,
                    ip_prefix: msg.ip,
                    amr: Amr::PASSWORD,
                    auth_time: now,
                };
                let family = Family::open(opening, now, &cx.sessions);
                let write = Write::default()
                    .expect(keys::user(user), Some(*version))
                    .expect(keys::family(id), None)
                    .put(keys::family(id), Record::Family(family.clone()))
                    .put(keys::user_family(user, id), Record::UserFamily(now));
                match cx.replicator.write(write).await {
                    Ok(WriteOutcome::Committed { .. }) => {
                        let granted = grant(&cx, id, &family, Generation::FIRST);
                        return (current, Ok(LoginOutcome::Opened(granted)));
                    }
                    Ok(WriteOutcome::Conflict { .. }) => match reload(&cx, user) {
                        Ok(reloaded) => current = reloaded,
                        Err(e) => return (current, Err(e)),
                    },
                    Err(e) => return (current, Err(e.into())),
                }
            }
            (current, Err(ActorError::Contention))
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(|(current, outcome), actor, _| {
            (actor.identity, actor.version) = current;
            outcome
        })))
    }
}
