//! Tessera's rules: pure, synchronous functions of `(state, input, now, policy)`.
//!
//! No clock, randomness, IO, async, actix or openraft in here. Outcomes are enum values,
//! matched without `_` arms, so a new outcome is a compile error wherever it matters.

pub mod device;
pub mod email;
pub mod family;
pub mod identity;
pub mod ids;
pub mod ip;
pub mod refresh_token;
pub mod time;

pub use device::DeviceHash;
pub use email::{Email, EmailError};
pub use family::{
    AccessVerdict, Amr, Family, Opening, RefreshVerdict, Revocation, RevokeReason, RevokeVerdict, SessionPolicy,
};
pub use identity::{Identity, LoginVerdict};
pub use ids::{FamilyId, Generation, UserId};
pub use ip::IpPrefix;
pub use refresh_token::{Pepper, RefreshToken};
pub use time::Millis;
