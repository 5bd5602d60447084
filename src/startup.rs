//! The composition root: builds a node from `Settings` and runs it until told to stop.
//!
//! Two runtimes, each with a clear job (see `../shared/notes/openraft-0.9.md` §4):
//! - the Raft runtime (multi-threaded tokio) owns openraft's tasks, the proposer, the
//!   flusher, the snapshot store's connection pool and the housekeeping loop;
//! - an actix system on its own thread serves the public and peer listeners and hosts the
//!   actors on a few arbiters. Handlers and actors await Raft through its `Send` handle.
//!
//! Listeners are bound before anything starts, so port 0 works and the real ports are known
//! (tests start many nodes in one process).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::middleware::{DefaultHeaders, from_fn};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use tessera_actors::domain::{
    CapAction, DeviceBinding, KeyPolicy, LockoutPolicy, PasswordPolicy, Pepper, SessionCap, SessionPolicy, WindowPolicy,
};
use tessera_actors::keys::{self, Advanced, SigningPolicy};
use tessera_actors::ports::{Clock, Entropy, Replicator};
use tessera_actors::sweeper::Sweeper;
use tessera_actors::{ActorContext, AuditPolicy, Domain, Record, Registry, ThrottlePolicy};
use tessera_cluster::{ClusterNode, NodeConfig, NodeInfo, Partition, PeerFaults};
use tokio::sync::watch;

use crate::adapters::{ClusterReplicator, SystemClock, SystemEntropy};
use crate::audit::checkpoint;
use crate::audit::keeper::Keeper;
use crate::audit::store::AuditReader;
use crate::config::{OverCap, Profile, Settings};
use crate::gateway::{self, Gateway};
use crate::http::client::ClientPolicy;
use crate::http::cookies::CookiePolicy;
use crate::http::csrf::Csrf;
use crate::http::state::AppState;
use crate::http::{self};
use crate::passwords::Passwords;
use crate::secrets::{self, Secrets, purposes};
use crate::tokens::keyring::Sealer;
use crate::tokens::{AccessTokens, Issuer, KeyRing, provider};
use crate::webhooks::dispatcher::Dispatcher;

/// A running Tessera node.
pub struct Node {
    public_addr: SocketAddr,
    peer_addr: SocketAddr,
    cluster: ClusterNode<Record>,
    runtime: Option<tokio::runtime::Runtime>,
    public: ServerHandle,
    peer: ServerHandle,
    http_thread: Option<JoinHandle<()>>,
    stop_housekeeping: watch::Sender<bool>,
    /// The housekeeping and sweeper tasks, awaited on stop so none is mid-write when Raft
    /// shuts down.
    background: Vec<tokio::task::JoinHandle<()>>,
}

/// Everything the HTTP thread needs to build its state.
struct Parts {
    fault_layer: Option<Arc<Partition>>,
    settings: Settings,
    secrets: Secrets,
    cluster: ClusterNode<Record>,
    passwords: Arc<Passwords>,
    tokens: Arc<AccessTokens>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    replica: Arc<dyn Replicator>,
    audit: AuditReader,
    /// Turns true when the node begins to stop (long-lived responses end then).
    stopping: watch::Receiver<bool>,
}

