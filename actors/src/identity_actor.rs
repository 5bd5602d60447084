//! The `Identity` actor: one per active login identity, on the leader.
//!
//! It serializes everything that happens to one account:
//! - [`RequestPermit`]: may a password be checked now? If so, a permit is committed to the
//!   account's replicated guard and the hash to check against is handed out.
//! - [`ReportGuess`] / [`OpenSession`]: the node that checked the password reports the result.
//!   A failure is recorded (delays, lock); a success resets the guard, applies the session cap
//!   and opens a session: guard, identity, new family, evicted families, all in one
//!   compare-and-set write.
//! - [`ChangePassword`], and [`ClearGuard`] for an administrator's unlock.
//!
//! Every decision is a rule in `domain` (`LoginGuard`, `login`); this shell reads its inputs,
//! and commits and adopts what the rule decided through [`Shell::decide`].
//!
//! Operations: [`BeginLogin`], [`CompleteLogin`], [`FailLogin`], [`AbandonLogin`],
//! [`ChangePassword`], [`Unlock`].

use std::sync::Arc;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use crate::audit::Origin;
use crate::client_actor::{CheckLogin, record_network_failure};
use crate::commit::{Held, Shell, Step};
use crate::context::ActorContext;
use crate::domain::login::{self, Change};
use crate::domain::mfa::CHALLENGE_TTL;
use crate::domain::{
    Amr, Attempt, ChallengeDecision, ChangeDecision, DeviceHash, Email, Family, FamilyId, Generation, Identity,
    IpPrefix, Live, LoginDecision, LoginGuard, LoginPolicy, Mfa, Millis, NewSession, Opening, PermitVerdict,
    ReportVerdict, UserId, Verified,
};
use crate::factor_keys::challenge_token;
use crate::family_actor::grant;
use crate::operation::Operation;
use crate::ports::{Write, random};
use crate::protocol::{
    ActorError, Admission, ClientContext, LoginOutcome, LoginStart, LoginSubject, PasswordOutcome, UnlockOutcome,
};
use crate::queries::{self, LiveFamily, live_families};
use crate::record::{Record, keys};
use crate::refusals::{Refusals, Refusing, refuse};
use crate::service::Domain;

/// The actor's view of its three replicated keys.
#[derive(Clone)]
pub(crate) struct Account {
    pub(crate) user: UserId,
    pub(crate) identity: Identity,
    version: u64,
    pub(crate) guard: LoginGuard,
    /// `None` until the first attempt writes the guard.
    guard_version: Option<u64>,
    pub(crate) mfa: Mfa,
    /// `None` until a second factor is first enrolled.
    mfa_version: Option<u64>,
}

impl Account {
    pub(crate) fn with_guard(&self, guard: LoginGuard) -> Account {
        Account { guard, ..self.clone() }
    }

    pub(crate) fn with_mfa(&self, mfa: Mfa) -> Account {
        Account { mfa, ..self.clone() }
    }

    pub(crate) fn with(&self, guard: LoginGuard, mfa: Mfa) -> Account {
        Account { guard, mfa, ..self.clone() }
    }
}

impl Held for Account {
    fn reload(&self, cx: &ActorContext) -> Result<Option<Account>, ActorError> {
        load(cx, self.user)
    }

    /// Every decision is made on the identity, the guard and the second factor as loaded: all
    /// three are compared, the guard is always written, the others when they changed.
    fn replace(&self, next: &Account) -> Write {
        let (user, guard, mfa) = (keys::user(self.user), keys::guard(self.user), keys::mfa(self.user));
        let mut write = Write::default()
            .expect(user.clone(), Some(self.version))
            .expect(guard.clone(), self.guard_version)
            .expect(mfa.clone(), self.mfa_version)
            .put(guard, Record::LoginGuard(next.guard.clone()));
        if next.identity != self.identity {
            write = write.put(user, Record::Identity(next.identity.clone()));
        }
        if next.mfa != self.mfa {
            write = write.put(mfa, Record::Mfa(next.mfa.clone()));
        }
        write
    }

