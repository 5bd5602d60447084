//! Tessera's HTTP edge and composition root: configuration, secrets, start-up, telemetry,
//! routes and the error table. The domain lives in `tessera-actors`, replication in
//! `tessera-cluster`; only `startup` knows both.

pub mod cli;
pub mod config;
mod db;
pub mod error;
pub mod http;
mod metrics;
pub mod secrets;
pub mod startup;
pub mod telemetry;

pub use config::Settings;
pub use startup::Node;
