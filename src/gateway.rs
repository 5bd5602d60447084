//! Any node serves any request: the gateway runs a domain command on this node when it leads,
//! or forwards it — one hop, over the authenticated peer listener — to the node that does.
//! Clients never see a redirect. With no leader known the answer is 503 + `Retry-After`.

use std::time::Duration;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use tessera_actors::Record;
use tessera_actors::Sessions;
use tessera_actors::domain::{DeviceHash, Email, FamilyId, IpPrefix, RefreshToken, UserId};
use tessera_actors::protocol::{
    ActorError, Admission, Command, LoginOutcome, LoginStart, LoginSubject, LogoutOutcome, PasswordChange,
    PasswordOutcome, RefreshOutcome, RegisterOutcome, Reply, UnlockOutcome,
};
use tessera_cluster::peer::{PeerService, encoded};
use tessera_cluster::{ClusterNode, PeerError, wire};

use crate::freeze::{self, FreezeWatch, Frozen};
use crate::http::client::ClientInfo;

/// The peer route that forwarded commands arrive on.
pub const FORWARD_PATH: &str = "/forward";

/// A forwarded command and how long (ms from signing) its sender waits for the answer.
type Forwarded = (u64, Command);

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No leader is known (an election is running) or it cannot be reached: retry shortly.
    #[error("no leader available: {0}")]
    NoLeader(String),
    #[error(transparent)]
    Actor(#[from] ActorError),
    /// This process was just frozen; the request may have waited through it (see `freeze`).
    #[error(transparent)]
    Frozen(#[from] Frozen),
    #[error("unexpected reply from the leader")]
    Protocol,
}

#[derive(Clone)]
pub struct Gateway {
    node: ClusterNode<Record>,
    sessions: Sessions,
    timeout: Duration,
    freeze: &'static FreezeWatch,
}

impl Gateway {
    pub fn new(node: ClusterNode<Record>, sessions: Sessions, timeout: Duration) -> Gateway {
        Gateway { node, sessions, timeout, freeze: freeze::watch() }
    }

    async fn call(&self, command: Command) -> Result<Reply, GatewayError> {
        // A command read just after this process was frozen may be seconds old; its client
        // has likely retried elsewhere, so running it could undo what that retry did.
        if !command.reports_a_check() {
            self.freeze.check()?;
        }
        let leadership = self.node.leadership();
        if leadership.this_node_leads {
            return Ok(self.sessions.dispatch(command).await);
        }
        let Some((leader, Some(info))) = leadership.leader else {
            return Err(GatewayError::NoLeader("no leader known".into()));
        };
        let forwarded: Forwarded = (self.timeout.as_millis() as u64, command);
        let body = wire::encode(&forwarded).map_err(|_| GatewayError::Protocol)?;
        let reply =
            self.node.peer_client().post(leader, &info.peer_addr, FORWARD_PATH, body, self.timeout).await.map_err(
                |e| match e {
                    PeerError::Unreachable(..) | PeerError::Network(..) | PeerError::Status { .. } => {
                        GatewayError::NoLeader(e.to_string())
                    }
                },
            )?;
        wire::decode(&reply).map_err(|_| GatewayError::Protocol)
    }

    pub async fn admit_registration(&self, ip: Option<IpPrefix>) -> Result<Admission, GatewayError> {
        match self.call(Command::AdmitRegistration { ip }).await? {
            Reply::AdmitRegistration(outcome) => Ok(outcome?),
            _ => Err(GatewayError::Protocol),
        }
    }

    pub async fn register(
        &self,
        user: UserId,
        email: Email,
        password_hash: String,
    ) -> Result<RegisterOutcome, GatewayError> {
        match self.call(Command::Register { user, email, password_hash }).await? {
            Reply::Register(outcome) => Ok(outcome?),
            _ => Err(GatewayError::Protocol),
        }
    }

    pub async fn begin_login(&self, email: Email, ip: Option<IpPrefix>) -> Result<LoginStart, GatewayError> {
        match self.call(Command::BeginLogin { email, ip }).await? {
            Reply::BeginLogin(outcome) => Ok(outcome?),
            _ => Err(GatewayError::Protocol),
        }
    }

    pub async fn complete_login(
        &self,
        subject: LoginSubject,
        permit: u64,
        credential_version: u32,
        client: ClientInfo,
    ) -> Result<LoginOutcome, GatewayError> {
        let command = Command::CompleteLogin {
            subject,
            permit,
            credential_version,
            device: client.device,
            ip: client.ip,
            device_label: client.label,
        };
        match self.call(command).await? {
            Reply::CompleteLogin(outcome) => Ok(outcome?),
            _ => Err(GatewayError::Protocol),
        }
    }

    pub async fn fail_login(
        &self,
        subject: LoginSubject,
        permit: u64,
        ip: Option<IpPrefix>,
    ) -> Result<(), GatewayError> {
        match self.call(Command::FailLogin { subject, permit, ip }).await? {
            Reply::FailLogin(outcome) => Ok(outcome?),
            _ => Err(GatewayError::Protocol),
        }
    }

    pub async fn abandon_login(&self, subject: LoginSubject, permit: u64) -> Result<(), GatewayError> {
        match self.call(Command::AbandonLogin { subject, permit }).await? {
            Reply::AbandonLogin(outcome) => Ok(outcome?),
            _ => Err(GatewayError::Protocol),
        }
    }

    pub async fn logout_others(&self, user: UserId, keep: FamilyId) -> Result<usize, GatewayError> {
        match self.call(Command::LogoutOthers { user, keep }).await? {
            Reply::LogoutOthers(outcome) => Ok(outcome?),
            _ => Err(GatewayError::Protocol),
        }
    }

    pub async fn change_password(&self, change: PasswordChange) -> Result<PasswordOutcome, GatewayError> {
        match self.call(Command::ChangePassword(change)).await? {
            Reply::ChangePassword(outcome) => Ok(outcome?),
            _ => Err(GatewayError::Protocol),
        }
    }

    pub async fn unlock(&self, user: UserId) -> Result<UnlockOutcome, GatewayError> {
        match self.call(Command::Unlock { user }).await? {
            Reply::Unlock(outcome) => Ok(outcome?),
            _ => Err(GatewayError::Protocol),
        }
    }

    pub async fn refresh(&self, token: RefreshToken, device: DeviceHash) -> Result<RefreshOutcome, GatewayError> {
        match self.call(Command::Refresh { token, device }).await? {
            Reply::Refresh(outcome) => Ok(outcome?),
            _ => Err(GatewayError::Protocol),
        }
    }

    pub async fn logout(&self, user: UserId, family: FamilyId) -> Result<LogoutOutcome, GatewayError> {
        match self.call(Command::Logout { user, family }).await? {
            Reply::Logout(outcome) => Ok(outcome?),
            _ => Err(GatewayError::Protocol),
        }
    }

    pub async fn logout_all(&self, user: UserId) -> Result<usize, GatewayError> {
        match self.call(Command::LogoutAll { user }).await? {
            Reply::LogoutAll(outcome) => Ok(outcome?),
            _ => Err(GatewayError::Protocol),
        }
    }
}

/// The leader side of forwarding: authenticate, decode, run, encode. A node that does not
/// lead answers the command with `NotLeader` (forwarding is one hop only).
pub async fn forwarded(
    peer: web::Data<PeerService>,
    sessions: web::Data<Sessions>,
    req: HttpRequest,
    body: Bytes,
) -> HttpResponse {
    match peer.decode_signed::<Forwarded>(&req, &body) {
        // A command that waited past its sender's deadline (in a socket buffer while this
        // process was paused, say) is dropped unrun: the sender already answered its client
        // 503, and running it now could act on a token the client has since moved past.
        Ok(((wait_ms, _), signed)) if signed.elapsed() > Duration::from_millis(wait_ms) => {
            tracing::warn!(
                age_ms = signed.elapsed().as_millis() as u64,
                "dropped a forwarded command past its deadline"
            );
            HttpResponse::RequestTimeout().content_type("text/plain").body("forwarded command past its deadline")
        }
        Ok(((_, command), _)) => encoded(&sessions.dispatch(command).await),
        Err(response) => response,
    }
}
