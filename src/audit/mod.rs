//! The audit trail beyond the replicated state: the records as the snapshot store holds them
//! (`store`), the leader's signed checkpoints and retention purge (`keeper`, `checkpoint`), the
//! admin query's view of an event (`view`) and `tessera audit verify` (`verify`).
//! What an event records and how it is sealed is `tessera_actors::audit`; how the chain is
//! computed is `tessera_cluster`'s streams. `docs/audit.md` specifies all of it for outsiders.

pub mod checkpoint;
pub mod cli;
pub mod keeper;
pub mod store;
pub mod verify;
pub mod view;