    fn committed(&self, next: Account, version: u64) -> Account {
        let identity_version = if next.identity == self.identity { self.version } else { version };
        let mfa_version = if next.mfa == self.mfa { self.mfa_version } else { Some(version) };
        Account { version: identity_version, guard_version: Some(version), mfa_version, ..next }
    }
}

/// Reads an identity and its guard from the replica.
pub(crate) fn load(cx: &ActorContext, user: UserId) -> Result<Option<Account>, ActorError> {
    let (version, identity) = match cx.replicator.read(&keys::user(user))? {
        Some((version, Record::Identity(identity))) => (version, identity),
        Some((_, other)) => return Err(ActorError::Corrupt(format!("user/{user} holds {other:?}"))),
        None => return Ok(None),
    };
    let (guard_version, guard) = match cx.replicator.read(&keys::guard(user))? {
        Some((version, Record::LoginGuard(guard))) => (Some(version), guard),
        Some((_, other)) => return Err(ActorError::Corrupt(format!("guard/{user} holds {other:?}"))),
        None => (None, LoginGuard::default()),
    };
    let (mfa_version, mfa) = queries::mfa(&*cx.replicator, user)?;
    Ok(Some(Account { user, identity, version, guard, guard_version, mfa, mfa_version }))
}

/// An identity is never deleted while its actor lives; if one were, the replica is corrupt.
pub(crate) fn gone<O>(user: UserId) -> impl FnOnce() -> Result<O, ActorError> {
    move || Err(ActorError::Corrupt(format!("user/{user} vanished")))
}

pub struct IdentityActor {
    pub(crate) account: Account,
    pub(crate) cx: Arc<ActorContext>,
    refusals: Refusals,
}

impl Refusing for IdentityActor {
    fn refusals(&mut self) -> &mut Refusals {
        &mut self.refusals
    }

    fn actor_context(&self) -> &Arc<ActorContext> {
        &self.cx
    }
}

impl Actor for IdentityActor {
    type Context = Context<Self>;
}

impl IdentityActor {
    pub(crate) fn new(account: Account, cx: Arc<ActorContext>) -> IdentityActor {
        IdentityActor { account, cx, refusals: Refusals::default() }
    }
}

impl Shell for IdentityActor {
    type State = Account;

    fn state(&mut self) -> &mut Account {
        &mut self.account
    }

    fn context(&self) -> &Arc<ActorContext> {
        &self.cx
    }
}

/// Sends `message` to `user`'s identity actor on this leader; `absent` if there is no such
/// account.
pub(crate) async fn to_identity<M, R>(domain: &Domain, user: UserId, message: M, absent: R) -> Result<R, ActorError>
where
    M: Message<Result = Result<R, ActorError>> + Send + 'static,
    R: Send + 'static,
    IdentityActor: Handler<M>,
{
    match domain.registry().identity(user).await? {
        Some(actor) => actor.send(message).await?,
        None => Ok(absent),
    }
}

/// Where a session opened by a verified password starts (a second factor adds to `amr`).
pub(crate) fn password_opening(user: UserId, salt: [u8; 16], client: &ClientContext, now: Millis) -> Opening {
    Opening {
        user,
        salt,
        device: client.device,
        ip_prefix: client.ip,
        amr: Amr::PASSWORD,
        auth_time: now,
        device_label: client.label.clone(),
    }
}

/// The edge's answer to a refused permit (the same for accounts and unknown addresses).
pub(crate) fn wait(refused: &PermitVerdict, now: Millis, cx: &ActorContext) -> LoginStart {
    LoginStart::Wait { retry_after_secs: refused.retry_after_secs(now, &cx.lockout) }
}

