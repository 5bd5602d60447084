//! `tessera-actors`: Tessera's domain.
//!
//! - [`domain`]: pure rules over plain data (`(state, input, now, policy) → verdict`).
//! - [`record`]: what is kept in the replicated store, and under which keys.
//! - [`ports`]: `Clock`, `Entropy`, `Replicator` — how actors reach the world.
//! - [`operation`]: one typed path per operation (each names its reply), and [`service`]:
//!   the [`Domain`] that runs them on the leader; [`protocol`]: their answers.
//! - `SessionFamily`, `Identity`, `Address` and `ClientAddr` actors: thin shells that read the
//!   clock, ask a rule, and commit its decision through [`commit`] (decide, compare-and-set,
//!   reload once), adopting the new state only after the commit.
//! - [`queries`]: reads of the replica that the actors and the edge share (session liveness).
//! - [`keys`]: the signing keys' lifecycle (provisioning, scheduled and immediate rotation).
//! - [`registry`]: activation, passivation and leadership changes; [`sweeper`]: deletes
//!   session families that ended long ago.
//!
//! Nothing here knows openraft or HTTP.

pub mod address_actor;
pub mod audit;
pub mod client_actor;
pub mod clients;
mod commit;
pub mod context;
pub mod domain;
pub mod factor_keys;
pub mod family_actor;
pub mod identity_actor;
pub mod identity_mfa;
pub mod keys;
pub mod operation;
pub mod ports;
pub mod protocol;
pub mod queries;
pub mod record;
mod refusals;
pub mod registry;
pub mod service;
pub mod sweeper;
pub mod unknown;

pub use context::{ActorContext, AuditPolicy, ThrottlePolicy};
pub use operation::{Forwarded, Operation, Visitor};
pub use record::Record;
pub use registry::Registry;
pub use service::Domain;
