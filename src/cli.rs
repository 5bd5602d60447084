//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "tessera", version, about = "Authentication and session server on a Raft cluster")]
pub struct Cli {
    /// TOML configuration file (environment variables `TESSERA_…` override it).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node until SIGINT or SIGTERM.
    Serve,
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Administer a cluster through a node's peer listener (needs the admin token).
    Cluster(ClusterArgs),
    /// Print fresh random secrets as `export` lines (one set for every node of a cluster).
    Secrets,
    /// List or rotate the cluster's signing keys through a node's public API (needs the admin
    /// token; see docs/runbooks/key-rotation.md).
    Keys(KeysArgs),
    /// Register, list or delete resource-server clients (introspection, revocation) through a
    /// node's public API (needs the admin token).
    Clients(ClientsArgs),
    /// Check the audit trail in the snapshot store (see docs/audit.md).
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the chain, the signed checkpoints and the purge anchor; exit 0 if intact, 1 naming
    /// the first bad `seq`, 2 if the store cannot be read.
    Verify {
        /// The checkpoint key's public half (base64url), as `tessera audit public-key` printed
        /// it; default: derived from the configured key-encryption key.
        #[arg(long)]
        public_key: Option<String>,
        /// The snapshot store (default: `database_url` from the configuration).
        #[arg(long, env = "TESSERA_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
    /// Print the public key that verifies the audit checkpoints (keep a copy outside the cluster).
    PublicKey,
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    /// The public API of any node.
    #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// Admin token (default: `admin_token` from the configuration, i.e. `TESSERA_ADMIN_TOKEN`).
    #[arg(long, env = "TESSERA_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print every key with its state and times.
    List {
        /// Raw JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Replace the active key now (its successor signs at once on every node).
    Rotate {
        /// Remove the replaced key at once: its tokens stop verifying everywhere (after a leak).
        #[arg(long)]
        revoke_current: bool,
        /// The key to replace (default: the one active now); if it was replaced meanwhile,
        /// nothing changes.
        #[arg(long)]
        kid: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct ClientsArgs {
    /// The public API of any node.
    #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// Admin token (default: `admin_token` from the configuration, i.e. `TESSERA_ADMIN_TOKEN`).
    #[arg(long, env = "TESSERA_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: ClientsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client; prints its id and secret (the secret only this once).
    Create {
        #[arg(long)]
        name: String,
    },
    /// Print every client.
    List,
    /// Delete a client: its credentials stop working on every node.
    Delete {
        #[arg(long)]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (secrets redacted); exit non-zero naming every problem.
    Check,
}

#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// The peer listener of the node to talk to.
    #[arg(long, default_value = "127.0.0.1:7070", global = true)]
    pub node: String,
    /// Admin token (default: `admin_token` from the configuration, i.e. `TESSERA_ADMIN_TOKEN`).
    #[arg(long, env = "TESSERA_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Make the node the first member of a new cluster (harmless if it already is in one).
    Init,
    /// Print the node's view of the cluster.
    Status {
        /// Raw JSON instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Add a node as a learner; returns once it has caught up.
    AddLearner {
        #[arg(long)]
        id: u64,
        /// Address of the new node's peer listener, as the others reach it.
        #[arg(long)]
        peer_addr: String,
        /// Address of the new node's public API.
        #[arg(long)]
        public_addr: String,
    },
    /// Promote a learner to voter.
    Promote {
        #[arg(long)]
        id: u64,
    },
    /// Remove a node from the cluster.
    Remove {
        #[arg(long)]
        id: u64,
    },
    /// Move leadership to voter `--to` (writes pause for about one election timeout).
    Transfer {
        #[arg(long)]
        to: u64,
    },
    /// Start an election on `--node` now (use `transfer` to move leadership deliberately).
    Elect,
}