/// Writes the sessions a decision changed, each a compare-and-set on the version it was read
/// at; a revoked one also leaves its user's index.
pub(crate) fn rewrite(
    user: UserId,
    live: &[LiveFamily],
    changed: impl IntoIterator<Item = (FamilyId, Family)>,
) -> Write {
    changed.into_iter().fold(Write::default(), |write, (id, family)| {
        let read_at = live.iter().find(|f| f.id == id).map(|f| f.version);
        let write = write.expect(keys::family(id), read_at).put(keys::family(id), Record::Family(family.clone()));
        if family.revoked.is_some() { write.delete(keys::user_family(user, id)) } else { write }
    })
}

pub(crate) fn views(live: &[LiveFamily]) -> Vec<Live<'_>> {
    live.iter().map(|f| Live { id: f.id, family: &f.family }).collect()
}

/// Message: may a password be checked now?
#[derive(Message)]
#[rtype(result = "Result<LoginStart, ActorError>")]
pub(crate) struct RequestPermit {
    pub origin: Origin,
}

impl Handler<RequestPermit> for IdentityActor {
    type Result = AtomicResponse<Self, Result<LoginStart, ActorError>>;

    fn handle(&mut self, msg: RequestPermit, ctx: &mut Context<Self>) -> Self::Result {
        let user = self.account.user;
        // A refusal changes nothing: decided here, recorded through the tally (the mailbox is
        // free, so this is the state as committed).
        let now = self.cx.clock.now();
        let verdict = self.account.guard.request_permit(now, &self.cx.lockout);
        if let refused @ (PermitVerdict::Throttled { .. } | PermitVerdict::Locked { .. }) = verdict {
            let reply = wait(&refused, now, &self.cx);
            let event = login::refusal_event(Some(user), None, &refused).expect("a refusal has an event");
            return refuse(self, ctx, event, msg.origin, now, reply);
        }
        self.decide(
            msg.origin,
            move |account, now, cx| {
                Ok(match account.guard.request_permit(now, &cx.lockout) {
                    PermitVerdict::Granted { guard, permit } => {
                        let start = LoginStart::Permit {
                            subject: LoginSubject::Account(account.user),
                            permit,
                            password_hash: Some(account.identity.password_hash.clone()),
                            credential_version: account.identity.credential_version,
                        };
                        Step::commit(account.with_guard(guard), start)
                    }
                    // Granted a moment ago, and time only relaxes a guard: refused here only
                    // if another node changed the account meanwhile (the reload after a
                    // conflict), which the next attempt records.
                    refused @ (PermitVerdict::Throttled { .. } | PermitVerdict::Locked { .. }) => {
                        Step::reply(wait(&refused, now, cx))
                    }
                })
            },
            gone(user),
        )
    }
}

/// Message: the password checked under `permit` was wrong (`Failed`), or never checked
/// (`Abandoned`).
#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
pub(crate) struct ReportGuess {
    pub permit: u64,
    pub attempt: Attempt,
    pub origin: Origin,
}

impl Handler<ReportGuess> for IdentityActor {
    type Result = AtomicResponse<Self, Result<(), ActorError>>;

    fn handle(&mut self, msg: ReportGuess, _: &mut Context<Self>) -> Self::Result {
        let user = self.account.user;
        self.decide(
            msg.origin.clone(),
            move |account, now, cx| {
                Ok(match account.guard.report(msg.permit, msg.attempt, now, &cx.lockout) {
                    ReportVerdict::Recorded { guard } => {
                        let events = login::report_events(account.user, msg.attempt, &account.guard, &guard, now);
                        Step::commit(account.with_guard(guard), ()).events(events)
                    }
                    ReportVerdict::NoSuchPermit => Step::reply(()),
                })
            },
            gone(user),
        )
    }
}

/// Message: the password checked under a permit was right: open a session.
#[derive(Message)]
#[rtype(result = "Result<LoginOutcome, ActorError>")]
pub(crate) struct OpenSession {
    pub verified: Verified,
    pub client: ClientContext,
    pub origin: Origin,
}

