//! `tessera-loadtest`: drives one node or a cluster with a scenario and reports throughput,
//! latency (HDR histogram), errors and correctness violations, as a table, JSON and an SVG chart.
//!
//! Closed loop (`--users N`): N virtual users, each sending its next request when the previous
//! answers. Open loop (`--rate R`): requests are due at a fixed rate whatever the server does.
//! A request sent late because the previous answer on its connection was slow is measured from
//! when it was *due*, so overload shows up honestly instead of being hidden by a slower
//! generator (coordinated omission); one sent on time is measured from when it was sent, so the
//! timer's millisecond granularity is not charged to the server.
//!
//! Seeding (accounts, sessions) happens before the clock starts; a warm-up is excluded too.

mod client;
mod report;
mod scenario;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

use crate::client::{Conn, Target};
use crate::report::{Live, Recorder, Report, Run, Timeline, Window};
use crate::scenario::{Mix, Plan, Scenario, Session, VirtualUser, login_call};

#[derive(Debug, Parser)]
#[command(name = "tessera-loadtest", about = "Load generator for Tessera")]
struct Args {
    /// Node URL (`http://127.0.0.1:8080`); repeat for several nodes (round-robin).
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Virtual users (concurrent connections; for `race`, token families).
    #[arg(long, default_value_t = 32)]
    users: usize,
    /// Open loop: requests per second, due on a fixed schedule.
    #[arg(long)]
    rate: Option<f64>,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many measured requests instead of after `--duration`.
    #[arg(long)]
    requests: Option<u64>,
    /// Seconds of warm-up excluded from the results.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Accounts to register for login-based scenarios (at least one per user is used for sessions).
    #[arg(long, default_value_t = 64)]
    accounts: usize,
    /// Mixed-scenario weights: verify,refresh,login,logout (percent).
    #[arg(long, default_value = "80,15,4,1")]
    mix: String,
    /// Concurrent refreshes per token in the `race` scenario.
    #[arg(long, default_value_t = 10)]
    race_k: usize,
    #[arg(long, default_value = "correct horse battery staple")]
    password: String,
    /// Server process ids whose CPU time to report beside the generator's.
    #[arg(long = "server-pid")]
    server_pids: Vec<i32>,
    /// Directory for report.json and chart.svg (default: loadtest-reports/<scenario>-<unix time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Generator threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Prefix of seeded account emails (default: a fresh one per run).
    #[arg(long)]
    run_id: Option<String>,
    /// Admin token, to register the resource-server client the introspect scenario uses.
    #[arg(long, env = "TESSERA_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

/// Registers a resource-server client; its Basic credentials (base64 of `id:secret`).
async fn seed_client(target: &Target, admin_token: &str) -> anyhow::Result<String> {
    let mut conn = client::Conn::new(target.clone(), "tessera-loadtest");
    let mut call = client::Call::post_json("/v1/admin/clients", &serde_json::json!({ "name": "loadtest" }));
    call.bearer = Some(hyper::header::HeaderValue::from_str(&format!("Bearer {admin_token}"))?);
    let (status, body) = conn.send(&call).await?;
    anyhow::ensure!(status == 201, "registering the client: {status} {}", String::from_utf8_lossy(&body));
    let created: serde_json::Value = serde_json::from_slice(&body)?;
    let (id, secret) = (
        created["client_id"].as_str().context("client_id")?,
        created["client_secret"].as_str().context("client_secret")?,
    );
    Ok(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{id}:{secret}")))
}

fn cpu_seconds_self() -> f64 {
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF) {
        Ok(usage) => {
            let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            tv(usage.user_time()) + tv(usage.system_time())
        }
        Err(_) => 0.0,
    }
}

/// utime + stime of a process, from /proc.
fn cpu_seconds_of(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
    Some(ticks / per_second)
}

fn servers_cpu(pids: &[i32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| cpu_seconds_of(*p)).sum()
}

/// Registers `count` accounts and returns their emails.
async fn seed_accounts(targets: &[Target], run: &str, count: usize, password: &str) -> anyhow::Result<Vec<String>> {
    let bar = ProgressBar::new(count as u64).with_style(
        ProgressStyle::with_template("seeding accounts {bar:40} {pos}/{len} {elapsed}").expect("valid template"),
    );
    let emails: Vec<String> = (0..count).map(|i| format!("{run}-{i}@loadtest.example")).collect();
    let next = Arc::new(AtomicU64::new(0));
    let workers = (0..8.min(count.max(1))).map(|w| {
        let (emails, next, bar, target) =
            (emails.clone(), Arc::clone(&next), bar.clone(), targets[w % targets.len()].clone());
        let password = password.to_string();
        tokio::spawn(async move {
            let mut conn = Conn::new(target, "tessera-loadtest-seed");
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(email) = emails.get(i) else { return anyhow::Ok(()) };
                let call =
                    client::Call::post_json("/v1/users", &serde_json::json!({ "email": email, "password": password }));
                loop {
                    let (status, body) = conn.send(&call).await?;
                    match status.as_u16() {
                        201 | 409 => break,
                        429 | 503 => tokio::time::sleep(Duration::from_millis(200)).await,
                        other => anyhow::bail!("registering {email}: {other} {}", String::from_utf8_lossy(&body)),
                    }
                }
                bar.inc(1);
            }
        })
    });
    for worker in futures::future::join_all(workers).await {
        worker??;
    }
    bar.finish();
    Ok(emails)
}

