//! The client side of the peer network: Raft RPC (and, for the layers above, request
//! forwarding) as HTTP POSTs with bincode bodies over one shared keep-alive client.
//!
//! `new_client` only clones a handle: openraft calls it for every vote round and every
//! linearizable read, so it must not connect. Connection failures map to
//! `RPCError::Unreachable` (openraft backs off), everything else to `RPCError::Network`.
//!
//! Tests inject faults through [`PeerFaults`]: a blocked message fails as if the peer were
//! unreachable, without leaving the process or the loopback interface.

use std::collections::{BTreeSet, HashMap};
use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use parking_lot::RwLock;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::{AUTH_HEADER, PeerAuth};
use crate::codec;
use crate::state_machine::Shared;
use crate::types::{NodeId, NodeInfo, TypeConfig};

/// Paths of the Raft routes on the peer listener.
pub mod paths {
    pub const APPEND: &str = "/raft/append";
    pub const VOTE: &str = "/raft/vote";
    pub const SNAPSHOT: &str = "/raft/snapshot";
    pub const READ_INDEX: &str = "/raft/read-index";
    /// A membership change or leadership transfer forwarded to the leader.
    pub const CHANGE: &str = "/raft/change";
    /// A leadership transfer asks the other voters not to stand for election meanwhile.
    pub const HOLD_ELECTIONS: &str = "/raft/hold-elections";
    /// A leadership transfer asks its target to stand for election.
    pub const ELECT: &str = "/raft/elect";
}

/// Decides whether a message from one node to another gets through (fault injection).
pub trait PeerFaults: Send + Sync + 'static {
    fn allows(&self, from: NodeId, to: NodeId) -> bool;
}

/// A symmetric partition: isolated nodes can neither send to nor receive from anyone.
#[derive(Default)]
pub struct Partition {
    isolated: RwLock<BTreeSet<NodeId>>,
}

impl Partition {
    pub fn isolate(&self, node: NodeId) {
        self.isolated.write().insert(node);
    }

    pub fn heal(&self) {
        self.isolated.write().clear();
    }

    /// Replaces the set of isolated nodes.
    pub fn set(&self, nodes: BTreeSet<NodeId>) {
        *self.isolated.write() = nodes;
    }

    pub fn isolated(&self) -> BTreeSet<NodeId> {
        self.isolated.read().clone()
    }
}

impl PeerFaults for Partition {
    fn allows(&self, from: NodeId, to: NodeId) -> bool {
        let isolated = self.isolated.read();
        !isolated.contains(&from) && !isolated.contains(&to)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("peer {0} unreachable: {1}")]
    Unreachable(String, String),
    #[error("peer {0}: {1}")]
    Network(String, String),
    #[error("peer {addr} answered {status}")]
    Status { addr: String, status: u16, body: String },
}

/// One shared HTTP client for everything this node sends to its peers.
#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    auth: PeerAuth,
    faults: Option<Arc<dyn PeerFaults>>,
    self_id: NodeId,
    /// When the latest request each peer acknowledged (see `acknowledged`) was sent.
    contacts: Arc<parking_lot::Mutex<HashMap<NodeId, Instant>>>,
}

impl PeerClient {
    pub fn new(self_id: NodeId, auth: PeerAuth, faults: Option<Arc<dyn PeerFaults>>) -> PeerClient {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .connect_timeout(Duration::from_secs(1))
            .build()
            .expect("a plain HTTP client always builds");
        PeerClient { http, auth, faults, self_id, contacts: Arc::default() }
    }

    /// Records that `peer` acknowledged this node's leadership in answer to a request sent at
    /// `sent` (a vote granted, entries or a snapshot chunk accepted in this node's term).
    pub fn acknowledged(&self, peer: NodeId, sent: Instant) {
        let mut contacts = self.contacts.lock();
        let at = contacts.entry(peer).or_insert(sent);
        *at = (*at).max(sent);
    }

    /// Time since the latest request `peer` acknowledged was sent, if it ever did.
    pub fn since_contact(&self, peer: NodeId) -> Option<Duration> {
        self.contacts.lock().get(&peer).map(|at| at.elapsed())
    }

    /// For a leader with these voters: time since it sent requests that a majority (itself
    /// included) answered, i.e. how old its proof of leadership is. `None` if it has none.
    pub fn quorum_age(&self, voters: impl IntoIterator<Item = NodeId>) -> Option<Duration> {
        let mut count = 0;
        let mut ages: Vec<Duration> = Vec::new();
        {
            let contacts = self.contacts.lock();
            for voter in voters {
                count += 1;
                if voter != self.self_id {
                    ages.push(contacts.get(&voter).map_or(Duration::MAX, |at| at.elapsed()));
                }
            }
        }
        let needed = count / 2; // other voters needed for a majority with this one
        if needed == 0 {
            return Some(Duration::ZERO);
        }
        ages.sort();
        ages.get(needed - 1).copied().filter(|age| *age != Duration::MAX)
    }

