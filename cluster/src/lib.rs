//! `tessera-cluster`: a replicated, durable, versioned key-value store on openraft.
//!
//! It knows nothing about authentication. A tour, bottom up:
//!
//! - [`types`]: the command language. A log entry carries a batch of transactions; a
//!   transaction is compares (key at version *v*, or absent) plus puts and deletes, applied
//!   all or nothing, each with its own outcome. A value's version is the log index that wrote it.
//! - `kv`: the map and its deterministic `apply` (no clock, no randomness, `BTreeMap` only).
//! - `state_machine`: openraft's state machine over `kv`, with snapshot files.
//! - `log_store`: the Raft log and vote in one redb file, fsynced before acknowledgement.
//! - [`proposer`]: batches concurrent transactions into one entry in front of `client_write`.
//! - `network` / [`peer`]: Raft RPC over HTTP with bincode bodies and a cluster-secret MAC.
//! - `membership`: membership changes and leadership transfer, forwarded to the leader over
//!   the same signed peer network.
//! - [`durable`]: the Postgres/SQLite snapshot store, and the flusher that feeds it.
//! - [`ClusterNode`]: all of the above wired together, with a typed API over a serde value type.

// openraft's `StorageError` and `ConfigError` are large by design and its traits return them
// by value; boxing them only here would buy nothing.
#![allow(clippy::result_large_err)]

mod auth;
mod codec;
mod config;
pub mod durable;
mod flusher;
mod kv;
mod log_store;
mod membership;
mod network;
mod node;
pub mod peer;
pub mod proposer;
mod state_machine;
mod store;
pub mod types;

pub use auth::{AUTH_HEADER, PeerAuth};
pub use codec::CodecError;
pub use config::{FlushConfig, RaftTuning, StoreTuning};
pub use flusher::FlushError;
pub use kv::{StreamEntry, StreamHead};
pub use log_store::LogStore;
pub use membership::{Change, Changed, MembershipError, Refusal};
pub use network::{Partition, PeerClient, PeerError, PeerFaults, paths};
pub use node::{ClusterNode, ClusterStatus, ConfirmError, Leadership, Member, NodeConfig, Origin, StartError};
pub use proposer::{ProposeError, ProposerConfig};
pub use state_machine::StateMachine;
pub use store::{StoreValue, Txn, Versioned};
pub use types::{NodeId, NodeInfo, TxnOutcome, Version};

/// Encoding used on the wire and on disk, for tools and tests that need to speak it.
pub mod wire {
    pub use crate::codec::{decode, encode};
}
