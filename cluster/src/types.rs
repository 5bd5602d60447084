//! The replicated command language: transactions of compares and operations over versioned keys.
//!
//! Everything here is logged (bincode) and sent between nodes, so the layout is append-only:
//! new enum variants go at the end, fields are never reordered or removed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A Raft node id. Operators choose it; it never changes for the life of a node.
pub type NodeId = u64;

/// A log index. A value's version is the index of the log entry that last wrote it.
pub type Version = u64;

/// How the other members reach a node: its peer listener (Raft RPC and forwarding) and its public API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub peer_addr: String,
    pub public_addr: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer={} public={}", self.peer_addr, self.public_addr)
    }
}

openraft::declare_raft_types!(
    /// openraft's type configuration for Tessera's replicated store.
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = NodeId,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeInfo>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeInfo>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;

/// One entry's payload: a batch of independent transactions, or housekeeping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Applied in order; each transaction commits or conflicts on its own.
    Txns(Vec<RawTxn>),
    /// The durable store now holds every change up to `upto`: tombstones at or below it can go.
    Compact { upto: Version },
}

/// A transaction whose values are already encoded (see [`crate::Txn`] for the typed builder).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawTxn {
    pub compares: Vec<Compare>,
    pub ops: Vec<RawOp>,
}

/// A precondition on one key. All compares of a transaction must hold for its operations to apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub key: String,
    pub expect: Expect,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    /// The key has no live value (never written, or deleted).
    Absent,
    /// The key's live value was written at exactly this version.
    Version(Version),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RawOp {
    Put {
        key: String,
        value: Vec<u8>,
    },
    Delete {
        key: String,
    },
    /// Appends `text` to the hash-chained `stream` (see `kv`): `apply` gives it the stream's
    /// next sequence number and chains it to the previous entry.
    Append {
        stream: String,
        text: String,
    },
}

/// What became of one transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOutcome {
    /// Every operation applied; written keys now carry `version`.
    Committed { version: Version },
    /// The first compare that failed: `key` is actually at `actual` (`None`: absent). Nothing applied.
    Conflict { key: String, actual: Option<Version> },
}

/// The state machine's answer for one log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    Blank,
    Membership,
    Txns(Vec<TxnOutcome>),
    Compacted,
}
