//! One member of the cluster: log store, state machine, Raft, proposer and flusher, wired up.
//!
//! `ClusterNode::start` must run on the Raft runtime: openraft spawns its core, replication
//! streams and state-machine worker on the runtime that creates it, and the durable store's
//! pool belongs to that runtime too. Everything it returns is `Send + Sync` and can be used
//! from any runtime (actix workers included).

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use openraft::error::{InitializeError, RaftError};
use openraft::{ChangeMembers, ServerState, SnapshotMeta};
use serde::Serialize;

use crate::auth::PeerAuth;
use crate::codec::{self, CodecError};
use crate::config::StoreTuning;
use crate::durable::{DurableStore, StoreError};
use crate::flusher::{FlushError, Flusher};
use crate::kv::{KvState, StreamEntry, StreamHead};
use crate::log_store::LogStore;
use crate::network::{Network, PeerClient, PeerFaults};
use crate::peer::{ElectionHold, PeerService};
use crate::proposer::{ProposeError, Proposer};
use crate::state_machine::{Shared, StateMachine};
use crate::store::{StoreValue, Txn, Versioned, decode_value};
use crate::types::{LogId, NodeId, NodeInfo, Raft, StorageError, TxnOutcome, Version};

/// Identity and location of one node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: NodeId,
    /// Addresses the other members use to reach this node.
    pub info: NodeInfo,
    pub data_dir: PathBuf,
    /// Raft cluster name (shows up in openraft's logs).
    pub cluster_name: String,
    pub tuning: StoreTuning,
    /// Rebuild from the durable store when starting pristine (off for nodes joining a cluster).
    pub restore: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the Raft log at {path}: {source}")]
    OpenLog { path: PathBuf, source: redb::Error },
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("invalid raft configuration: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("restore from the snapshot store failed: {0}")]
    Restore(#[from] StoreError),
    #[error("restore: stored value {key} does not decode: {reason}")]
    RestoreValue { key: String, reason: String },
    #[error("raft failed to start: {0}")]
    Raft(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How this start began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Nothing on disk and nothing in the snapshot store: a brand-new node.
    Pristine,
    /// Resumed from this node's own log and snapshot.
    LocalDisk,
    /// Rebuilt from the durable snapshot store at this log id.
    Restored(LogId),
}

/// A running member of the replicated store, holding values of type `V`.
pub struct ClusterNode<V> {
    inner: Arc<Inner<V>>,
}

impl<V> Clone for ClusterNode<V> {
    fn clone(&self) -> Self {
        ClusterNode { inner: Arc::clone(&self.inner) }
    }
}

struct Inner<V> {
    id: NodeId,
    info: NodeInfo,
    raft: Raft,
    sm: Arc<Shared>,
    log: LogStore,
    proposer: Proposer,
    flusher: Arc<Flusher<V>>,
    store: Arc<dyn DurableStore>,
    peer_client: PeerClient,
    peer_service: PeerService,
    origin: Origin,
    /// The longest election timeout: bounds how long a leadership transfer may take.
    election_timeout_max: Duration,
    _value: PhantomData<fn() -> V>,
}

impl<V: StoreValue> ClusterNode<V> {
    /// Opens the node's disk state (or restores it from the durable store) and starts Raft.
    pub async fn start(
        config: NodeConfig,
        cluster_secret: &[u8],
        store: Arc<dyn DurableStore>,
        faults: Option<Arc<dyn PeerFaults>>,
    ) -> Result<ClusterNode<V>, StartError> {
        let raft_config = Arc::new(config.tuning.openraft_config(&config.cluster_name)?);
        std::fs::create_dir_all(&config.data_dir)?;
        let log_path = config.data_dir.join("raft-log.redb");
        let log = {
            let path = log_path.clone();
            tokio::task::spawn_blocking(move || LogStore::open(&path))
                .await
                .map_err(|e| StartError::Raft(e.to_string()))?
                .map_err(|source| StartError::OpenLog { path: log_path, source })?
        };
        let snapshot_dir = config.data_dir.join("snapshots");
        let sm = tokio::task::spawn_blocking(move || StateMachine::open(&snapshot_dir))
            .await
            .map_err(|e| StartError::Raft(e.to_string()))??;

        let origin = if log.is_pristine().await? && !sm.has_snapshot() {
            match store.load_meta().await?.filter(|_| config.restore) {
                Some(meta) => {
                    let restored = restore::<V>(config.node_id, &*store, &sm, &log, meta).await?;
                    Origin::Restored(restored)
                }
                None => Origin::Pristine,
            }
        } else {
            Origin::LocalDisk
        };

        let auth = PeerAuth::new(cluster_secret);
        let peer_client = PeerClient::new(config.node_id, auth.clone(), faults);
        let shared = sm.shared();
        let raft = Raft::new(
            config.node_id,
            raft_config,
            Network::new(peer_client.clone(), Arc::clone(&shared)),
            log.clone(),
            sm,
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let proposer = Proposer::spawn(raft.clone(), &config.tuning.proposer);
        let flusher = Arc::new(Flusher::<V>::new(
            config.node_id,
            raft.clone(),
            Arc::clone(&shared),
            Arc::clone(&store),
            config.tuning.raft.keep_entries,
            proposer.pause_handle(),
        ));
        tokio::spawn(Arc::clone(&flusher).run(config.tuning.flush_interval()));
        let peer_service = PeerService {
            raft: raft.clone(),
            auth,
            body_limit: config.tuning.peer_body_limit(),
            freshness: Arc::default(),
            holds: Arc::new(ElectionHold::new(raft.clone())),
        };

        let node = ClusterNode {
            inner: Arc::new(Inner {
                id: config.node_id,
                info: config.info,
                raft,
                sm: shared,
                log,
                proposer,
                flusher,
                store,
                peer_client,
                peer_service,
                origin,
                election_timeout_max: Duration::from_millis(config.tuning.raft.election_timeout_max_ms),
                _value: PhantomData,
            }),
        };
        node.reconcile_own_address();
        tracing::info!(node_id = config.node_id, origin = ?origin, "cluster node started");
        Ok(node)
    }

    /// Once this node leads, makes sure the membership carries its current addresses (they
    /// change when a node is restarted on other ports). Runs in the background.
    fn reconcile_own_address(&self) {
        let node = self.clone();
        tokio::spawn(async move {
            let raft = node.raft();
            let me = node.id();
            let leading = |m: &openraft::RaftMetrics<NodeId, NodeInfo>| {
                m.current_leader == Some(me) && m.state == ServerState::Leader
            };
            if raft.wait(None).metrics(leading, "leading").await.is_err() {
                return;
            }
            let recorded = node.inner.sm.state.read().membership().membership().get_node(&me).cloned();
            if recorded.as_ref().is_some_and(|info| *info != node.inner.info) {
                let nodes = BTreeMap::from([(me, node.inner.info.clone())]);
                match raft.change_membership(ChangeMembers::SetNodes(nodes), false).await {
                    Ok(_) => tracing::info!(info = %node.inner.info, "updated this node's addresses in the membership"),
                    Err(e) => tracing::warn!(error = %e, "could not update this node's addresses"),
                }
            }
        });
    }

    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    pub fn info(&self) -> &NodeInfo {
        &self.inner.info
    }

    pub fn origin(&self) -> Origin {
        self.inner.origin
    }

    /// The openraft handle, for membership changes and linearizable reads.
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// Raft routes for the peer listener.
    pub fn peer_service(&self) -> &PeerService {
        &self.inner.peer_service
    }

    /// The shared client for requests to other members.
    pub fn peer_client(&self) -> &PeerClient {
        &self.inner.peer_client
    }

    /// Makes this node the first member of a new cluster with `members` as voters. Harmless
    /// (returns `Ok(false)`) if the cluster was already initialised.
    pub async fn initialize(&self, members: BTreeMap<NodeId, NodeInfo>) -> Result<bool, String> {
        match self.inner.raft.initialize(members).await {
            Ok(()) => Ok(true),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Initialises a one-member cluster if this node has never been part of one.
    pub async fn bootstrap_single(&self) -> Result<bool, String> {
        if self.inner.origin != Origin::Pristine {
            return Ok(false);
        }
        self.initialize(BTreeMap::from([(self.inner.id, self.inner.info.clone())])).await
    }

    /// Proposes a transaction (this node must be the leader) and waits for its outcome.
    pub async fn propose(&self, txn: Txn<V>) -> Result<TxnOutcome, ProposeError> {
        self.inner.proposer.propose(txn.into_raw()).await
    }

    /// The live value of `key` in this node's replica.
    pub fn get(&self, key: &str) -> Result<Option<Versioned<V>>, CodecError> {
        let found = self.inner.sm.state.read().get(key);
        found.map(|(version, bytes)| Ok(Versioned { version, value: decode_value(&bytes)? })).transpose()
    }

    /// A counter that grows whenever this replica applies a write to a key under one of
    /// `prefixes`, or replaces its whole state (a snapshot): one atomic load tells a derived
    /// view whether to rebuild. Bumped under the state's write lock, so after seeing a new
    /// count a read of the replica sees the change.
    pub fn watch_prefixes(&self, prefixes: &[&str]) -> Arc<std::sync::atomic::AtomicU64> {
        self.inner.sm.watch(prefixes)
    }

    /// Live entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Versioned<V>)>, CodecError> {
        self.scan_prefix_page(prefix, None, usize::MAX)
    }

    /// Up to `limit` live entries whose key starts with `prefix` and sorts after `after`, in
    /// key order: a long scan in pages, each holding the replica's lock only briefly.
    pub fn scan_prefix_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Versioned<V>)>, CodecError> {
        let raw: Vec<(String, Version, Arc<[u8]>)> = {
            let state = self.inner.sm.state.read();
            state
                .scan_prefix(prefix, after)
                .take(limit)
                .map(|(k, v, bytes)| (k.to_string(), v, Arc::clone(bytes)))
                .collect()
        };
        raw.into_iter()
            .map(|(key, version, bytes)| Ok((key, Versioned { version, value: decode_value(&bytes)? })))
            .collect()
    }

    /// The term this node leads in, if it believes it leads (what `leadership` says, without
    /// looking up the leader's addresses).
    pub fn leading_term(&self) -> Option<u64> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        (m.state == ServerState::Leader && m.current_leader == Some(self.inner.id)).then_some(m.current_term)
    }

    /// Where `stream` stands in this replica.
    pub fn stream_head(&self, stream: &str) -> StreamHead {
        self.inner.sm.state.read().stream_head(stream)
    }

    /// Stream entries this replica holds that the durable store may not: when the store is
    /// unreachable, this grows with every append.
    pub fn stream_backlog(&self) -> usize {
        self.inner.sm.state.read().stream_backlog()
    }

    /// Up to `limit` entries of `stream` after `after` that this replica still holds (those
    /// the durable store has not taken over yet), in order.
    pub fn stream_entries(&self, stream: &str, after: u64, limit: usize) -> Vec<StreamEntry> {
        self.inner.sm.state.read().stream_entries(stream, after, limit)
    }

    /// Who leads, as this node currently believes.
    pub fn leadership(&self) -> Leadership {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        let leader = m.current_leader.map(|id| {
            let info = m.membership_config.membership().get_node(&id).cloned();
            (id, info)
        });
        Leadership {
            term: m.current_term,
            leader,
            this_node_leads: m.state == ServerState::Leader && m.current_leader == Some(self.inner.id),
        }
    }

    /// How long since this replica was known to be as current as a leader in charge: for the
    /// leader, since it sent the requests a quorum of voters (itself included) last answered;
    /// for a follower, since the leader it applied everything from last had that proof (see
    /// `peer::Freshness`). `None` if never. Reads should fail closed past a bound on this.
    ///
    /// A new leader cannot exist before `election_timeout_max` after a quorum last heard from
    /// the old one (openraft's leader lease), so with `max_staleness ≤ election_timeout_max`
    /// no node serves a read that a newer leader has already overwritten.
    pub fn staleness(&self) -> Option<Duration> {
        if self.leading_term().is_none() {
            let applied = self.applied_index().unwrap_or(0);
            return self.inner.peer_service.freshness.lock().age(applied);
        }
        let state = self.inner.sm.state.read();
        self.inner.peer_client.quorum_age(state.membership().membership().voter_ids())
    }

    /// The voters of the membership this replica has applied.
    pub(crate) fn voters(&self) -> BTreeSet<NodeId> {
        self.inner.sm.state.read().membership().membership().voter_ids().collect()
    }

    /// Waits until this replica has applied everything committed before the call: on the
    /// leader a read-index round trip, on a follower the leader's read index (asked over the
    /// peer network) and then a local wait.
    pub async fn linearize(&self, timeout: Duration) -> Result<(), ConfirmError> {
        let leadership = self.leadership();
        if leadership.this_node_leads {
            return self.confirm_leadership(timeout).await.map(|_| ());
        }
        let Some((leader, Some(info))) = leadership.leader else {
            return Err(ConfirmError::Unavailable("no leader known".into()));
        };
        let unavailable = |e: &dyn std::fmt::Display| ConfirmError::Unavailable(e.to_string());
        let bytes = self
            .inner
            .peer_client
            .post(leader, &info.peer_addr, crate::network::paths::READ_INDEX, Vec::new(), timeout)
            .await
            .map_err(|e| unavailable(&e))?;
        type ReadIndex =
            Result<Option<LogId>, RaftError<NodeId, openraft::error::CheckIsLeaderError<NodeId, NodeInfo>>>;
        let read: ReadIndex = codec::decode(&bytes).map_err(|e| unavailable(&e))?;
        let index = read.map_err(|e| unavailable(&e))?.map(|l| l.index);
        self.inner
            .raft
            .wait(Some(timeout))
            .applied_index_at_least(index, "read index")
            .await
            .map(|_| ())
            .map_err(|e| unavailable(&e))
    }

    /// Stops this node from starting new log entries for `duration` (zero: resumes) and waits
    /// until the entries in flight are appended; returns whether they were within `duration`.
    /// Used by a leadership transfer so the target can hold the whole log before it stands.
    pub async fn pause_proposals(&self, duration: Duration) -> bool {
        self.inner.proposer.pause(duration).await
    }

    /// Keeps this node from standing for election for `duration` (zero: lets it stand again
    /// now). While a transfer runs, every voter but the target holds, so the target is the only
    /// candidate. The hold lapses by itself, so a transfer that dies half-way heals.
    pub fn hold_elections(&self, duration: Duration) {
        self.inner.peer_service.holds.hold(duration);
    }

    /// The longest election timeout this node runs with.
    pub fn election_timeout_max(&self) -> Duration {
        self.inner.election_timeout_max
    }

    /// Confirms with a quorum that this node leads and waits until its replica has applied
    /// everything committed before the call (one read-index round trip). Returns the term.
    pub async fn confirm_leadership(&self, timeout: Duration) -> Result<u64, ConfirmError> {
        let term = self.inner.raft.metrics().borrow().current_term;
        match tokio::time::timeout(timeout, self.inner.raft.ensure_linearizable()).await {
            Ok(Ok(_)) if self.inner.raft.metrics().borrow().current_term == term => Ok(term),
            Ok(Ok(_)) => Err(ConfirmError::Unavailable("the term changed while confirming".into())),
            Ok(Err(e)) if e.forward_to_leader().is_some() => Err(ConfirmError::NotLeader),
            Ok(Err(e)) => Err(ConfirmError::Unavailable(e.to_string())),
            Err(_) => Err(ConfirmError::Unavailable("no quorum answered in time".into())),
        }
    }

    /// The index of the last entry applied to this replica.
    pub fn applied_index(&self) -> Option<Version> {
        self.inner.sm.state.read().last_applied().map(|l| l.index)
    }

    /// Flushes to the durable store now (leader only does real work). Returns the index it holds.
    pub async fn flush(&self) -> Result<Version, FlushError> {
        self.inner.flusher.flush().await.map(|f| f.held)
    }

    /// A byte-exact image of the replicated state (for replica comparisons in tests and tools).
    pub fn state_image(&self) -> Vec<u8> {
        let state = self.inner.sm.state.read();
        let image = state.image();
        let meta = SnapshotMeta {
            last_log_id: state.last_applied(),
            last_membership: state.membership().clone(),
            snapshot_id: String::new(),
        };
        drop(state);
        let mut bytes = Vec::new();
        image.write(&meta, &mut bytes).expect("writing to memory cannot fail");
        bytes
    }

    /// A point-in-time description of this node for operators.
    pub fn status(&self) -> ClusterStatus {
        let metrics = self.inner.raft.metrics().borrow().clone();
        let (live, tombstones, dirty, clean, watermark, membership) = {
            let state = self.inner.sm.state.read();
            let membership = state.membership().clone();
            (
                state.live_keys(),
                state.tombstones(),
                state.dirty_keys(),
                state.nothing_to_flush(),
                state.watermark(),
                membership,
            )
        };
        let flush = self.inner.flusher.state.lock().clone();
        let applied = metrics.last_applied.map_or(0, |l| l.index);
        let held = flush.flushed.max(watermark);
        // With no dirty key and no pending stream entry the store holds everything that
        // matters, whatever entries (compactions, on a follower) came after its watermark.
        let lag_entries = if clean { 0 } else { applied.saturating_sub(held) };
        let voters: BTreeSet<NodeId> = membership.membership().voter_ids().collect();
        let last_log = metrics.last_log_index.unwrap_or(0);
        let members = membership
            .membership()
            .nodes()
            .map(|(id, info)| {
                let role = if metrics.current_leader == Some(*id) {
                    "leader"
                } else if voters.contains(id) {
                    "follower"
                } else {
                    "learner"
                };
                // Replication progress is known on the leader only.
                let matched = metrics.replication.as_ref().and_then(|r| r.get(id)).map(|m| m.map_or(0, |l| l.index));
                Member {
                    id: *id,
                    peer_addr: info.peer_addr.clone(),
                    public_addr: info.public_addr.clone(),
                    voter: voters.contains(id),
                    role,
                    matched_index: matched,
                    replication_lag: matched.map(|m| last_log.saturating_sub(m)),
                    since_contact_seconds: (*id != self.inner.id && metrics.replication.is_some())
                        .then(|| self.inner.peer_client.since_contact(*id).map(|d| d.as_secs_f64()))
                        .flatten(),
                }
            })
            .collect();
        let leader = metrics.current_leader.and_then(|id| membership.membership().get_node(&id).cloned());
        ClusterStatus {
            node_id: self.inner.id,
            role: role_name(metrics.state),
            term: metrics.current_term,
            leader_id: metrics.current_leader,
            leader,
            members,
            last_log_index: metrics.last_log_index,
            committed: self.inner.log.committed_index(),
            applied: metrics.last_applied.map(|l| l.index),
            snapshot_index: metrics.snapshot.map(|l| l.index),
            purged_index: metrics.purged.map(|l| l.index),
            store: StoreStatus {
                kind: self.inner.store.kind(),
                reachable: flush.reachable,
                watermark: held,
                lag_entries,
                lag_seconds: if lag_entries == 0 { 0.0 } else { flush.caught_up_at.elapsed().as_secs_f64() },
                last_flush_age_seconds: flush.last_flush.map(|t| t.elapsed().as_secs_f64()),
                last_error: flush.last_error,
            },
            proposer: ProposerStatus {
                queue_depth: self.inner.proposer.queue_depth(),
                entries: self.inner.proposer.stats().entries(),
                transactions: self.inner.proposer.stats().txns(),
                recent_batch_sizes: self.inner.proposer.stats().recent_batches(),
            },
            keys: KeyStatus { live, tombstones, dirty },
            running: metrics.running_state.is_ok(),
            since_leader_contact_seconds: self.staleness().map(|d| d.as_secs_f64()),
            snapshot_age_seconds: self.inner.sm.snapshot_age().map(|d| d.as_secs_f64()),
        }
    }

    /// True if Raft has not stopped with a fatal error.
    pub fn is_running(&self) -> bool {
        self.inner.raft.metrics().borrow().running_state.is_ok()
    }

    /// Stops the flusher (after a last flush if this node leads) and shuts Raft down.
    pub async fn shutdown(&self) {
        let leading = self.inner.raft.metrics().borrow().state == ServerState::Leader;
        if leading {
            match self.inner.flusher.flush().await {
                Ok(flushed) => tracing::info!(index = flushed.held, "final flush to the snapshot store"),
                Err(e) => tracing::warn!(error = %e, "final flush to the snapshot store failed"),
            }
        }
        self.inner.flusher.stop();
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// Rebuilds the state machine from the durable store and starts the log right after it.
async fn restore<V: StoreValue>(
    node_id: NodeId,
    store: &dyn DurableStore,
    sm: &StateMachine,
    log: &LogStore,
    meta: crate::durable::StoreMeta,
) -> Result<LogId, StartError> {
    let started = Instant::now();
    // Rows are converted (JSON to the log's encoding) a chunk at a time, off the async threads,
    // so the JSON text of a large store is never held in memory all at once.
    const CHUNK: usize = 8_192;
    let convert = |rows: Vec<crate::durable::StoredRow>| async move {
        tokio::task::spawn_blocking(move || {
            rows.into_iter()
                .map(|row| {
                    let value: V = serde_json::from_str(&row.json)
                        .map_err(|e| StartError::RestoreValue { key: row.key.clone(), reason: e.to_string() })?;
                    let bytes = codec::encode(&value)
                        .map_err(|e| StartError::RestoreValue { key: row.key.clone(), reason: e.to_string() })?;
                    Ok((row.key, row.version, bytes))
                })
                .collect::<Result<Vec<_>, StartError>>()
        })
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?
    };
    // Reading the next chunks overlaps with converting this one.
    let mut chunks = store
        .load_rows()
        .chunks(CHUNK)
        .map(|rows| async move {
            let rows = rows.into_iter().collect::<Result<Vec<_>, _>>()?;
            convert(rows).await
        })
        .buffered(2);
    let mut encoded = Vec::new();
    while let Some(chunk) = chunks.next().await {
        encoded.extend(chunk?);
    }
    drop(chunks);
    let count = encoded.len();
    let loaded_ms = started.elapsed().as_millis() as u64;
    let snapshot_meta = SnapshotMeta {
        last_log_id: Some(meta.applied),
        last_membership: meta.membership.clone(),
        snapshot_id: format!("restored-{}-{}", meta.applied.leader_id.term, meta.applied.index),
    };
    let heads = store.load_heads().await?;
    let state = tokio::task::spawn_blocking({
        let meta = snapshot_meta.clone();
        move || KvState::from_rows(&meta, encoded, heads)
    })
    .await
    .map_err(|e| StartError::Raft(e.to_string()))?;
    let built_ms = started.elapsed().as_millis() as u64;
    sm.restore(snapshot_meta, state).await?;
    log.start_after(meta.applied).await?;
    // Never vote in a term older than the restored log: start from the term it was written in.
    let mut log_handle = log.clone();
    openraft::storage::RaftLogStorage::save_vote(
        &mut log_handle,
        &openraft::Vote::new(meta.applied.leader_id.term, node_id),
    )
    .await?;
    tracing::warn!(
        rows = count,
        applied = %meta.applied,
        loaded_ms,
        built_ms,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "restored state from the snapshot store (rows read and converted, state built, local snapshot written)"
    );
    Ok(meta.applied)
}

/// Who leads, as one node believes.
#[derive(Clone, Debug)]
pub struct Leadership {
    pub term: u64,
    /// The leader's id and addresses, if one is known.
    pub leader: Option<(NodeId, Option<NodeInfo>)>,
    pub this_node_leads: bool,
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfirmError {
    #[error("not the leader")]
    NotLeader,
    #[error("leadership not confirmed: {0}")]
    Unavailable(String),
}

/// The operator's view of one node (`GET /v1/cluster`).
#[derive(Clone, Debug, Serialize)]
pub struct ClusterStatus {
    pub node_id: NodeId,
    pub role: &'static str,
    pub term: u64,
    pub leader_id: Option<NodeId>,
    pub leader: Option<NodeInfo>,
    pub members: Vec<Member>,
    pub last_log_index: Option<u64>,
    pub committed: Option<u64>,
    pub applied: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub store: StoreStatus,
    pub proposer: ProposerStatus,
    pub keys: KeyStatus,
    pub running: bool,
    /// Seconds since this node last knew a leader was in charge (for the leader: since a
    /// quorum last answered it). Reads fail closed when this exceeds `max_staleness`.
    pub since_leader_contact_seconds: Option<f64>,
    pub snapshot_age_seconds: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Member {
    pub id: NodeId,
    pub peer_addr: String,
    pub public_addr: String,
    pub voter: bool,
    /// `leader`, `follower` or `learner`.
    pub role: &'static str,
    /// On the leader: the last log index this member is known to hold.
    pub matched_index: Option<u64>,
    /// On the leader: entries this member is behind.
    pub replication_lag: Option<u64>,
    /// On the leader: seconds since this member last answered.
    pub since_contact_seconds: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StoreStatus {
    pub kind: &'static str,
    pub reachable: bool,
    /// Highest log index the durable store is known to hold.
    pub watermark: u64,
    pub lag_entries: u64,
    pub lag_seconds: f64,
    pub last_flush_age_seconds: Option<f64>,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProposerStatus {
    pub queue_depth: usize,
    pub entries: u64,
    pub transactions: u64,
    pub recent_batch_sizes: Vec<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct KeyStatus {
    pub live: usize,
    pub tombstones: usize,
    pub dirty: usize,
}
