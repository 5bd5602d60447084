//! The composition root: builds a node from `Settings` and runs it until told to stop.
//!
//! Two runtimes, each with a clear job (see `../shared/notes/openraft-0.9.md` §4):
//! - the Raft runtime (multi-threaded tokio) owns openraft's tasks, the proposer, the
//!   flusher and the snapshot store's connection pool;
//! - an actix system on its own thread serves the public and peer listeners. Handlers await
//!   Raft through its `Send` handle.
//!
//! Listeners are bound before anything starts, so port 0 works and the real ports are known
//! (tests start many nodes in one process).

use std::net::{SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use tessera_actors::Record;
use tessera_cluster::{ClusterNode, NodeConfig, NodeInfo};

use crate::config::Settings;
use crate::http::{self, AppState};
use crate::secrets;

/// A running Tessera node.
pub struct Node {
    public_addr: SocketAddr,
    peer_addr: SocketAddr,
    cluster: ClusterNode<Record>,
    runtime: Option<tokio::runtime::Runtime>,
    public: ServerHandle,
    peer: ServerHandle,
    http_thread: Option<JoinHandle<()>>,
}

impl Node {
    /// Validates the configuration, resolves secrets, opens storage, starts Raft and both
    /// listeners. Call from outside any async runtime.
    pub fn start(settings: Settings) -> anyhow::Result<Node> {
        let problems = settings.problems();
        if !problems.is_empty() {
            anyhow::bail!("invalid configuration:\n  - {}", problems.join("\n  - "));
        }
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("cannot create data directory {}", settings.data_dir.display()))?;
        let secrets = secrets::resolve(&settings)?;

        let public_listener =
            TcpListener::bind(settings.listen).with_context(|| format!("cannot listen on {}", settings.listen))?;
        let peer_listener = TcpListener::bind(settings.peer_listen)
            .with_context(|| format!("cannot listen on {} (peer)", settings.peer_listen))?;
        let public_addr = public_listener.local_addr()?;
        let peer_addr = peer_listener.local_addr()?;
        let info = NodeInfo {
            public_addr: settings
                .advertise_addr
                .clone()
                .unwrap_or_else(|| public_addr.to_string()),
            peer_addr: settings
                .advertise_peer_addr
                .clone()
                .unwrap_or_else(|| peer_addr.to_string()),
        };

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("raft")
            .enable_all()
            .build()
            .context("cannot build the Raft runtime")?;
        let config = NodeConfig {
            node_id: settings.node_id,
            info: info.clone(),
            data_dir: settings.data_dir.join("raft"),
            cluster_name: "tessera".to_string(),
            tuning: settings.tuning(),
        };
        let database_url = settings.database_url();
        let rows = settings.flush.rows_per_statement;
        let cluster = runtime.block_on(async {
            let store = crate::db::connect(database_url.expose(), rows)
                .await
                .with_context(|| format!("cannot open the snapshot store at {}", database_url.redacted()))?;
            let cluster =
                ClusterNode::<Record>::start(config, secrets.cluster.expose().as_bytes(), store, None).await?;
            if settings.bootstrap && cluster.bootstrap_single().await.map_err(anyhow::Error::msg)? {
                tracing::info!(node_id = settings.node_id, "initialised a new one-member cluster");
            }
            anyhow::Ok(cluster)
        })?;

        let (public, peer, http_thread) = serve(&settings, public_listener, peer_listener, cluster.clone())?;
        tracing::info!(%public_addr, %peer_addr, node_id = settings.node_id, "tessera is serving");
        Ok(Node {
            public_addr,
            peer_addr,
            cluster,
            runtime: Some(runtime),
            public,
            peer,
            http_thread: Some(http_thread),
        })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.public_addr
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    pub fn cluster(&self) -> &ClusterNode<Record> {
        &self.cluster
    }

    /// Blocks until SIGINT or SIGTERM, then stops gracefully.
    pub fn run_until_signalled(self) -> anyhow::Result<()> {
        let runtime = self.runtime.as_ref().expect("runtime lives until stop");
        runtime.block_on(async {
            let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
                _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            }
            anyhow::Ok(())
        })?;
        self.stop();
        Ok(())
    }

    /// Graceful stop: no new connections, in-flight requests finish, a last flush to the
    /// snapshot store, Raft and the log closed, then the peer listener.
    pub fn stop(mut self) {
        let started = Instant::now();
        let runtime = self.runtime.take().expect("runtime lives until stop");
        runtime.block_on(self.public.stop(true));
        runtime.block_on(self.cluster.shutdown());
        runtime.block_on(self.peer.stop(true));
        if let Some(thread) = self.http_thread.take() {
            let _ = thread.join();
        }
        runtime.shutdown_timeout(Duration::from_secs(5));
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "stopped");
    }
}

type Servers = (ServerHandle, ServerHandle, JoinHandle<()>);

/// Starts the actix system thread with both listeners; returns their handles.
fn serve(
    settings: &Settings,
    public_listener: TcpListener,
    peer_listener: TcpListener,
    cluster: ClusterNode<Record>,
) -> anyhow::Result<Servers> {
    let workers = if settings.workers == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        settings.workers
    };
    let max_body = settings.max_body_bytes;
    let shutdown_timeout = settings.shutdown_timeout_secs;
    let state = web::Data::new(AppState {
        node: cluster.clone(),
        metrics: crate::metrics::handle(),
        started: Instant::now(),
    });
    let peer_service = cluster.peer_service().clone();
    let (tx, rx) = std::sync::mpsc::channel::<std::io::Result<(ServerHandle, ServerHandle)>>();
    let thread = std::thread::Builder::new().name("http".into()).spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let public = HttpServer::new(move || {
                App::new()
                    .app_data(state.clone())
                    .wrap(from_fn(http::request_id::middleware))
                    .configure(|cfg| http::configure(cfg, max_body))
                    .default_service(web::to(http::not_found))
            })
            .workers(workers)
            .disable_signals()
            .shutdown_timeout(shutdown_timeout)
            .listen(public_listener);
            let peer = HttpServer::new(move || App::new().configure(|cfg| peer_service.configure(cfg)))
                .workers(2)
                .disable_signals()
                .shutdown_timeout(shutdown_timeout)
                .listen(peer_listener);
            let (public, peer) = match (public, peer) {
                (Ok(public), Ok(peer)) => (public.run(), peer.run()),
                (Err(e), _) | (_, Err(e)) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(Ok((public.handle(), peer.handle())));
            let (a, b) = futures::join!(public, peer);
            if let Err(e) = a.and(b) {
                tracing::error!(error = %e, "http server stopped with an error");
            }
        })
    })?;
    let (public, peer) = rx.recv().context("http thread died")??;
    Ok((public, peer, thread))
}