/// Logs each of `emails` in once, for scenarios that start from a session.
async fn seed_sessions(targets: &[Target], logins: &[client::Call], count: usize) -> anyhow::Result<Vec<Session>> {
    let bar = ProgressBar::new(count as u64).with_style(
        ProgressStyle::with_template("seeding sessions {bar:40} {pos}/{len} {elapsed}").expect("valid template"),
    );
    let mut sessions = Vec::with_capacity(count);
    let mut conns: Vec<Conn> = targets.iter().map(|t| Conn::new(t.clone(), "tessera-loadtest")).collect();
    for i in 0..count {
        let conn = &mut conns[i % targets.len()];
        let (status, body) = loop {
            let (status, body) = conn.send(&logins[i % logins.len()]).await?;
            if status == 503 || status == 429 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            break (status, body);
        };
        anyhow::ensure!(status == 200, "seed login: {status} {}", String::from_utf8_lossy(&body));
        let tokens: serde_json::Value = serde_json::from_slice(&body)?;
        sessions.push(Session {
            access: tokens["access_token"].as_str().context("access_token")?.to_string(),
            refresh: tokens["refresh_token"].as_str().context("refresh_token")?.to_string(),
        });
        bar.inc(1);
    }
    bar.finish();
    Ok(sessions)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads.max(1)).enable_all().build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let targets: Vec<Target> = args.targets.iter().map(|t| Target::parse(t)).collect::<Result<_, _>>()?;
    let run_id = args.run_id.clone().unwrap_or_else(|| {
        format!("lt{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    });
    let users = args.users.max(1);

    // Seeding: not measured.
    let needs_accounts = !matches!(args.scenario, Scenario::Lockout | Scenario::Trivial);
    let accounts = if needs_accounts { args.accounts.max(1) } else { 1 };
    let emails = seed_accounts(&targets, &run_id, accounts, &args.password).await?;
    let logins: Vec<client::Call> = emails.iter().map(|e| login_call(e, &args.password)).collect();
    let sessions = match args.scenario {
        Scenario::Verify | Scenario::Refresh | Scenario::Mixed | Scenario::Race | Scenario::Introspect => {
            seed_sessions(&targets, &logins, users).await?
        }
        Scenario::Login | Scenario::Lockout | Scenario::Trivial => Vec::new(),
    };
    let plan = Arc::new(Plan {
        scenario: args.scenario,
        mix: Mix::parse(&args.mix)?,
        logins,
        wrong_password: login_call(&emails[0], "not the password at all"),
        client: match (args.scenario, &args.admin_token) {
            (Scenario::Introspect, Some(token)) => Some(seed_client(&targets[0], token).await?),
            (Scenario::Introspect, None) => anyhow::bail!("the introspect scenario needs --admin-token"),
            _ => None,
        },
    });

    let started = Instant::now();
    let warmup = Duration::from_secs_f64(args.warmup);
    let measure_from = started + warmup;
    let measure_until = args.requests.is_none().then(|| measure_from + Duration::from_secs_f64(args.duration));
    let window = Window { measure_from, measure_until };
    let timeline = Timeline::new(measure_from);
    let live = Arc::new(Live::default());
    let budget = args.requests;

    // Progress line while running.
    let progress = {
        let live = Arc::clone(&live);
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let done = live.done.load(Ordering::Relaxed);
                let elapsed = started.elapsed().as_secs_f64();
                let phase = if Instant::now() < measure_from { "warm-up" } else { "measuring" };
                eprintln!(
                    "[{elapsed:6.1}s] {phase:9} {:>8}/s  failed {}",
                    done - last,
                    live.failed.load(Ordering::Relaxed)
                );
                last = done;
            }
        })
    };

    let cpu_start = Arc::new(parking_lot::Mutex::new(None::<(f64, Option<f64>)>));
    {
        let (cpu_start, pids) = (Arc::clone(&cpu_start), args.server_pids.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            *cpu_start.lock() = Some((cpu_seconds_self(), servers_cpu(&pids)));
        });
    }

    let mut tasks = Vec::new();
    for id in 0..users {
        let plan = Arc::clone(&plan);
        let session = sessions.get(id).cloned();
        let mut vu = VirtualUser::new(id, &targets, plan, session, args.race_k.max(2));
        let mut recorder = Recorder::new(window, Arc::clone(&timeline), Arc::clone(&live));
        let live = Arc::clone(&live);
        let interval = args.rate.map(|r| Duration::from_secs_f64(users as f64 / r.max(1e-9)));
        let offset = args.rate.map(|r| Duration::from_secs_f64(id as f64 / r.max(1e-9)));
        tasks.push(tokio::spawn(async move {
            let mut due = started + offset.unwrap_or_default();
            loop {
                let now = Instant::now();
                if measure_until.is_some_and(|until| now >= until) {
                    break;
                }
                if budget.is_some_and(|b| live.done.load(Ordering::Relaxed) >= b) {
                    break;
                }
                match interval {
                    Some(interval) => {
                        let origin = if due > now {
                            tokio::time::sleep_until(due.into()).await;
                            // The timer wakes up to a millisecond after `due`: that delay is the
                            // generator's, so latency counts from the moment it sends.
                            Instant::now()
                        } else {
                            // Behind schedule because an earlier answer was slow: the wait since
                            // `due` is the server's doing and counts (no coordinated omission).
                            due
                        };
                        vu.step(&mut recorder, origin).await;
                        due += interval;
                    }
                    None => vu.step(&mut recorder, Instant::now()).await,
                }
            }
            recorder.flush();
            recorder
        }));
    }
    let mut total = Recorder::new(window, Arc::clone(&timeline), Arc::clone(&live));
    for task in tasks {
        total.absorb(task.await?);
    }
    let ended = Instant::now();
    progress.abort();
    let measured = measure_until.map_or(ended, |u| u.min(ended)).saturating_duration_since(measure_from);
    let (cpu_self_start, cpu_servers_start) = cpu_start.lock().unwrap_or((0.0, None));
    let generator_cpu = cpu_seconds_self() - cpu_self_start;
    let server_cpu = match (servers_cpu(&args.server_pids), cpu_servers_start) {
        (Some(end), Some(start)) => Some(end - start),
        _ => None,
    };
    let mode = match args.rate {
        Some(rate) => format!("open loop at {rate}/s"),
        None => "closed loop".to_string(),
    };
    let scenario_name = format!("{:?}", args.scenario).to_lowercase();
    let run = Run {
        scenario: scenario_name.clone(),
        targets: args.targets.clone(),
        mode,
        virtual_users: users,
        measured,
        generator_cpu,
        server_cpu,
    };
    let report = Report::build(run, &total, &timeline);
    report.print();
    let out = args.out.clone().unwrap_or_else(|| {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        PathBuf::from(format!("loadtest-reports/{scenario_name}-{stamp}"))
    });
    report.write(&out)?;
    if report.violations > 0 {
        anyhow::bail!("{} correctness violations", report.violations);
    }
    Ok(())
}
