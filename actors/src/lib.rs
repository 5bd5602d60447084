//! `tessera-actors`: Tessera's domain.
//!
//! - [`domain`]: pure rules over plain data (`(state, input, now, policy) → verdict`).
//! - [`record`]: what is kept in the replicated store, and under which keys.
//! - [`ports`]: `Clock`, `Entropy`, `Replicator` — how actors reach the world.
//! - `SessionFamily` and `Identity` actors: thin shells that read the clock, ask a rule,
//!   commit its verdict as a compare-and-set and adopt the new state only after the commit.
//! - [`registry`]: activation, passivation and leadership changes; [`sweeper`]: deletes
//!   session families that ended long ago.
//! - [`service`]: the entry points the edge calls on the leader, and [`protocol`]: the
//!   requests and answers (also forwarded from followers).
//!
//! Nothing here knows openraft or HTTP.

pub mod client_actor;
pub mod context;
pub mod domain;
pub mod family_actor;
pub mod identity_actor;
pub mod ports;
pub mod protocol;
pub mod queries;
pub mod record;
pub mod registry;
pub mod service;
pub mod sweeper;
pub mod unknown;
pub mod unknown_actor;

pub use context::{ActorContext, ThrottlePolicy};
pub use record::Record;
pub use registry::Registry;
pub use service::Sessions;