impl Handler<OpenSession> for IdentityActor {
    type Result = AtomicResponse<Self, Result<LoginOutcome, ActorError>>;

    fn handle(&mut self, msg: OpenSession, _: &mut Context<Self>) -> Self::Result {
        let user = self.account.user;
        // Drawn once per login, whatever the rule decides.
        let (id, salt) = (FamilyId(random(&*self.cx.entropy)), random(&*self.cx.entropy));
        let (token, digest) = challenge_token(user, random(&*self.cx.entropy));
        self.decide(
            msg.origin.clone(),
            move |account, now, cx| {
                if account.mfa.enrolled() {
                    let decision = login::challenge(
                        &account.identity,
                        &account.guard,
                        msg.verified,
                        &account.mfa,
                        digest,
                        now,
                        &cx.lockout,
                    );
                    return Ok(match decision {
                        ChallengeDecision::NoSuchPermit => Step::reply(LoginOutcome::Rejected),
                        ChallengeDecision::Refused { guard, events } => {
                            Step::commit(account.with_guard(guard), LoginOutcome::Rejected).events(events)
                        }
                        ChallengeDecision::Challenged { guard, mfa } => {
                            let expires_in_secs = CHALLENGE_TTL.as_secs();
                            let reply = LoginOutcome::MfaRequired { token: token.clone(), expires_in_secs };
                            Step::commit(account.with(guard, mfa), reply)
                        }
                    });
                }
                let (live, stale) = live_families(&*cx.replicator, account.user, now)?;
                let opening = password_opening(account.user, salt, &msg.client, now);
                let policy = LoginPolicy { lockout: &cx.lockout, cap: &cx.cap, sessions: &cx.sessions };
                let new = NewSession { id, opening };
                let decision =
                    login::complete(&account.identity, &account.guard, msg.verified, &views(&live), new, now, policy);
                let unindexed = stale.into_iter().fold(Write::default(), Write::delete);
                Ok(match decision {
                    LoginDecision::NoSuchPermit => Step::reply(LoginOutcome::Rejected),
                    LoginDecision::Refused { guard, events } => {
                        Step::commit(account.with_guard(guard), LoginOutcome::Rejected).events(events)
                    }
                    LoginDecision::CapReached { guard } => {
                        Step::commit(account.with_guard(guard), LoginOutcome::CapReached).also(unindexed)
                    }
                    LoginDecision::Opened { guard, id, family, evicted, events } => {
                        let grant = grant(cx, id, &family, Generation::FIRST);
                        Step::commit(account.with_guard(guard), LoginOutcome::Opened(grant))
                            .also(unindexed.merge(opened(account.user, &live, (id, family), evicted, now)))
                            .events(events)
                    }
                })
            },
            gone(user),
        )
    }
}

/// The write that opens session `id` and revokes the `evicted` ones.
pub(crate) fn opened(
    user: UserId,
    live: &[LiveFamily],
    (id, family): (FamilyId, Family),
    evicted: Vec<(FamilyId, Family)>,
    now: Millis,
) -> Write {
    rewrite(user, live, evicted)
        .expect(keys::family(id), None)
        .put(keys::family(id), Record::Family(family))
        .put(keys::user_family(user, id), Record::UserFamily(now))
}

/// Message: clear failures and locks (administrator). Answers whether the account was locked.
#[derive(Message)]
#[rtype(result = "Result<bool, ActorError>")]
pub(crate) struct ClearGuard {
    pub origin: Origin,
}

impl Handler<ClearGuard> for IdentityActor {
    type Result = AtomicResponse<Self, Result<bool, ActorError>>;

