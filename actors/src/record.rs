//! Everything Tessera keeps in the replicated store, one enum so the store has one value type.
//!
//! Values are bincode-encoded in the Raft log and JSON in the durable snapshot store, so
//! variants are only ever appended, and fields only ever added at the end.

use serde::{Deserialize, Serialize};

/// A value in the replicated store. The foundation stores nothing yet; identities, session
/// families and signing keys arrive with the sessions work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {}