impl Node {
    /// Validates the configuration, resolves secrets, opens storage, starts Raft and both
    /// listeners. Call from outside any async runtime.
    pub fn start(settings: Settings) -> anyhow::Result<Node> {
        let problems = settings.problems();
        if !problems.is_empty() {
            anyhow::bail!("invalid configuration:\n  - {}", problems.join("\n  - "));
        }
        prepare_data_dir(&settings.data_dir, settings.profile)?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let entropy: Arc<dyn Entropy> = Arc::new(SystemEntropy);
        let secrets = secrets::resolve(&settings, &*entropy)?;
        provider::install();

        let public_listener =
            TcpListener::bind(settings.listen).with_context(|| format!("cannot listen on {}", settings.listen))?;
        let peer_listener = TcpListener::bind(settings.peer_listen)
            .with_context(|| format!("cannot listen on {} (peer)", settings.peer_listen))?;
        let public_addr = public_listener.local_addr()?;
        let peer_addr = peer_listener.local_addr()?;
        let info = NodeInfo {
            public_addr: settings.advertise_addr.clone().unwrap_or_else(|| public_addr.to_string()),
            peer_addr: settings.advertise_peer_addr.clone().unwrap_or_else(|| peer_addr.to_string()),
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
            restore: settings.restore,
        };
        let database_url = settings.database_url();
        let rows = settings.flush.rows_per_statement;
        // Test-only: a partition this node's peer client obeys, set through `/admin/faults`.
        let fault_layer = settings.fault_injection.then(|| Arc::new(Partition::default()));
        let (cluster, audit_store) = runtime.block_on(async {
            let (store, audit_store) = crate::db::connect(database_url.expose(), rows)
                .await
                .with_context(|| format!("cannot open the snapshot store at {}", database_url.redacted()))?;
            let faults: Option<Arc<dyn PeerFaults>> = fault_layer.clone().map(|f| f as Arc<dyn PeerFaults>);
            let cluster =
                ClusterNode::<Record>::start(config, secrets.cluster.expose().as_bytes(), store, faults).await?;
            if settings.bootstrap && cluster.bootstrap_single().await.map_err(anyhow::Error::msg)? {
                tracing::info!(node_id = settings.node_id, "initialised a new one-member cluster");
            }
            anyhow::Ok((cluster, audit_store))
        })?;
        // A restore converts every stored row (JSON, then the log's encoding) and writes a
        // local snapshot: hand the transient memory back rather than keep it resident.
        release_free_memory();

        let passwords = Arc::new(Passwords::new(&settings.argon2, Arc::clone(&entropy))?);
        let max_staleness = Duration::from_millis(settings.max_staleness_ms);
        let confirm_timeout = Duration::from_millis(settings.raft.election_timeout_max_ms);
        let replica: Arc<dyn Replicator> =
            Arc::new(ClusterReplicator::new(cluster.clone(), confirm_timeout, max_staleness));
        let keyring =
            Arc::new(KeyRing::new(secrets.key_encryption_key, Some(cluster.watch_prefixes(&KeyRing::WATCHED))));
        keyring.reload(&*replica)?;
        let issuer = settings.issuer(&info.public_addr);
        let tokens = Arc::new(AccessTokens::new(
            Arc::clone(&keyring),
            Arc::clone(&replica),
            Issuer { configured: settings.tokens.issuer.clone(), derived: issuer.clone() },
            settings.tokens.audience.clone(),
            Duration::from_secs(settings.tokens.access_ttl_secs),
            Duration::from_secs(settings.tokens.leeway_secs),
            settings.tokens.verify_cache_entries,
        ));
        let actor_idle = Duration::from_secs(settings.sessions.actor_idle_secs);
        let (stop_housekeeping, stopped) = watch::channel(false);
        let parts = Parts {
            fault_layer,
            settings,
            secrets,
            cluster: cluster.clone(),
            passwords,
            tokens,
            clock: Arc::clone(&clock),
            entropy: Arc::clone(&entropy),
            replica: Arc::clone(&replica),
            audit: AuditReader { store: audit_store.clone(), runtime: runtime.handle().clone() },
            stopping: stopped.clone(),
        };
        let checkpoint_key = checkpoint::signing_key(&parts.secrets.derived_key(purposes::AUDIT_CHECKPOINT));
        let dispatcher = Dispatcher {
            cluster: cluster.clone(),
            replica: Arc::clone(&replica),
            store: audit_store.clone(),
            clock: Arc::clone(&clock),
            entropy: Arc::clone(&entropy),
            endpoints: parts.settings.webhooks.clone(),
            delivery: parts.settings.webhook_delivery.clone(),
        };
        let keeper = Keeper {
            cluster: cluster.clone(),
            replica: Arc::clone(&replica),
            store: audit_store,
            clock: Arc::clone(&clock),
            key: checkpoint_key,
            settings: parts.settings.audit.clone(),
        };
        let served = serve(parts, public_listener, peer_listener)?;

        let sweeper = runtime.spawn(sweep_families(
            cluster.clone(),
            Sweeper::new(Arc::clone(served.registry.context())),
            stopped.clone(),
        ));
        let housekeeper = runtime.spawn(housekeeping(
            cluster.clone(),
            served.registry,
            keyring,
            Housekeeping { replica, issuer, actor_idle },
            stopped.clone(),
        ));
        let audit_keeper = runtime.spawn(keeper.run(stopped.clone()));
        let webhooks = runtime.spawn(dispatcher.run(stopped));
        tracing::info!(%public_addr, %peer_addr, node_id = cluster.id(), "tessera is serving");
        Ok(Node {
            public_addr,
            peer_addr,
            cluster,
            runtime: Some(runtime),
            public: served.public,
            peer: served.peer,
            http_thread: Some(served.thread),
            stop_housekeeping,
            background: vec![sweeper, housekeeper, audit_keeper, webhooks],
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
        let _ = self.stop_housekeeping.send(true);
        runtime.block_on(self.public.stop(true));
        let background = futures::future::join_all(std::mem::take(&mut self.background));
        if runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), background).await }).is_err() {
            tracing::warn!("background tasks did not stop within 5 s");
        }
        runtime.block_on(self.cluster.shutdown());
        runtime.block_on(self.peer.stop(true));
        if let Some(thread) = self.http_thread.take() {
            let _ = thread.join();
        }
        runtime.shutdown_timeout(Duration::from_secs(5));
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "stopped");
    }
}