    fn handle(&mut self, msg: ClearGuard, _: &mut Context<Self>) -> Self::Result {
        let user = self.account.user;
        self.decide(
            msg.origin,
            move |account, now, _| {
                let (guard, was_locked, events) = login::unlock(account.user, &account.guard, now);
                Ok(Step::commit(account.with_guard(guard), was_locked).events(events))
            },
            gone(user),
        )
    }
}

/// Operation (and message): change the password; the current one was verified under a permit.
#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "Result<PasswordOutcome, ActorError>")]
pub struct ChangePassword {
    pub user: UserId,
    pub verified: Verified,
    pub new_hash: String,
    /// The caller's session: it continues, with a new generation.
    pub current: FamilyId,
    pub device: DeviceHash,
    pub revoke_others: bool,
    pub origin: Origin,
}

impl Operation for ChangePassword {
    type Reply = PasswordOutcome;

    async fn run(self, domain: &Domain) -> Result<PasswordOutcome, ActorError> {
        to_identity(domain, self.user, self, PasswordOutcome::SessionEnded).await
    }
}

impl Handler<ChangePassword> for IdentityActor {
    type Result = AtomicResponse<Self, Result<PasswordOutcome, ActorError>>;

    /// One write: see [`login::change_password`].
    fn handle(&mut self, msg: ChangePassword, _: &mut Context<Self>) -> Self::Result {
        let user = self.account.user;
        self.decide(
            msg.origin.clone(),
            move |account, now, cx| {
                let (live, _) = live_families(&*cx.replicator, account.user, now)?;
                let change = Change {
                    verified: msg.verified,
                    new_hash: &msg.new_hash,
                    current: msg.current,
                    device: msg.device,
                    revoke_others: msg.revoke_others,
                };
                let decision = login::change_password(
                    &account.identity,
                    &account.guard,
                    &change,
                    &views(&live),
                    now,
                    &cx.lockout,
                    &cx.sessions,
                );
                Ok(match decision {
                    ChangeDecision::NoSuchPermit => Step::reply(PasswordOutcome::Rejected),
                    ChangeDecision::Refused { guard, events } => {
                        Step::commit(account.with_guard(guard), PasswordOutcome::Rejected).events(events)
                    }
                    ChangeDecision::SessionEnded { guard } => {
                        Step::commit(account.with_guard(guard), PasswordOutcome::SessionEnded)
                    }
                    ChangeDecision::Changed { guard, identity, current, revoked, events } => {
                        let reply = PasswordOutcome::Changed(grant(cx, current.0, &current.1, current.1.generation));
                        let sessions = rewrite(account.user, &live, std::iter::once(current).chain(revoked));
                        Step::commit(Account { guard, identity, ..account.clone() }, reply)
                            .also(sessions)
                            .events(events)
                    }
                })
            },
            gone(user),
        )
    }
}

/// Operation: ask for a permit to check a password for `email`. Unknown addresses get the same
/// treatment as accounts (see `address_actor`).
#[derive(Serialize, Deserialize)]
pub struct BeginLogin {
    pub email: Email,
    pub ip: Option<IpPrefix>,
    pub origin: Origin,
}

impl Operation for BeginLogin {
    type Reply = LoginStart;

    async fn run(self, domain: &Domain) -> Result<LoginStart, ActorError> {
        let (registry, cx) = (domain.registry(), domain.context());
        registry.ensure_leading().await?;
        let account = queries::account_of(&*cx.replicator, &self.email)?;
        if let Some(prefix) = domain.limited(self.ip) {
            let throttled = PermitVerdict::Throttled { retry_after: std::time::Duration::ZERO };
            let refusal = login::refusal_event(account, Some(&self.email), &throttled).expect("a refusal has an event");
            let check = CheckLogin { refusal, origin: self.origin.clone() };
            if let Admission::Throttled { retry_after_secs } = registry.client(prefix).await?.send(check).await?? {
                return Ok(LoginStart::Wait { retry_after_secs });
            }
        }
        let ask = RequestPermit { origin: self.origin };
        if let Some(user) = account
            && let Some(actor) = registry.identity(user).await?
        {
            return actor.send(ask).await?;
        }
        registry.address(&self.email).await?.send(ask).await?
    }
}

