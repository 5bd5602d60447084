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
use crate::types::{NodeId, NodeInfo, TypeConfig};

/// Paths of the Raft routes on the peer listener.
pub mod paths {
    pub const APPEND: &str = "/raft/append";
    pub const VOTE: &str = "/raft/vote";
    pub const SNAPSHOT: &str = "/raft/snapshot";
    pub const READ_INDEX: &str = "/raft/read-index";
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
    /// When each peer last answered a request (any 2xx).
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

    /// Time since `peer` last answered, if it ever did.
    pub fn since_contact(&self, peer: NodeId) -> Option<Duration> {
        self.contacts.lock().get(&peer).map(|at| at.elapsed())
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
        if status.is_success() {
            self.contacts.lock().insert(target, Instant::now());
        } else {
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
}

impl Network {
    pub fn new(client: PeerClient) -> Network {
        Network { client }
    }
}

pub struct Connection {
    client: PeerClient,
    target: NodeId,
    node: NodeInfo,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Connection {
        Connection { client: self.client.clone(), target, node: node.clone() }
    }
}

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
        self.call(paths::APPEND, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        self.call(paths::SNAPSHOT, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, RaftError<NodeId>> {
        self.call(paths::VOTE, &rpc, option.hard_ttl()).await
    }
}