struct Served {
    public: ServerHandle,
    peer: ServerHandle,
    registry: Arc<Registry>,
    thread: JoinHandle<()>,
}

/// Starts the actix system thread: actor arbiters, the registry, and both listeners.
fn serve(parts: Parts, public_listener: TcpListener, peer_listener: TcpListener) -> anyhow::Result<Served> {
    let settings = &parts.settings;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let workers = if settings.workers == 0 { cores } else { settings.workers };
    let max_body = settings.max_body_bytes;
    let shutdown_timeout = settings.shutdown_timeout_secs;
    let write_timeout = Duration::from_millis(settings.proposer.write_timeout_ms);
    let sessions_policy = SessionPolicy {
        grace: Duration::from_secs(settings.sessions.grace_secs),
        idle: Duration::from_secs(settings.sessions.idle_secs),
        absolute: Duration::from_secs(settings.sessions.absolute_secs),
        retention: Duration::from_secs(settings.sessions.retention_secs),
        binding: match settings.device.binding {
            crate::config::DeviceBinding::Reject => DeviceBinding::Reject,
            crate::config::DeviceBinding::Log => DeviceBinding::Log,
        },
    };
    let clients = ClientPolicy {
        proxies: settings.trusted_proxies.clone(),
        device_headers: settings.device.headers.iter().map(|header| header.0.clone()).collect(),
        binding: sessions_policy.binding,
    };
    let cookies = CookiePolicy::new(settings.cookies.clone(), settings.profile == Profile::Dev);
    let cors_origins = settings.cors_origins.clone();
    let hsts = settings.hsts_max_age_secs;
    let max_staleness = Duration::from_millis(settings.max_staleness_ms);
    let policies = Policies::from(settings);
    let (tx, rx) = std::sync::mpsc::channel::<std::io::Result<(ServerHandle, ServerHandle, Arc<Registry>)>>();
    let thread = std::thread::Builder::new().name("http".into()).spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            // Actors start on the arbiter of the request that activates them (an HTTP worker); this
            // one hosts those that a caller outside any arbiter activates.
            let arbiters = vec![actix::Arbiter::new().handle()];
            let cx = Arc::new(ActorContext {
                clock: Arc::clone(&parts.clock),
                entropy: Arc::clone(&parts.entropy),
                replicator: Arc::clone(&parts.replica),
                pepper: Pepper::new(parts.secrets.refresh_pepper.expose().as_bytes()),
                sessions: sessions_policy,
                lockout: policies.lockout,
                cap: policies.cap,
                throttle: policies.throttle,
                audit: AuditPolicy {
                    cluster_pii_key: parts.secrets.derived_key(secrets::purposes::AUDIT_PII),
                    max_backlog: parts.settings.audit.max_backlog,
                },
                factors: parts.secrets.factor_keys(),
                signing: SigningPolicy {
                    maker: Arc::new(Sealer {
                        entropy: Arc::clone(&parts.entropy),
                        kek: parts.secrets.key_encryption_key,
                    }),
                    schedule: policies.keys,
                },
            });
            let registry = Arc::new(Registry::new(cx, arbiters));
            let domain = Domain::new(Arc::clone(&registry));
            let request_ids = web::Data::new(http::request_id::RequestIds {
                entropy: Arc::clone(&parts.entropy),
                proxies: parts.settings.trusted_proxies.clone(),
            });
            let state = web::Data::new(AppState {
                node: parts.cluster.clone(),
                gateway: Gateway::new(parts.cluster.clone(), domain.clone(), write_timeout),
                registry: Arc::clone(&registry),
                passwords: parts.passwords,
                tokens: parts.tokens,
                clock: parts.clock,
                entropy: parts.entropy,
                clients,
                cookies,
                csrf: Csrf::new(parts.secrets.cluster.expose().as_bytes()),
                cors_origins: cors_origins.clone(),
                replica: Arc::clone(&parts.replica),
                password_policy: policies.password,
                max_staleness,
                admin_token: parts.secrets.admin_token.clone(),
                metrics: crate::metrics::handle(),
                started: Instant::now(),
                audit: parts.audit,
                audit_pii_key: parts.secrets.derived_key(secrets::purposes::AUDIT_PII),
                factors: parts.secrets.factor_keys(),
                mfa_issuer: parts.settings.mfa.issuer.clone(),
                step_up: tessera_actors::domain::StepUp {
                    max_age: Duration::from_secs(parts.settings.mfa.step_up_max_age_secs),
                },
                jwks_max_age_secs: parts.settings.keys.jwks_max_age_secs,
                stopping: parts.stopping.clone(),
                webhooks: Arc::new(parts.settings.webhooks.clone()),
            });
            let public = HttpServer::new(move || {
                App::new()
                    .app_data(state.clone())
                    .app_data(request_ids.clone())
                    .wrap(cors(&cors_origins))
                    .wrap(security_headers(hsts))
                    .wrap(from_fn(http::request_id::middleware))
                    .configure(|cfg| http::configure(cfg, max_body))
                    .default_service(web::to(http::not_found))
            })
            .workers(workers)
            .disable_signals()
            .shutdown_timeout(shutdown_timeout)
            .listen(public_listener);
            let cluster = parts.cluster.clone();
            let domain = web::Data::new(domain);
            let admin = web::Data::new(http::admin::AdminState {
                node: parts.cluster.clone(),
                token: parts.secrets.admin_token.clone(),
                faults: parts.fault_layer.clone(),
                registry: Arc::clone(&registry),
                replica: Arc::clone(&parts.replica),
            });
            let peer = HttpServer::new(move || {
                App::new()
                    .configure(|cfg| cluster.configure_peer(cfg))
                    .app_data(domain.clone())
                    .app_data(admin.clone())
                    .app_data(
                        web::JsonConfig::default()
                            .limit(16 * 1024)
                            .error_handler(|e, _| crate::error::ApiError::BadRequest(e.to_string()).into()),
                    )
                    .route(gateway::FORWARD_PATH, web::post().to(gateway::forwarded))
                    .configure(http::admin::configure)
            })
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
            let _ = tx.send(Ok((public.handle(), peer.handle(), registry)));
            let (a, b) = futures::join!(public, peer);
            if let Err(e) = a.and(b) {
                tracing::error!(error = %e, "http server stopped with an error");
            }
        })
    })?;
    let (public, peer, registry) = rx.recv().context("http thread died")??;
    Ok(Served { public, peer, registry, thread })
}

