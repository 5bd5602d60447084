//! `tessera-actors`: Tessera's domain.
//!
//! - [`record`]: what Tessera keeps in the replicated store.

pub mod record;

pub use record::Record;
