//! `Sessions`: the domain's entry points on the leader. The edge calls these directly when it
//! runs on the leader, or sends a [`Command`] over the peer network that ends up in
//! [`Sessions::dispatch`] on the leader.

use std::sync::Arc;

use crate::client_actor::{AdmitRegistration, CheckLogin, RecordLoginFailure};
use crate::domain::{Attempt, DeviceHash, Email, FamilyId, Identity, IpPrefix, RefreshToken, RevokeReason, UserId};
use crate::family_actor::{Refresh, Revoke};
use crate::identity_actor::{ChangePassword, CompleteLogin, FailLogin, RequestPermit, Unlock};
use crate::ports::{Write, WriteOutcome};
use crate::protocol::{
    ActorError, Admission, Command, LoginOutcome, LoginStart, LoginSubject, LogoutOutcome, PasswordChange,
    PasswordOutcome, RefreshOutcome, RegisterOutcome, Reply, UnlockOutcome,
};
use crate::record::{Record, keys};
use crate::registry::Registry;

#[derive(Clone)]
pub struct Sessions {
    registry: Arc<Registry>,
}

impl Sessions {
    pub fn new(registry: Arc<Registry>) -> Sessions {
        Sessions { registry }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The client network limits apply to, if any (loopback may be exempt).
    fn limited(&self, ip: Option<IpPrefix>) -> Option<IpPrefix> {
        let exempt = self.registry.context().throttle.exempt_loopback;
        ip.filter(|prefix| !(exempt && prefix.is_loopback()))
    }

    /// Counts a registration attempt from `ip` against its network's limit.
    pub async fn admit_registration(&self, ip: Option<IpPrefix>) -> Result<Admission, ActorError> {
        match self.limited(ip) {
            Some(prefix) => Ok(self.registry.client(prefix).await?.send(AdmitRegistration).await?),
            None => Ok(Admission::Allowed),
        }
    }

    /// Creates an identity. Nothing exists yet to serialize on, so this is a plain
    /// compare-and-set: the email index and the identity must both be absent.
    pub async fn register(
        &self,
        user: UserId,
        email: Email,
        password_hash: String,
    ) -> Result<RegisterOutcome, ActorError> {
        self.registry.ensure_leading().await?;
        let cx = self.registry.context();
        let identity = Identity::new(user, email.clone(), password_hash, cx.clock.now());
        let write = Write::default()
            .expect(keys::email(&email), None)
            .expect(keys::user(user), None)
            .put(keys::email(&email), Record::EmailIndex(user))
            .put(keys::user(user), Record::Identity(identity));
        match cx.replicator.write(write).await? {
            WriteOutcome::Committed { .. } => Ok(RegisterOutcome::Registered),
            WriteOutcome::Conflict { key, .. } if key.starts_with("email/") => Ok(RegisterOutcome::EmailTaken),
            WriteOutcome::Conflict { .. } => Err(ActorError::Contention),
        }
    }

    /// Asks for a permit to check a password for `email`. Unknown addresses get the same
    /// treatment as accounts (see `unknown`).
    pub async fn begin_login(&self, email: Email, ip: Option<IpPrefix>) -> Result<LoginStart, ActorError> {
        self.registry.ensure_leading().await?;
        if let Some(prefix) = self.limited(ip)
            && let Admission::Throttled { retry_after_secs } =
                self.registry.client(prefix).await?.send(CheckLogin).await?
        {
            return Ok(LoginStart::Wait { retry_after_secs });
        }
        if let Some(user) = self.user_of(&email)?
            && let Some(actor) = self.registry.identity(user).await?
        {
            return actor.send(RequestPermit).await?;
        }
        self.registry.unknown(&email).await?.send(RequestPermit).await?
    }

    /// The password checked under `permit` was right: open a session (or refuse, see
    /// [`LoginOutcome`]). A refusal counts against the client network like a failure.
    pub async fn complete_login(
        &self,
        subject: LoginSubject,
        permit: u64,
        credential_version: u32,
        device: DeviceHash,
        ip: Option<IpPrefix>,
        device_label: String,
    ) -> Result<LoginOutcome, ActorError> {
        let outcome = match subject {
            LoginSubject::Account(user) => match self.registry.identity(user).await? {
                Some(actor) => {
                    actor.send(CompleteLogin { permit, credential_version, device, ip, device_label }).await??
                }
                None => LoginOutcome::Rejected,
            },
            // No password matches an address without an account.
            LoginSubject::Unknown(email) => {
                self.report_unknown(&email, permit, Attempt::Failed).await?;
                LoginOutcome::Rejected
            }
        };
        if outcome == LoginOutcome::Rejected {
            self.record_network_failure(ip).await?;
        }
        Ok(outcome)
    }

    /// The password checked under `permit` was wrong.
    pub async fn fail_login(&self, subject: LoginSubject, permit: u64, ip: Option<IpPrefix>) -> Result<(), ActorError> {
        self.report(subject, permit, Attempt::Failed).await?;
        self.record_network_failure(ip).await
    }

    /// The password was never checked under `permit` (this node could not hash it): the
    /// permit is returned and nothing is counted.
    pub async fn abandon_login(&self, subject: LoginSubject, permit: u64) -> Result<(), ActorError> {
        self.report(subject, permit, Attempt::Abandoned).await
    }

    async fn report(&self, subject: LoginSubject, permit: u64, attempt: Attempt) -> Result<(), ActorError> {
        match subject {
            LoginSubject::Account(user) => {
                if let Some(actor) = self.registry.identity(user).await? {
                    actor.send(FailLogin { permit, attempt }).await??;
                }
                Ok(())
            }
            LoginSubject::Unknown(email) => self.report_unknown(&email, permit, attempt).await,
        }
    }

    async fn report_unknown(&self, email: &Email, permit: u64, attempt: Attempt) -> Result<(), ActorError> {
        self.registry.unknown(email).await?.send(FailLogin { permit, attempt }).await?
    }

    async fn record_network_failure(&self, ip: Option<IpPrefix>) -> Result<(), ActorError> {
        if let Some(prefix) = self.limited(ip) {
            self.registry.client(prefix).await?.send(RecordLoginFailure).await?;
        }
        Ok(())
    }

    pub async fn refresh(&self, token: RefreshToken, device: DeviceHash) -> Result<RefreshOutcome, ActorError> {
        match self.registry.family(token.family).await? {
            Some(actor) => actor.send(Refresh { token, device }).await?,
            None => Ok(RefreshOutcome::Invalid),
        }
    }

    pub async fn logout(&self, user: UserId, family: FamilyId) -> Result<LogoutOutcome, ActorError> {
        match self.registry.family(family).await? {
            Some(actor) => actor.send(Revoke { owner: user, reason: RevokeReason::Logout }).await?,
            None => Ok(LogoutOutcome::NotFound),
        }
    }

    /// Revokes every unrevoked family of `user`; returns how many this call revoked.
    pub async fn logout_all(&self, user: UserId) -> Result<usize, ActorError> {
        self.logout_all_but(user, None).await
    }

    /// Revokes every unrevoked family of `user` except `keep`.
    pub async fn logout_others(&self, user: UserId, keep: FamilyId) -> Result<usize, ActorError> {
        self.logout_all_but(user, Some(keep)).await
    }

    /// Changes the password: see [`ChangePassword`].
    pub async fn change_password(&self, change: PasswordChange) -> Result<PasswordOutcome, ActorError> {
        match self.registry.identity(change.user).await? {
            Some(actor) => actor.send(ChangePassword(change)).await?,
            None => Ok(PasswordOutcome::SessionEnded),
        }
    }

    async fn logout_all_but(&self, user: UserId, keep: Option<FamilyId>) -> Result<usize, ActorError> {
        self.registry.ensure_leading().await?;
        let families: Vec<FamilyId> = self
            .registry
            .context()
            .replicator
            .scan(&keys::user_families(user))?
            .into_iter()
            .filter_map(|(key, _, _)| keys::family_of_user_family_key(&key))
            .filter(|family| Some(*family) != keep)
            .collect();
        let revocations = families.into_iter().map(|family| self.logout(user, family));
        let mut revoked = 0;
        for outcome in futures::future::join_all(revocations).await {
            if outcome? == LogoutOutcome::LoggedOut {
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    /// Clears an account's failures and locks (administrator).
    pub async fn unlock(&self, user: UserId) -> Result<UnlockOutcome, ActorError> {
        match self.registry.identity(user).await? {
            Some(actor) => {
                Ok(if actor.send(Unlock).await?? { UnlockOutcome::Unlocked } else { UnlockOutcome::WasNotLocked })
            }
            None => Ok(UnlockOutcome::NoSuchUser),
        }
    }

    fn user_of(&self, email: &Email) -> Result<Option<UserId>, ActorError> {
        match self.registry.context().replicator.read(&keys::email(email))? {
            Some((_, Record::EmailIndex(user))) => Ok(Some(user)),
            Some((_, other)) => Err(ActorError::Corrupt(format!("email index holds {other:?}"))),
            None => Ok(None),
        }
    }

    /// Runs a command (from this node's edge or forwarded by another node).
    ///
    /// The answer stands only if this node still holds its leader lease once the command has
    /// run: then no other leader can have existed meanwhile, so the actors decided on current
    /// state. Otherwise (this process was paused, or cut off, mid-command) the caller gets
    /// `NotLeader` and retries; a write that did commit is found again by the retry (a refresh
    /// within the grace window gets the same successor).
    pub async fn dispatch(&self, command: Command) -> Reply {
        let reply = self.run(command).await;
        if self.registry.context().replicator.holds_lease() {
            reply
        } else {
            tracing::warn!("leader lease lapsed while a command ran; its answer is withheld");
            reply.withheld()
        }
    }

    async fn run(&self, command: Command) -> Reply {
        match command {
            Command::AdmitRegistration { ip } => Reply::AdmitRegistration(self.admit_registration(ip).await),
            Command::Register { user, email, password_hash } => {
                Reply::Register(self.register(user, email, password_hash).await)
            }
            Command::BeginLogin { email, ip } => Reply::BeginLogin(self.begin_login(email, ip).await),
            Command::CompleteLogin { subject, permit, credential_version, device, ip, device_label } => {
                Reply::CompleteLogin(
                    self.complete_login(subject, permit, credential_version, device, ip, device_label).await,
                )
            }
            Command::FailLogin { subject, permit, ip } => Reply::FailLogin(self.fail_login(subject, permit, ip).await),
            Command::AbandonLogin { subject, permit } => Reply::AbandonLogin(self.abandon_login(subject, permit).await),
            Command::Refresh { token, device } => Reply::Refresh(self.refresh(token, device).await),
            Command::Logout { user, family } => Reply::Logout(self.logout(user, family).await),
            Command::LogoutAll { user } => Reply::LogoutAll(self.logout_all(user).await),
            Command::Unlock { user } => Reply::Unlock(self.unlock(user).await),
            Command::LogoutOthers { user, keep } => Reply::LogoutOthers(self.logout_others(user, keep).await),
            Command::ChangePassword(change) => Reply::ChangePassword(self.change_password(change).await),
        }
    }
}
