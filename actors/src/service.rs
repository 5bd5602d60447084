//! `Sessions`: the domain's entry points on the leader. The edge calls these directly when it
//! runs on the leader, or sends a [`Command`] over the peer network that ends up in
//! [`Sessions::dispatch`] on the leader.

use std::sync::Arc;

use crate::domain::{DeviceHash, Email, FamilyId, Identity, IpPrefix, RefreshToken, RevokeReason, UserId};
use crate::family_actor::{Refresh, Revoke};
use crate::identity_actor::{BeginLogin, CompleteLogin};
use crate::ports::{Write, WriteOutcome};
use crate::protocol::{
    ActorError, Command, LoginOutcome, LoginStart, LogoutOutcome, RefreshOutcome, RegisterOutcome, Reply,
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

    /// Looks the account up and returns what to verify the password against.
    pub async fn begin_login(&self, email: Email) -> Result<LoginStart, ActorError> {
        self.registry.ensure_leading().await?;
        let Some(user) = self.user_of(&email)? else {
            return Ok(LoginStart::Unknown);
        };
        match self.registry.identity(user).await? {
            Some(actor) => actor.send(BeginLogin).await?,
            None => Ok(LoginStart::Unknown),
        }
    }

    /// Opens a session after the edge verified `credential_version`'s password.
    pub async fn complete_login(
        &self,
        user: UserId,
        credential_version: u32,
        device: DeviceHash,
        ip: Option<IpPrefix>,
    ) -> Result<LoginOutcome, ActorError> {
        match self.registry.identity(user).await? {
            Some(actor) => actor.send(CompleteLogin { credential_version, device, ip }).await?,
            None => Ok(LoginOutcome::Rejected),
        }
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
        self.registry.ensure_leading().await?;
        let families: Vec<FamilyId> = self
            .registry
            .context()
            .replicator
            .scan(&keys::user_families(user))?
            .into_iter()
            .filter_map(|(key, _, _)| keys::family_of_user_family_key(&key))
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

    fn user_of(&self, email: &Email) -> Result<Option<UserId>, ActorError> {
        match self.registry.context().replicator.read(&keys::email(email))? {
            Some((_, Record::EmailIndex(user))) => Ok(Some(user)),
            Some((_, other)) => Err(ActorError::Corrupt(format!("email index holds {other:?}"))),
            None => Ok(None),
        }
    }

    /// Runs a forwarded command.
    pub async fn dispatch(&self, command: Command) -> Reply {
        match command {
            Command::Register { user, email, password_hash } => {
                Reply::Register(self.register(user, email, password_hash).await)
            }
            Command::BeginLogin { email } => Reply::BeginLogin(self.begin_login(email).await),
            Command::CompleteLogin { user, credential_version, device, ip } => {
                Reply::CompleteLogin(self.complete_login(user, credential_version, device, ip).await)
            }
            Command::Refresh { token, device } => Reply::Refresh(self.refresh(token, device).await),
            Command::Logout { user, family } => Reply::Logout(self.logout(user, family).await),
            Command::LogoutAll { user } => Reply::LogoutAll(self.logout_all(user).await),
        }
    }
}