/// Operation: the password checked under a permit was right: open a session (or refuse, see
/// [`LoginOutcome`]). A refusal counts against the client network like a failure.
#[derive(Serialize, Deserialize)]
pub struct CompleteLogin {
    pub subject: LoginSubject,
    pub verified: Verified,
    pub client: ClientContext,
    pub origin: Origin,
}

impl Operation for CompleteLogin {
    type Reply = LoginOutcome;

    async fn run(self, domain: &Domain) -> Result<LoginOutcome, ActorError> {
        let ip = self.client.ip;
        let outcome = match self.subject {
            LoginSubject::Account(user) => match domain.registry().identity(user).await? {
                Some(actor) => {
                    let open = OpenSession { verified: self.verified, client: self.client, origin: self.origin };
                    actor.send(open).await??
                }
                None => LoginOutcome::Rejected,
            },
            // No password matches an address without an account.
            LoginSubject::Unknown(email) => {
                let subject = LoginSubject::Unknown(email);
                report(domain, subject, self.verified.permit, Attempt::Failed, self.origin).await?;
                LoginOutcome::Rejected
            }
        };
        if outcome == LoginOutcome::Rejected {
            record_network_failure(domain, ip).await?;
        }
        Ok(outcome)
    }
}

/// Operation: the password checked under `permit` was wrong.
#[derive(Serialize, Deserialize)]
pub struct FailLogin {
    pub subject: LoginSubject,
    pub permit: u64,
    pub ip: Option<IpPrefix>,
    pub origin: Origin,
}

impl Operation for FailLogin {
    type Reply = ();
    const REPORTS_A_CHECK: bool = true;

    async fn run(self, domain: &Domain) -> Result<(), ActorError> {
        report(domain, self.subject, self.permit, Attempt::Failed, self.origin).await?;
        record_network_failure(domain, self.ip).await
    }
}

/// Operation: the password was never checked under `permit` (this node could not hash it):
/// the permit is returned and nothing is counted.
#[derive(Serialize, Deserialize)]
pub struct AbandonLogin {
    pub subject: LoginSubject,
    pub permit: u64,
    pub origin: Origin,
}

impl Operation for AbandonLogin {
    type Reply = ();
    const REPORTS_A_CHECK: bool = true;

    async fn run(self, domain: &Domain) -> Result<(), ActorError> {
        report(domain, self.subject, self.permit, Attempt::Abandoned, self.origin).await
    }
}

/// Reports a check made (or not) under `permit` to whoever granted it.
async fn report(
    domain: &Domain,
    subject: LoginSubject,
    permit: u64,
    attempt: Attempt,
    origin: Origin,
) -> Result<(), ActorError> {
    let guess = ReportGuess { permit, attempt, origin };
    match subject {
        LoginSubject::Account(user) => match domain.registry().identity(user).await? {
            Some(actor) => actor.send(guess).await?,
            None => Ok(()),
        },
        LoginSubject::Unknown(email) => domain.registry().address(&email).await?.send(guess).await?,
    }
}

/// Operation: clear an account's failures and locks (administrator).
#[derive(Serialize, Deserialize)]
pub struct Unlock {
    pub user: UserId,
    pub origin: Origin,
}

impl Operation for Unlock {
    type Reply = UnlockOutcome;

    async fn run(self, domain: &Domain) -> Result<UnlockOutcome, ActorError> {
        Ok(match domain.registry().identity(self.user).await? {
            Some(actor) if actor.send(ClearGuard { origin: self.origin }).await?? => UnlockOutcome::Unlocked,
            Some(_) => UnlockOutcome::WasNotLocked,
            None => UnlockOutcome::NoSuchUser,
        })
    }
}