    /// The shared HTTP client (for administrative calls between nodes).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn auth(&self) -> &PeerAuth {
        &self.auth
    }

    /// POSTs a signed body to `path` on the peer at `addr`; returns the response body of a 2xx.
    pub async fn post(
        &self,
        target: NodeId,
        addr: &str,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Bytes, PeerError> {
        if let Some(faults) = &self.faults
            && !faults.allows(self.self_id, target)
        {
            return Err(PeerError::Unreachable(addr.to_string(), "partitioned (fault injection)".into()));
        }
        let tag = self.auth.sign(path, &body);
        let response = self
            .http
            .post(format!("http://{addr}{path}"))
            .header(AUTH_HEADER, tag)
            .header("content-type", "application/octet-stream")
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| classify(addr, &e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| classify(addr, &e))?;
        if let Some(faults) = &self.faults {
            // A reply across a partition that formed mid-flight is lost too.
            if !faults.allows(target, self.self_id) {
                return Err(PeerError::Network(addr.to_string(), "reply dropped (fault injection)".into()));
            }
        }
        if !status.is_success() {
            return Err(PeerError::Status {
                addr: addr.to_string(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            });
        }
        Ok(bytes)
    }
}

fn classify(addr: &str, e: &reqwest::Error) -> PeerError {
    let detail = error_chain(e);
    if e.is_connect() {
        PeerError::Unreachable(addr.to_string(), detail)
    } else {
        PeerError::Network(addr.to_string(), detail)
    }
}

fn error_chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// openraft's connection factory. Cheap: it hands out handles on the shared client.
#[derive(Clone)]
pub struct Network {
    client: PeerClient,
    sm: Arc<Shared>,
}

impl Network {
    pub(crate) fn new(client: PeerClient, sm: Arc<Shared>) -> Network {
        Network { client, sm }
    }
}

pub struct Connection {
    client: PeerClient,
    sm: Arc<Shared>,
    target: NodeId,
    node: NodeInfo,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Connection {
        Connection { client: self.client.clone(), sm: Arc::clone(&self.sm), target, node: node.clone() }
    }
}

/// The body of an AppendEntries request: how old the leader's proof of leadership was when
/// it sent the request (milliseconds; `None` if it had none), and openraft's request. A
/// follower is only as current as its leader knew itself to be (see `peer::Freshness`).
pub(crate) type AppendBody = (Option<u64>, AppendEntriesRequest<TypeConfig>);

type RpcResult<T, E> = Result<T, RPCError<NodeId, NodeInfo, E>>;

impl Connection {
    async fn call<Req, Resp, E>(&self, path: &str, request: &Req, timeout: Duration) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let body = codec::encode(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let bytes =
            self.client.post(self.target, &self.node.peer_addr, path, body, timeout).await.map_err(|e| match e {
                PeerError::Unreachable(..) => RPCError::Unreachable(Unreachable::new(&e)),
                PeerError::Network(..) | PeerError::Status { .. } => RPCError::Network(NetworkError::new(&e)),
            })?;
        let result: Result<Resp, E> = codec::decode(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
        let voters: Vec<NodeId> = self.sm.state.read().membership().membership().voter_ids().collect();
        let lease = self.client.quorum_age(voters).map(|age| age.as_millis().min(u64::MAX as u128) as u64);
        let body: AppendBody = (lease, rpc);
        let sent = Instant::now();
        let response = self.call(paths::APPEND, &body, option.hard_ttl()).await;
        // A higher vote in the answer means this node no longer leads: no acknowledgement.
        if matches!(&response, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            self.client.acknowledged(self.target, sent);
        }
        response
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        let (sent, vote) = (Instant::now(), rpc.vote);
        let response: RpcResult<InstallSnapshotResponse<NodeId>, _> =
            self.call(paths::SNAPSHOT, &rpc, option.hard_ttl()).await;
        if matches!(&response, Ok(r) if r.vote <= vote) {
            self.client.acknowledged(self.target, sent);
        }
        response
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, RaftError<NodeId>> {
        let sent = Instant::now();
        let response: RpcResult<VoteResponse<NodeId>, _> = self.call(paths::VOTE, &rpc, option.hard_ttl()).await;
        if matches!(&response, Ok(r) if r.vote_granted) {
            self.client.acknowledged(self.target, sent);
        }
        response
    }
}
