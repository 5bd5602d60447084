//! Access tokens and the keys that sign them.

pub mod access;
pub mod keyring;
pub mod provider;

pub use access::{AccessClaims, AccessTokens, Issuer, TokenError, Verified};
pub use keyring::KeyRing;