/// Headers every response carries (a handler's own value wins).
fn security_headers(hsts_max_age_secs: Option<u64>) -> DefaultHeaders {
    let mut headers = DefaultHeaders::new()
        .add(("x-frame-options", "DENY"))
        .add(("x-content-type-options", "nosniff"))
        .add(("referrer-policy", "no-referrer"))
        .add(("permissions-policy", "geolocation=(), microphone=(), camera=()"))
        .add(("cache-control", "no-store"));
    if let Some(max_age) = hsts_max_age_secs {
        headers = headers.add(("strict-transport-security", format!("max-age={max_age}; includeSubDomains")));
    }
    headers
}

/// CORS for browser apps: an exact-match allowlist, credentials allowed, `Vary: Origin`. An
/// unlisted origin gets no CORS headers at all (the request itself is not blocked here: a
/// state-changing cookie request from it is refused by the CSRF check, and the browser keeps
/// any other answer from the page).
fn cors(origins: &[String]) -> actix_cors::Cors {
    let allowed: std::collections::HashSet<String> = origins.iter().cloned().collect();
    actix_cors::Cors::default()
        .allowed_origin_fn(move |origin, _| origin.to_str().is_ok_and(|o| allowed.contains(o)))
        .allowed_methods(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers(["content-type", "authorization", "x-csrf-token", "x-request-id"])
        .expose_headers(["x-request-id", "retry-after", "x-tessera-user", "x-tessera-session"])
        .supports_credentials()
        .block_on_origin_mismatch(false)
        .max_age(600)
}

/// The domain's policies, from configuration.
struct Policies {
    lockout: LockoutPolicy,
    cap: SessionCap,
    throttle: ThrottlePolicy,
    password: PasswordPolicy,
    keys: KeyPolicy,
}

impl From<&Settings> for Policies {
    fn from(s: &Settings) -> Policies {
        let l = &s.lockout;
        Policies {
            lockout: LockoutPolicy {
                threshold: l.threshold,
                base_delay: Duration::from_millis(l.base_delay_ms),
                max_delay: Duration::from_millis(l.max_delay_ms),
                lock: Duration::from_secs(l.lock_secs),
                permanent_after: (l.permanent_after_locks > 0).then_some(l.permanent_after_locks),
                permit_ttl: Duration::from_millis(l.permit_ttl_ms),
            },
            cap: SessionCap {
                max: s.sessions.max_per_user,
                action: match s.sessions.over_cap {
                    OverCap::EvictOldest => CapAction::EvictOldest,
                    OverCap::Deny => CapAction::Deny,
                },
            },
            throttle: ThrottlePolicy {
                login_failures: WindowPolicy {
                    limit: s.throttle.login_failures,
                    window: Duration::from_secs(s.throttle.login_window_secs),
                },
                registrations: WindowPolicy {
                    limit: s.throttle.registrations,
                    window: Duration::from_secs(s.throttle.registration_window_secs),
                },
                exempt_loopback: s.throttle.exempt_loopback,
            },
            password: PasswordPolicy { min_chars: s.password.min_length, min_score: s.password.min_score },
            keys: KeyPolicy {
                rotate_every: s.keys.rotate_every(),
                prepublish: Duration::from_secs(s.keys.prepublish_secs),
                // Every token a retired key signed has expired by then, even one minted at
                // the last moment and checked with the full leeway.
                retain_retired: Duration::from_secs(s.tokens.access_ttl_secs + s.tokens.leeway_secs),
            },
        }
    }
}

struct Housekeeping {
    replica: Arc<dyn Replicator>,
    /// This node's issuer, recorded as the cluster's if this node initialises it.
    issuer: String,
    actor_idle: Duration,
}

/// Background duties, every 250 ms: follow leadership (drop actors when it is lost; when
/// leading, make the signing-key transition the schedule says is due and record the issuer if
/// the cluster lacks one), pick up changed signing keys, and passivate idle actors.
async fn housekeeping(
    cluster: ClusterNode<Record>,
    registry: Arc<Registry>,
    keyring: Arc<KeyRing>,
    duties: Housekeeping,
    mut stop: watch::Receiver<bool>,
) {
    let mut was_leading = false;
    let mut last_passivation = Instant::now();
    loop {
        let leading = cluster.leadership().this_node_leads;
        if was_leading && !leading {
            tracing::info!("leadership lost: dropping all actors");
            registry.leadership_lost();
        }
        was_leading = leading;
        if leading {
            match keys::advance(registry.context(), &duties.issuer).await {
                Ok(Some(Advanced::Provisioned { issuer: Some(issuer), .. })) => {
                    tracing::info!(%issuer, "recorded the cluster's token issuer");
                }
                // Key transitions are logged with their audit events.
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot make the signing keys' due transition yet"),
            }
        }
        // Rebuilt only when the replica applied a key write since (readiness reads the ring).
        keyring.fresh(&*duties.replica);
        if last_passivation.elapsed() >= duties.actor_idle.min(Duration::from_secs(30)) {
            last_passivation = Instant::now();
            let dropped = registry.passivate_idle(duties.actor_idle);
            if dropped > 0 {
                tracing::debug!(dropped, "passivated idle actors");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Families the sweeper reads per pass, and how often it passes: up to 2,048 a second, so a
/// million families are looked over in about eight minutes at a few milliseconds of work per
/// pass.
const SWEEP_PAGE: usize = 512;
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// Deletions in one round after which the allocator's free memory is returned to the system.
const SWEEP_TRIM_AFTER: usize = 10_000;

/// On the leader, deletes session families that ended a retention ago (see
/// `tessera_actors::sweeper`). Its own task, so a sweep waiting on a commit never delays the
/// housekeeping that follows leadership.
async fn sweep_families(cluster: ClusterNode<Record>, mut sweeper: Sweeper, mut stop: watch::Receiver<bool>) {
    // Families deleted since the sweep last wrapped around.
    let mut this_round = 0;
    loop {
        if cluster.leadership().this_node_leads {
            match sweeper.sweep(SWEEP_PAGE).await {
                Ok(swept) => {
                    if swept.collected > 0 {
                        metrics::counter!("tessera_sessions_collected_total").increment(swept.collected as u64);
                    }
                    this_round += swept.collected;
                    if swept.wrapped {
                        if this_round > 0 {
                            tracing::debug!(collected = this_round, "session sweep finished a round");
                        }
                        // After a mass expiry, give the freed memory back to the system.
                        if this_round >= SWEEP_TRIM_AFTER {
                            tokio::task::spawn_blocking(release_free_memory);
                        }
                        this_round = 0;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "session sweep interrupted"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The data directory holds password hashes, session salts and sealed keys: only its owner may
/// enter it. A new one is created `0700`; an existing one open to others is refused in the
/// prod profile and tightened (with a warning) in the dev profile.
fn prepare_data_dir(dir: &std::path::Path, profile: Profile) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    }
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("cannot read data directory {}", dir.display()))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    match profile {
        Profile::Prod => anyhow::bail!(
            "the data directory {} is open to other users (mode {mode:o}); `chmod 700` it before starting",
            dir.display()
        ),
        Profile::Dev => {
            tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"), "data directory open to other users: set to 700");
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot restrict data directory {}", dir.display()))
        }
    }
}

/// Files this process creates (Raft log, snapshots, SQLite store, secrets) are its owner's
/// only, whatever the umask it was started with.
pub fn restrict_new_files() {
    // SAFETY: umask only sets the process's file-mode creation mask; it cannot fail and
    // touches no memory.
    unsafe {
        libc::umask(0o077);
    }
}

/// Returns the allocator's free pages to the operating system (glibc keeps freed memory in
/// its arenas otherwise, so a one-off bulk load would stay resident for the process's life).
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory glibc already holds as free; it touches no
    // live allocation and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
