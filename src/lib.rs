//! Tessera's HTTP edge and composition root: configuration, secrets, start-up, telemetry,
//! routes and the error table. The domain lives in `tessera-actors`, replication in
//! `tessera-cluster`; only `startup` knows both.

pub mod adapters;
pub mod admin_cli;
pub mod audit;
pub mod cli;
pub mod config;
mod db;
pub mod error;
mod freeze;
pub mod gateway;
pub mod http;
mod metrics;
pub mod net;
pub mod passwords;
pub mod secrets;
pub mod startup;
pub mod telemetry;
pub mod tokens;
pub mod webhooks;

pub use config::Settings;
pub use startup::Node;
