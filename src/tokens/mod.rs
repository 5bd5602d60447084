//! Access tokens and the keys that sign them.

pub mod access;
pub mod keyring;
pub mod provider;

pub use access::{AccessClaims, AccessTokens, TokenError};
pub use keyring::KeyRing;
