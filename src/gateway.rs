//! Any node serves any request: the gateway runs an operation on this node when it leads, or
//! forwards it — one hop, over the authenticated peer listener — to the node that does.
//! Clients never see a redirect. With no leader known the answer is 503 + `Retry-After`.
//!
//! One generic [`Gateway::call`] serves every operation: the operation travels as a
//! [`Forwarded`] and its answer comes back as `Result<O::Reply, ActorError>`, so "not the
//! leader" is an error like any other and nothing is written per operation here.

use std::time::Duration;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use futures::future::LocalBoxFuture;
use tessera_actors::protocol::ActorError;
use tessera_actors::{Domain, Forwarded, Operation, Record, Visitor};
use tessera_cluster::peer::{PeerService, encoded};
use tessera_cluster::{ClusterNode, CodecError, PeerError, wire};

use crate::freeze::{self, FreezeWatch, Frozen};

/// The peer route that forwarded operations arrive on.
pub const FORWARD_PATH: &str = "/forward";

/// A forwarded operation and how long (ms from signing) its sender waits for the answer.
type Envelope = (u64, Forwarded);

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No leader is known (an election is running) or it cannot be reached: retry shortly.
    #[error("no leader available")]
    NoLeader(#[source] Option<PeerError>),
    #[error(transparent)]
    Actor(#[from] ActorError),
    /// This process was just frozen; the request may have waited through it (see `freeze`).
    #[error(transparent)]
    Frozen(#[from] Frozen),
    /// The leader's answer does not decode (nodes of different versions?).
    #[error("unreadable answer from the leader")]
    Protocol(#[source] CodecError),
}

#[derive(Clone)]
pub struct Gateway {
    node: ClusterNode<Record>,
    domain: Domain,
    timeout: Duration,
    freeze: &'static FreezeWatch,
}

impl Gateway {
    pub fn new(node: ClusterNode<Record>, domain: Domain, timeout: Duration) -> Gateway {
        Gateway { node, domain, timeout, freeze: freeze::watch() }
    }

    /// Runs `operation` on the leader: here, or forwarded.
    pub async fn call<O: Operation>(&self, operation: O) -> Result<O::Reply, GatewayError> {
        // An operation read just after this process was frozen may be seconds old; its client
        // has likely retried elsewhere, so running it could undo what that retry did.
        if !O::REPORTS_A_CHECK {
            self.freeze.check()?;
        }
        if self.node.leading_term().is_some() {
            return Ok(self.domain.run(operation).await?);
        }
        let Some((leader, Some(info))) = self.node.leadership().leader else {
            return Err(GatewayError::NoLeader(None));
        };
        let envelope: Envelope = (self.timeout.as_millis() as u64, operation.into());
        let body = wire::encode(&envelope).map_err(GatewayError::Protocol)?;
        let reply = self
            .node
            .peer_client()
            .post(leader, &info.peer_addr, FORWARD_PATH, body, self.timeout)
            .await
            .map_err(|e| GatewayError::NoLeader(Some(e)))?;
        let answer: Result<O::Reply, ActorError> = wire::decode(&reply).map_err(GatewayError::Protocol)?;
        Ok(answer?)
    }
}

/// Runs a forwarded operation, whatever its type, and answers with its encoded result.
struct Answer<'a>(&'a Domain);

impl<'a> Visitor for Answer<'a> {
    type Output = LocalBoxFuture<'a, HttpResponse>;

    fn visit<O: Operation>(self, operation: O) -> Self::Output {
        Box::pin(async move { encoded(&self.0.run(operation).await) })
    }
}

/// The leader side of forwarding: authenticate, decode, run, encode. A node that does not
/// lead answers `NotLeader` (forwarding is one hop only).
pub async fn forwarded(
    peer: web::Data<PeerService>,
    domain: web::Data<Domain>,
    req: HttpRequest,
    body: Bytes,
) -> HttpResponse {
    match peer.decode_signed::<Envelope>(&req, &body) {
        // An operation that waited past its sender's deadline (in a socket buffer while this
        // process was paused, say) is dropped unrun: the sender already answered its client
        // 503, and running it now could act on a token the client has since moved past.
        Ok(((wait_ms, _), signed)) if signed.elapsed() > Duration::from_millis(wait_ms) => {
            tracing::warn!(
                age_ms = signed.elapsed().as_millis() as u64,
                "dropped a forwarded operation past its deadline"
            );
            HttpResponse::RequestTimeout().content_type("text/plain").body("forwarded operation past its deadline")
        }
        Ok(((_, operation), _)) => operation.visit(Answer(&domain)).await,
        Err(response) => response,
    }
}
