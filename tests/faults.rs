//! The fault-injection suite: three Tessera processes on 127.0.0.1 with real redb logs and a
//! real Postgres snapshot store, production Raft timings (heartbeat 150 ms, election timeout
//! 0.75–1.5 s, `max_staleness` 1.5 s), killed with `kill -9`, paused with `SIGSTOP`, partitioned
//! through each node's test-only fault layer, wiped and restored. Every client operation is
//! recorded with its outcome and the history is checked against the invariants of
//! ARCHITECTURE.md §3 at the end. Each scenario prints its figures (`--nocapture` shows them).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::PASSWORD;
use common::history::{History, Outcome};
use common::procs::{ADMIN, ProcCluster};
use nix::sys::signal::Signal;
use serde_json::Value;

/// Client timeout: long enough for a failover, short enough to notice a hang.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Production defaults the suite runs with.
const MAX_STALENESS: Duration = Duration::from_millis(1_500);
const ELECTION_TIMEOUT_MAX: Duration = Duration::from_millis(1_500);

/// A session as the client holds it.
#[derive(Clone, Debug)]
struct Session {
    email: String,
    refresh: String,
    access: String,
    /// Every access token this session was ever issued.
    accesses: Vec<String>,
}

impl Session {
    fn from_tokens(email: &str, tokens: &Value) -> Session {
        let access = tokens["access_token"].as_str().unwrap().to_string();
        Session {
            email: email.to_string(),
            refresh: tokens["refresh_token"].as_str().unwrap().to_string(),
            accesses: vec![access.clone()],
            access,
        }
    }

    fn rotated(&mut self, tokens: &Value) {
        self.refresh = tokens["refresh_token"].as_str().unwrap().to_string();
        self.access = tokens["access_token"].as_str().unwrap().to_string();
        self.accesses.push(self.access.clone());
    }
}

/// Registers `count` accounts and opens one session each, retrying through any node.
async fn open_sessions(history: &History, prefix: &str, count: usize) -> Vec<Session> {
    let mut sessions = Vec::new();
    for i in 0..count {
        let email = format!("{prefix}{i}@example.com");
        history.until_ok(Duration::from_secs(20), |node| history.register(node, i, &email, PASSWORD)).await;
        let tokens = history.until_ok(Duration::from_secs(20), |node| history.login(node, i, &email, PASSWORD)).await;
        sessions.push(Session::from_tokens(&email, &tokens));
    }
    sessions
}

/// One worker's loop: rotate `session` through the nodes in turn until `stop`. A request
/// without a definite answer is retried with the same token (the grace window gives the same
/// successor). Returns the session as the worker last knew it.
async fn rotate_until(history: History, subject: usize, mut session: Session, stop: Arc<AtomicBool>) -> Session {
    let mut turn = subject as u64;
    while !stop.load(Ordering::Relaxed) {
        turn += 1;
        let node = turn % history.urls.len() as u64 + 1;
        match history.refresh(node, subject, &session.refresh).await {
            Outcome::Ok(_, tokens) => session.rotated(&tokens),
            Outcome::Failed(401) => {
                panic!("session {subject} refused with 401 while rotating:\n{}", history.trace(subject))
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    session
}

/// The session's newest refresh token still rotates (no acknowledged rotation was lost).
async fn assert_still_rotates(history: &History, subject: usize, session: &Session) {
    let tokens =
        history.until_ok(Duration::from_secs(15), |node| history.refresh(node, subject, &session.refresh)).await;
    assert!(tokens["refresh_token"].is_string());
}

/// A logged-out session is dead on every node: its refresh token and every access token it
/// was issued are refused, by a strong (read-index) verify on each node.
async fn assert_ended_everywhere(history: &History, subject: usize, session: &Session, nodes: &[u64]) {
    for node in nodes {
        let refreshed = history.refresh(*node, subject, &session.refresh).await;
        assert_eq!(refreshed.status(), Some(401), "ended session {subject} refreshed on node {node}: {refreshed:?}");
        for access in &session.accesses {
            let started = Instant::now();
            loop {
                match history.verify(*node, subject, access, true).await {
                    Outcome::Failed(401) => break,
                    Outcome::Ok(..) => panic!("ended session {subject} verifies on node {node}"),
                    other => {
                        assert!(started.elapsed() < Duration::from_secs(10), "node {node} never answered: {other:?}")
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_storm_survives_a_leader_kill_9() {
    let mut cluster = ProcCluster::start(3, &[]).await;
    let history = History::new(cluster.urls(), CLIENT_TIMEOUT);
    let sessions = open_sessions(&history, "storm", 12).await;
    let stop = Arc::new(AtomicBool::new(false));
    history.until_ok(CLIENT_TIMEOUT, |node| history.register(node, 99, "logins@example.com", PASSWORD)).await;
    // Meanwhile one client logs in over and over (each login is two audit events, and past the
    // session cap a third).
    let logins = tokio::spawn({
        let (history, stop) = (history.clone(), stop.clone());
        async move {
            let mut node = 0;
            while !stop.load(Ordering::Relaxed) {
                node = node % 3 + 1;
                history.login(node, 99, "logins@example.com", PASSWORD).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    // Ten sessions rotate continuously over all three nodes; two are logged out before the kill.
    let workers: Vec<_> = sessions[..10]
        .iter()
        .enumerate()
        .map(|(i, s)| tokio::spawn(rotate_until(history.clone(), i, s.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut ended = Vec::new();
    for (i, session) in sessions.iter().enumerate().skip(10) {
        let logout = history.until_ok(CLIENT_TIMEOUT, |node| history.logout(node, i, &session.access)).await;
        assert_eq!(logout, Value::Null);
        ended.push((i, session.clone()));
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;

    let leader = cluster.wait_leader(Duration::from_secs(5), None).await;
    let killed_at = Instant::now();
    cluster.kill9(leader);
    let survivors: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != leader).collect();
    let new_leader = cluster.wait_leader_among(&survivors, Duration::from_secs(15)).await;
    let elected_after = killed_at.elapsed();
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    stop.store(true, Ordering::Relaxed);
    let mut finals = Vec::new();
    for worker in workers {
        finals.push(worker.await.unwrap());
    }
    logins.await.unwrap();
    let failover = history.first_write_after(killed_at).expect("a write succeeded after the kill");

    // The killed node comes back and catches up; then the invariants hold on every node.
    cluster.spawn(leader, &[]);
    cluster.wait_ready(leader).await;
    cluster.wait_caught_up(leader, new_leader, Duration::from_secs(20)).await;
    let successors = history.assert_one_successor();
    for (i, session) in &ended {
        assert_ended_everywhere(&history, *i, session, &cluster.ids()).await;
    }
    for (i, session) in finals.iter().enumerate() {
        assert_still_rotates(&history, i, session).await;
    }
    let events = history.assert_audit_exactly_once(new_leader, ADMIN).await;
    let (ok, failed, unknown) = history.tally("refresh");
    let (logins, _, _) = history.tally("login");
    println!(
        "storm: {ok} rotations ok, {failed} failed, {unknown} unknown over {} tokens; leader {leader} killed, \
         node {new_leader} elected after {}, first successful write {} after the kill; {logins} logins, \
         {events} audit events, each acknowledged one exactly once",
        successors,
        ms(elected_after),
        ms(failover)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_isolated_leader_writes_nothing_fails_closed_and_rejoins_without_its_uncommitted_writes() {
    let cluster = ProcCluster::start(3, &[]).await;
    let history = History::new(cluster.urls(), CLIENT_TIMEOUT);
    let sessions = open_sessions(&history, "part", 2).await;
    let (kept, revoked) = (&sessions[0], &sessions[1]);
    let leader = cluster.wait_leader(Duration::from_secs(5), None).await;
    let majority: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != leader).collect();
    // The isolated leader's replica is current before the cut.
    for node in cluster.ids() {
        cluster.wait_caught_up(node, leader, Duration::from_secs(10)).await;
    }
    let before = cluster.status(leader).await.unwrap();

    let cut_at = Instant::now();
    cluster.partition(&[leader]).await;

    // Writes on the isolated side: a registration, a logout, a rotation and a login.
    let minority_writes = async {
        tokio::join!(
            history.register(leader, 99, "ghost@example.com", PASSWORD),
            history.logout(leader, 0, &kept.access),
            history.refresh(leader, 0, &kept.refresh),
            history.login(leader, 0, &kept.email, PASSWORD),
        )
    };
    // Reads on the isolated side, every 50 ms for 4 s: fail closed once stale.
    let minority_reads = async {
        let mut first_refusal = None;
        let mut served_after_bound = Vec::new();
        while cut_at.elapsed() < Duration::from_secs(4) {
            let at = cut_at.elapsed();
            let outcome = history.verify(leader, 0, &kept.access, false).await;
            if outcome.status() == Some(503) {
                first_refusal.get_or_insert(at);
            } else if at > MAX_STALENESS + Duration::from_millis(250) {
                served_after_bound.push((at, outcome));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (first_refusal, served_after_bound)
    };
    // The majority elects a leader, rotates `kept` and ends `revoked`.
    let majority_writes = async {
        let new_leader = cluster.wait_leader_among(&majority, Duration::from_secs(15)).await;
        let elected = cut_at.elapsed();
        let via = majority[0];
        let rotated = history.until_ok(Duration::from_secs(10), |_| history.refresh(via, 0, &kept.refresh)).await;
        history.until_ok(Duration::from_secs(10), |_| history.logout(via, 1, &revoked.access)).await;
        (new_leader, elected, rotated)
    };
    let (writes, (first_refusal, served_after_bound), (new_leader, elected, rotated)) =
        tokio::join!(minority_writes, minority_reads, majority_writes);

    let (register, logout, refresh, login) = writes;
    for (what, outcome) in [("register", register), ("logout", logout), ("refresh", refresh), ("login", login)] {
        assert!(!outcome.ok(), "the isolated leader acknowledged a {what}: {outcome:?}");
    }
    let first_refusal = first_refusal.expect("the isolated leader never refused a read");
    assert!(served_after_bound.is_empty(), "reads served past max_staleness: {served_after_bound:?}");
    let isolated = cluster.status(leader).await.unwrap();
    let uncommitted = isolated["last_log_index"].as_u64().unwrap() - isolated["committed"].as_u64().unwrap();

    // Heal: the old leader follows the new one and its log matches the majority's.
    let healed_at = Instant::now();
    cluster.heal().await;
    cluster.wait_caught_up(leader, new_leader, Duration::from_secs(20)).await;
    let rejoined = healed_at.elapsed();
    let after = cluster.status(leader).await.unwrap();
    assert_eq!(after["role"], "follower");
    assert!(after["term"].as_u64() > before["term"].as_u64());

    // Its uncommitted writes are gone: the ghost account does not exist (registering it is
    // 201, not 409), the session it tried to end still rotates.
    history.until_ok(Duration::from_secs(10), |node| history.register(node, 99, "ghost@example.com", PASSWORD)).await;
    let mut kept = kept.clone();
    kept.rotated(&rotated);
    assert_still_rotates(&history, 0, &kept).await;
    assert_ended_everywhere(&history, 1, revoked, &cluster.ids()).await;
    history.assert_one_successor();
    println!(
        "partition: majority elected node {new_leader} after {}; isolated leader refused reads from {} (bound {}), \
         held {uncommitted} uncommitted entries, acknowledged no write, rejoined {} after healing",
        ms(elected),
        ms(first_refusal),
        ms(MAX_STALENESS),
        ms(rejoined)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_leader_resumes_without_double_successors_or_stale_answers() {
    let mut cluster = ProcCluster::start(3, &[]).await;
    let history = History::new(cluster.urls(), Duration::from_secs(3));
    let sessions = open_sessions(&history, "pause", 8).await;
    let victim = sessions[6].clone();
    let mut straggler = sessions[7].clone();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = sessions[..6]
        .iter()
        .enumerate()
        .map(|(i, s)| tokio::spawn(rotate_until(history.clone(), i, s.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let leader = cluster.wait_leader(Duration::from_secs(5), None).await;
    let others: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != leader).collect();
    let paused_at = Instant::now();
    cluster.signal(leader, Signal::SIGSTOP);
    // A client sends the straggler's refresh to the sleeping leader, gives up, and goes on
    // rotating through the others. The request it abandoned waits in the sleeping process's
    // socket buffer; acted on after the resume it would be a replay and end the session.
    let abandoned = {
        let (history, token) = (history.clone(), straggler.refresh.clone());
        tokio::spawn(async move { history.refresh(leader, 7, &token).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let new_leader = cluster.wait_leader_among(&others, Duration::from_secs(15)).await;
    let elected = paused_at.elapsed();
    for _ in 0..2 {
        let tokens = history
            .until_ok(Duration::from_secs(10), |n| history.refresh(others[n as usize % 2], 7, &straggler.refresh))
            .await;
        straggler.rotated(&tokens);
    }
    // The victim's session is ended through the new majority while the old leader sleeps, and
    // the old leader stays asleep past the staleness bound: everything it holds is too old.
    history.until_ok(Duration::from_secs(10), |_| history.logout(new_leader, 6, &victim.access)).await;
    let ended_at = Instant::now();
    let bound = MAX_STALENESS + Duration::from_millis(250);
    let pause = (2 * ELECTION_TIMEOUT_MAX + Duration::from_millis(1_000)).max(ended_at + bound - paused_at);
    tokio::time::sleep(pause.saturating_sub(paused_at.elapsed())).await;
    let resumed_at = Instant::now();
    cluster.signal(leader, Signal::SIGCONT);

    // From the moment it resumes, the old leader never calls the ended session valid, and no
    // node does once the bound has passed since the logout was acknowledged.
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    while resumed_at.elapsed() < Duration::from_secs(4) {
        for node in cluster.ids() {
            let outcome = history.verify(node, 6, &victim.access, false).await;
            assert!(!outcome.ok(), "stale answer: node {node} verified a session ended {:?} ago", ended_at.elapsed());
            if node == leader {
                *answers.entry(format!("{:?}", outcome.status())).or_default() += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut finals = Vec::new();
    for worker in workers {
        finals.push(worker.await.unwrap());
    }
    assert!(!abandoned.await.unwrap().ok(), "the sleeping leader answered");
    let successors = history.assert_one_successor();
    cluster.wait_caught_up(leader, new_leader, Duration::from_secs(20)).await;
    assert_ended_everywhere(&history, 6, &victim, &cluster.ids()).await;
    for (i, session) in finals.iter().enumerate().chain([(7, &straggler)]) {
        assert_still_rotates(&history, i, session).await;
    }
    let (ok, failed, unknown) = history.tally("refresh");
    println!(
        "pause: leader {leader} stopped {}, node {new_leader} elected after {}; {ok} rotations ok, {failed} failed, \
         {unknown} unknown over {successors} tokens; resumed node's answers for the ended session: {answers:?}",
        ms(pause),
        ms(elected)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_that_waited_in_a_paused_node_is_not_acted_on_after_it_resumes() {
    let mut cluster = ProcCluster::start(3, &[]).await;
    let history = History::new(cluster.urls(), Duration::from_secs(1));
    let mut session = open_sessions(&history, "frozen", 1).await.remove(0);
    let leader = cluster.wait_leader(Duration::from_secs(5), None).await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();

    // The client's refresh reaches a follower that is frozen; the client gives up, and rotates
    // twice through the leader. The abandoned request still waits in the frozen process's
    // socket buffer: acted on after the resume it would be a replay and end the session.
    cluster.signal(follower, Signal::SIGSTOP);
    let abandoned = history.refresh(follower, 0, &session.refresh).await;
    assert_eq!(abandoned.status(), None, "a frozen node answered: {abandoned:?}");
    for _ in 0..2 {
        let tokens = history.until_ok(Duration::from_secs(10), |_| history.refresh(leader, 0, &session.refresh)).await;
        session.rotated(&tokens);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.signal(follower, Signal::SIGCONT);
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert_still_rotates(&history, 0, &session).await;
    let metrics = cluster.client.get(cluster.url(follower, "/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tessera_process_freezes_total 1"), "the freeze went unnoticed:\n{metrics}");
    // Once it has caught up, the resumed node serves again.
    cluster.wait_caught_up(follower, leader, Duration::from_secs(10)).await;
    history.until_ok(Duration::from_secs(10), |_| history.verify(follower, 0, &session.access, false)).await;
}

/// Acknowledged writes of every kind, to look for after a crash or a restore.
struct Acknowledged {
    rotated: Vec<Session>,
    ended: Vec<Session>,
    locked: String,
}

async fn acknowledged_writes(history: &History, prefix: &str) -> Acknowledged {
    let mut sessions = open_sessions(history, prefix, 8).await;
    for (i, session) in sessions.iter_mut().enumerate() {
        for _ in 0..3 {
            let tokens = history.until_ok(CLIENT_TIMEOUT, |node| history.refresh(node, i, &session.refresh)).await;
            session.rotated(&tokens);
        }
    }
    let ended = sessions.split_off(5);
    for (i, session) in ended.iter().enumerate() {
        history.until_ok(CLIENT_TIMEOUT, |node| history.logout(node, 5 + i, &session.access)).await;
    }
    // Ten wrong passwords lock an account (spaced by the progressive delay).
    let locked = format!("{prefix}-locked@example.com");
    history.until_ok(CLIENT_TIMEOUT, |node| history.register(node, 50, &locked, PASSWORD)).await;
    let mut failures = 0;
    while failures < 10 {
        match history.login(1 + failures % 3, 50, &locked, "not the password!").await {
            Outcome::Failed(401) => failures += 1,
            Outcome::Failed(429) => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("wrong password answered {other:?}"),
        }
    }
    Acknowledged { rotated: sessions, ended, locked }
}

async fn assert_acknowledged(history: &History, nodes: &[u64], acked: &Acknowledged) {
    for (i, session) in acked.ended.iter().enumerate() {
        assert_ended_everywhere(history, 5 + i, session, nodes).await;
    }
    for (i, session) in acked.rotated.iter().enumerate() {
        assert_still_rotates(history, i, session).await;
    }
    for node in nodes {
        let locked = history.login(*node, 50, &acked.locked, PASSWORD).await;
        assert_eq!(locked.status(), Some(429), "the lock holds on node {node}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_write_survives_a_whole_cluster_kill_9() {
    let mut cluster = ProcCluster::start(3, &[]).await;
    let history = History::new(cluster.urls(), CLIENT_TIMEOUT);
    let acked = acknowledged_writes(&history, "crash").await;
    for id in cluster.ids() {
        cluster.kill9(id);
    }
    let restarted_at = Instant::now();
    for id in cluster.ids() {
        cluster.spawn(id, &[]);
    }
    for id in cluster.ids() {
        cluster.wait_ready(id).await;
    }
    let ready = restarted_at.elapsed();
    assert_acknowledged(&history, &cluster.ids(), &acked).await;
    history.assert_one_successor();
    println!(
        "crash: all three nodes killed with -9 and restarted; ready after {}, every acknowledged write there",
        ms(ready)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_node_rejoins_through_a_snapshot() {
    // Small snapshots and a short log tail, so the rejoining node cannot catch up from the log.
    let tuning = [("TESSERA_RAFT__SNAPSHOT_EVERY_ENTRIES", "64"), ("TESSERA_RAFT__KEEP_ENTRIES", "16")];
    let mut cluster = ProcCluster::start(3, &tuning).await;
    let history = History::new(cluster.urls(), CLIENT_TIMEOUT);
    let acked = acknowledged_writes(&history, "wipe").await;
    let mut more = open_sessions(&history, "wipe-more", 20).await;
    for (i, session) in more.iter_mut().enumerate() {
        for _ in 0..5 {
            let tokens =
                history.until_ok(CLIENT_TIMEOUT, |node| history.refresh(node, 100 + i, &session.refresh)).await;
            session.rotated(&tokens);
        }
    }
    let leader = cluster.wait_leader(Duration::from_secs(5), None).await;
    let started = Instant::now();
    let purged = loop {
        let status = cluster.status(leader).await.unwrap();
        if let Some(purged) = status["purged_index"].as_u64().filter(|p| *p > 0) {
            break purged;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the leader never purged its log: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let victim = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.kill9(victim);
    cluster.remove(victim).await;
    cluster.wipe(victim);
    let rejoin_at = Instant::now();
    cluster.spawn(victim, &[]);
    cluster.join(victim).await;
    cluster.wait_ready(victim).await;
    cluster.wait_caught_up(victim, leader, Duration::from_secs(20)).await;
    let rejoined = rejoin_at.elapsed();
    let status = cluster.status(victim).await.unwrap();
    let snapshot = status["snapshot_index"].as_u64().expect("the rejoined node holds a snapshot");
    assert!(snapshot >= purged, "installed snapshot {snapshot} covers the purged log ({purged})");

    // The rejoined node answers from its own replica: ended sessions are ended, live ones verify.
    assert_acknowledged(&history, &[victim], &acked).await;
    for (i, session) in more.iter().enumerate() {
        let verified = history.verify(victim, 100 + i, &session.access, false).await;
        assert!(verified.ok(), "session {i} on the rejoined node: {verified:?}");
    }
    println!(
        "wipe: node {victim} wiped, removed and re-added; installed snapshot at {snapshot} (leader purged to \
         {purged}) and caught up {} after restart",
        ms(rejoined)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_with_every_disk_wiped_is_rebuilt_from_postgres() {
    let mut cluster = ProcCluster::start(3, &[]).await;
    let history = History::new(cluster.urls(), CLIENT_TIMEOUT);
    let acked = acknowledged_writes(&history, "restore").await;

    // The documented procedure restores what the snapshot store holds: wait until it holds
    // everything acknowledged (flushes run every second).
    let leader = cluster.wait_leader(Duration::from_secs(5), None).await;
    let committed = cluster.status(leader).await.unwrap()["committed"].as_u64().unwrap();
    let started = Instant::now();
    loop {
        let status = cluster.status(leader).await.unwrap();
        if status["store"]["watermark"].as_u64().unwrap() >= committed {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the store never caught up: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in cluster.ids() {
        cluster.kill9(id);
        cluster.wipe(id);
    }
    let restore_at = Instant::now();
    for id in cluster.ids() {
        cluster.spawn(id, &[("TESSERA_RESTORE", "true")]);
    }
    for id in cluster.ids() {
        cluster.wait_ready(id).await;
    }
    let ready = restore_at.elapsed();
    assert_acknowledged(&history, &cluster.ids(), &acked).await;
    history.assert_one_successor();
    println!("restore: three empty nodes rebuilt from Postgres at index {committed}, ready after {}", ms(ready));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hundred_guesses_over_three_nodes_evaluate_at_most_the_limit() {
    let cluster = ProcCluster::start(3, &[]).await;
    let history = History::new(cluster.urls(), Duration::from_secs(30));
    history.until_ok(CLIENT_TIMEOUT, |node| history.register(node, 0, "target@example.com", PASSWORD)).await;
    let verifications = |history: History| async move {
        let mut total = 0;
        for node in 1..=3 {
            let view: Value =
                history.http.get(history.url(node, "/v1/cluster")).send().await.unwrap().json().await.unwrap();
            total += view["password_verifications"].as_u64().unwrap();
        }
        total
    };
    let before = verifications(history.clone()).await;
    let guesses = (0..300u64).map(|i| {
        let history = history.clone();
        async move { history.login(i % 3 + 1, 0, "target@example.com", &format!("wrong guess {i}")).await }
    });
    let outcomes = futures::future::join_all(guesses).await;
    let evaluated = verifications(history.clone()).await - before;
    let rejected = outcomes.iter().filter(|o| o.status() == Some(401)).count() as u64;
    let throttled = outcomes.iter().filter(|o| o.status() == Some(429)).count();
    assert!(evaluated <= 10, "{evaluated} password verifications across the cluster for 300 guesses");
    assert_eq!(rejected, evaluated, "one 401 per evaluated guess");
    assert!(outcomes.iter().all(|o| matches!(o.status(), Some(401 | 429))), "{outcomes:?}");
    println!("guesses: 300 concurrent over 3 nodes, {evaluated} evaluated, {throttled} refused without hashing");

    // Fewer than ten evaluated leaves the account in a progressive delay, not locked. Keep
    // guessing over the nodes until the tenth evaluated failure locks it: then the right
    // password is refused on every node, and no guess past the tenth was ever evaluated.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut guess = 300u64;
    while verifications(history.clone()).await - before < 10 {
        assert!(Instant::now() < deadline, "the account never locked");
        let outcome = history.login(guess % 3 + 1, 0, "target@example.com", &format!("wrong guess {guess}")).await;
        assert!(matches!(outcome.status(), Some(401 | 429)), "{outcome:?}");
        if outcome.status() == Some(429) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        guess += 1;
    }
    for node in 1..=3 {
        assert_eq!(history.login(node, 0, "target@example.com", PASSWORD).await.status(), Some(429), "node {node}");
    }
    assert_eq!(verifications(history.clone()).await - before, 10, "evaluated guesses in all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_on_another_node_revokes_the_family_on_every_node() {
    let cluster = ProcCluster::start(3, &[]).await;
    let history = History::new(cluster.urls(), CLIENT_TIMEOUT);
    let leader = cluster.wait_leader(Duration::from_secs(5), None).await;
    let followers: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != leader).collect();
    let mut session = open_sessions(&history, "replay", 1).await.remove(0);
    let stolen = session.refresh.clone();
    let (a, b) = (followers[0], followers[1]);
    for _ in 0..2 {
        let Outcome::Ok(_, tokens) = history.refresh(a, 0, &session.refresh).await else { panic!("rotation on {a}") };
        session.rotated(&tokens);
    }
    // Two generations old: a replay, whichever node receives it.
    let replay = history.refresh(b, 0, &stolen).await;
    assert_eq!(replay.status(), Some(401), "replay on node {b}");
    assert_ended_everywhere(&history, 0, &session, &cluster.ids()).await;
    history.assert_one_successor();
    println!(
        "replay: rotated twice on node {a}, replayed the first token on node {b}: family revoked on all three nodes"
    );
}

/// Behind a load balancer a client logs in or refreshes through one node and verifies on
/// another a millisecond later, before that replica has applied the commit: the token must
/// still be accepted (the replica catches up through a read index), never refused for lag.
/// No node configures an issuer here, as in a development cluster: they all use the one the
/// first node recorded when it initialised the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_is_accepted_on_every_node_the_moment_it_is_issued() {
    let cluster = ProcCluster::start(3, &[("TESSERA_TOKENS__ISSUER", "")]).await;
    let history = History::new(cluster.urls(), CLIENT_TIMEOUT);
    let ids = cluster.ids();
    let first = format!("http://{}", cluster.node(1).public);
    for id in &ids {
        let discovery: Value = cluster
            .client
            .get(cluster.url(*id, "/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(discovery["issuer"], first.as_str(), "node {id} uses the cluster's issuer");
    }
    for round in 0..20 {
        let node = |offset: usize| ids[(round + offset) % ids.len()];
        let email = format!("lag{round}@example.com");
        assert!(history.register(node(0), round, &email, PASSWORD).await.ok(), "{}", history.trace(round));
        let Outcome::Ok(_, login) = history.login(node(1), round, &email, PASSWORD).await else {
            panic!("login: {}", history.trace(round))
        };
        let mut session = Session::from_tokens(&email, &login);
        let Outcome::Ok(_, refreshed) = history.refresh(node(2), round, &session.refresh).await else {
            panic!("refresh: {}", history.trace(round))
        };
        session.rotated(&refreshed);
        let verifies = ids.iter().flat_map(|id| session.accesses.iter().map(|a| history.verify(*id, round, a, false)));
        for outcome in futures::future::join_all(verifies).await {
            assert!(outcome.ok(), "a fresh token refused: {}", history.trace(round));
        }
    }
    println!("read-your-writes: 20 rounds of login and refresh on one node, verify at once on all three: all accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leadership_moves_to_the_chosen_voter_during_rotations() {
    let cluster = ProcCluster::start(3, &[]).await;
    let history = History::new(cluster.urls(), CLIENT_TIMEOUT);
    let sessions = open_sessions(&history, "transfer", 6).await;
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = sessions
        .iter()
        .enumerate()
        .map(|(i, s)| tokio::spawn(rotate_until(history.clone(), i, s.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let mut moves = Vec::new();
    for _ in 0..3 {
        let leader = cluster.wait_leader(Duration::from_secs(5), None).await;
        let target = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
        let via = cluster.ids().into_iter().find(|id| *id != target).unwrap();
        let asked = Instant::now();
        let answer = cluster.transfer(via, target).await;
        assert_eq!(answer["leader"], target);
        assert_eq!(cluster.wait_leader(Duration::from_secs(5), None).await, target);
        moves.push((leader, target, asked, asked.elapsed()));
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut finals = Vec::new();
    for worker in workers {
        finals.push(worker.await.unwrap());
    }
    let successors = history.assert_one_successor();
    for (i, session) in finals.iter().enumerate() {
        assert_still_rotates(&history, i, session).await;
    }
    let (ok, failed, unknown) = history.tally("refresh");
    let moves: Vec<String> = moves
        .iter()
        .map(|(from, to, asked, took)| {
            let write = history.first_write_after(*asked).map(ms).unwrap_or_default();
            format!("{from}→{to} in {} (first write done {write} after asking)", ms(*took))
        })
        .collect();
    println!(
        "transfer: {}; {ok} rotations ok, {failed} failed, {unknown} unknown over {successors} tokens",
        moves.join(", ")
    );
}

/// Webhooks across a leader `kill -9`: the receiver (which verifies every request with the
/// `standardwebhooks` package) refuses each event's first two attempts, the leader dies
/// mid-stream, and the new leader resumes from the replicated cursors: every event of the
/// trail is accepted, none is lost, and anything sent twice carries the same `webhook-id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_deliver_every_event_across_a_leader_kill_9() {
    let receiver = common::receiver::Receiver::start(2);
    let hooks = format!(
        r#"[{{name="all",url="{}",secret="{}",events=["*"]}}]"#,
        receiver.url("/all"),
        common::receiver::SECRET
    );
    let mut cluster = ProcCluster::start(
        3,
        &[
            ("TESSERA_WEBHOOKS", hooks.as_str()),
            ("TESSERA_WEBHOOK_DELIVERY__RETRY_MS", "[200, 200, 200, 200, 200, 200]"),
        ],
    )
    .await;
    let history = History::new(cluster.urls(), CLIENT_TIMEOUT);
    let register = |i: usize| {
        let history = history.clone();
        async move {
            let email = format!("hook{i}@example.com");
            history.until_ok(Duration::from_secs(20), |node| history.register(node, i, &email, PASSWORD)).await;
        }
    };
    for i in 0..10 {
        register(i).await;
    }
    // Some events are delivered, some are mid-retry when the leader dies.
    receiver.wait_accepted("/all", 3, Duration::from_secs(20)).await;
    let leader = cluster.wait_leader(Duration::from_secs(5), None).await;
    cluster.kill9(leader);
    let survivors: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != leader).collect();
    let new_leader = cluster.wait_leader_among(&survivors, Duration::from_secs(15)).await;
    for i in 10..15 {
        register(i).await;
    }

    // The trail is read from the snapshot store, which takes the new leader's entries at its
    // next flush: wait until it holds the event of every acknowledged registration (15), which
    // it must (invariant 9), or fail.
    let deadline = Instant::now() + Duration::from_secs(20);
    let trail = loop {
        // Leave out the cluster's first key event: an endpoint's cursor starts at the head when
        // the leader first sees the endpoint, which may be just before or after it.
        let trail: Vec<Value> = history
            .audit_events(new_leader, ADMIN)
            .await
            .into_iter()
            .filter(|e| e["action"] != "key.activated")
            .collect();
        if trail.len() >= 15 {
            break trail;
        }
        assert!(Instant::now() < deadline, "the trail holds {} of 15 acknowledged events", trail.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let expected: std::collections::BTreeSet<String> = trail.iter().map(|e| format!("evt_{}", e["seq"])).collect();
    receiver.wait_all_accepted("/all", &expected, Duration::from_secs(30)).await;
    let accepted: Vec<Value> =
        receiver.accepted("/all").into_iter().filter(|r| r["body"]["type"] != "key.activated").collect();
    let delivered: std::collections::BTreeSet<String> =
        accepted.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(delivered, expected, "every event of the trail delivered, nothing else");
    assert!(receiver.requests().iter().all(|r| r["verified"] == true), "every request verified");
    let again = accepted.len() - delivered.len();
    println!(
        "webhooks: {} events, leader {leader} killed, node {new_leader} resumed: all accepted, {again} accepted twice \
         (same webhook-id), {} requests in all",
        trail.len(),
        receiver.requests().len()
    );
}

/// Retries `attempt` (over the nodes in turn) while the answer is "unavailable" (a failover in
/// progress: 503, a dead node, a timeout); any other answer is returned.
async fn until_answered<F, Fut>(nodes: &[u64], limit: Duration, mut attempt: F) -> Outcome
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let started = Instant::now();
    for round in 0.. {
        let outcome = attempt(nodes[round % nodes.len()]).await;
        if !matches!(outcome, Outcome::Failed(0 | 503) | Outcome::Unknown) {
            return outcome;
        }
        assert!(started.elapsed() < limit, "still unavailable after {limit:?}: {outcome:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!()
}

/// Invariant 6 across a failover: a TOTP code accepted through the old leader is refused
/// through the new one (the used step is in the replicated record, not in a node's memory),
/// while a login challenge and a pending enrolment made before the `kill -9` still work after
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_code_accepted_before_a_leader_kill_9_is_refused_after_it_and_challenges_and_enrolments_survive() {
    let mut cluster = ProcCluster::start(3, &[]).await;
    let history = History::new(cluster.urls(), CLIENT_TIMEOUT);
    let post = |node: u64, path: &str, bearer: Option<&str>, body: Value| {
        let request = history.http.post(history.url(node, path)).json(&body);
        let request = match bearer {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        history.call("mfa", node, 0, request, None)
    };
    let mut accesses = Vec::new();
    for (i, email) in ["mfa-a@example.com", "mfa-b@example.com"].into_iter().enumerate() {
        history.until_ok(Duration::from_secs(20), |node| history.register(node, i, email, PASSWORD)).await;
        let tokens = history.until_ok(Duration::from_secs(20), |node| history.login(node, i, email, PASSWORD)).await;
        accesses.push(tokens["access_token"].as_str().unwrap().to_string());
    }
    let (history, post) = (&history, &post);
    let enrol = |access: String| async move {
        history.until_ok(Duration::from_secs(20), |node| post(node, "/v1/mfa/totp", Some(&access), Value::Null)).await
    };
    // A is enrolled and logs in with a code; B has an enrolment pending.
    let a = enrol(accesses[0].clone()).await;
    let secret = a["secret"].as_str().unwrap().to_string();
    let confirm = serde_json::json!({ "factor_id": a["factor_id"], "code": common::oathtool(&secret, 0) });
    let confirmed = history
        .until_ok(Duration::from_secs(20), |node| {
            post(node, "/v1/mfa/totp/confirm", Some(&accesses[0]), confirm.clone())
        })
        .await;
    let recovery = confirmed["recovery_codes"][0].as_str().unwrap().to_string();
    let code = common::oathtool(&secret, 1);
    let login_a =
        || history.until_ok(Duration::from_secs(20), |node| history.login(node, 0, "mfa-a@example.com", PASSWORD));
    let first = login_a().await;
    let second_factor = |token: &Value, key: &str, value: &str| serde_json::json!({ "mfa_token": token, key: value });
    let used = first["mfa_token"].clone();
    history
        .until_ok(Duration::from_secs(20), |node| {
            post(node, "/v1/login/mfa", None, second_factor(&used, "code", &code))
        })
        .await;
    let held = login_a().await["mfa_token"].clone();
    let b = enrol(accesses[1].clone()).await;

    let leader = cluster.wait_leader(Duration::from_secs(5), None).await;
    cluster.kill9(leader);
    let survivors: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != leader).collect();
    let new_leader = cluster.wait_leader_among(&survivors, Duration::from_secs(15)).await;

    // The challenge made before the kill passes with a recovery code through the new leader.
    let limit = Duration::from_secs(20);
    let passed = until_answered(&survivors, limit, |node| {
        post(node, "/v1/login/mfa", None, second_factor(&held, "recovery_code", &recovery))
    })
    .await;
    assert_eq!(passed.status(), Some(200), "the challenge survived the failover");
    // The code accepted before the kill is refused after it.
    let fresh = until_answered(&survivors, limit, |node| history.login(node, 0, "mfa-a@example.com", PASSWORD)).await;
    let Outcome::Ok(_, fresh) = fresh else { panic!("login after the failover: {fresh:?}") };
    let replayed = until_answered(&survivors, limit, |node| {
        post(node, "/v1/login/mfa", None, second_factor(&fresh["mfa_token"], "code", &code))
    })
    .await;
    assert_eq!(replayed.status(), Some(401), "a code accepted before the failover is refused after it");
    // B's pending enrolment is confirmed through the new leader.
    let b_secret = b["secret"].as_str().unwrap();
    let b_confirm = serde_json::json!({ "factor_id": b["factor_id"], "code": common::oathtool(b_secret, 0) });
    let confirmed_b = until_answered(&survivors, limit, |node| {
        post(node, "/v1/mfa/totp/confirm", Some(&accesses[1]), b_confirm.clone())
    })
    .await;
    assert_eq!(confirmed_b.status(), Some(200), "the pending enrolment survived the failover");
    println!(
        "mfa: leader {leader} killed after a code was accepted; node {new_leader} leads: the code is refused, the held \
         mfa_token passes with a recovery code, the pending enrolment confirms"
    );
}

/// One node's view of the signing keys: (active kids, every kid) from the admin list.
async fn key_view(cluster: &ProcCluster, id: u64) -> Option<(Vec<String>, Vec<String>)> {
    let listed: Value = cluster
        .client
        .get(cluster.url(id, "/v1/admin/keys"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let keys = listed["keys"].as_array()?;
    let kid = |k: &Value| k["kid"].as_str().unwrap().to_string();
    Some((keys.iter().filter(|k| k["state"] == "active").map(kid).collect(), keys.iter().map(kid).collect()))
}

/// Operators rotate the signing key through every node while the leader is killed: each
/// rotation is one compare-and-set write over the key pointers, so whatever had committed when
/// the leader died, every node (the killed one too, once back) holds exactly one active key
/// and the same key set, every acknowledged rotation is in the audit trail, and tokens signed
/// after the failover verify on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_kill_9_in_the_middle_of_key_rotations_leaves_exactly_one_active_key() {
    let mut cluster = ProcCluster::start(3, &[]).await;
    let history = History::new(cluster.urls(), CLIENT_TIMEOUT);
    let leader = cluster.wait_leader(Duration::from_secs(5), None).await;
    let stop = Arc::new(AtomicBool::new(false));
    let rotators: Vec<_> = cluster
        .ids()
        .into_iter()
        .map(|id| {
            let (client, url, stop) = (cluster.client.clone(), cluster.url(id, "/v1/admin/keys/rotate"), stop.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let body = serde_json::json!({ "revoke_current": i % 3 == 0 });
                    let answer = client.post(&url).bearer_auth(ADMIN).json(&body).send().await;
                    if let Ok(answer) = answer
                        && answer.status() == 200
                    {
                        let answer: Value = answer.json().await.unwrap();
                        if answer["rotated"] == true {
                            acknowledged.push(answer["active"].as_str().unwrap().to_string());
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    cluster.kill9(leader);
    let survivors: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != leader).collect();
    let new_leader = cluster.wait_leader_among(&survivors, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for rotator in rotators {
        acknowledged.extend(rotator.await.unwrap());
    }
    assert!(!acknowledged.is_empty(), "some rotations were acknowledged");

    cluster.spawn(leader, &[]);
    cluster.wait_ready(leader).await;
    cluster.wait_caught_up(leader, new_leader, Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let views = loop {
        let mut views = Vec::new();
        for id in cluster.ids() {
            views.push(key_view(&cluster, id).await.expect("the key list"));
        }
        if views.windows(2).all(|w| w[0] == w[1]) {
            break views;
        }
        assert!(Instant::now() < deadline, "the nodes' key sets never agreed: {views:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (active, _) in &views {
        assert_eq!(active.len(), 1, "exactly one active key: {views:?}");
    }
    let active = views[0].0[0].clone();

    // The trail (read from the snapshot store, which takes the new leader's entries at its next
    // flush) holds an activation for every acknowledged rotation.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let trail = history.audit_events(new_leader, ADMIN).await;
        let activated: std::collections::BTreeSet<&str> = trail
            .iter()
            .filter(|e| e["action"] == "key.activated")
            .map(|e| e["resource_id"].as_str().unwrap())
            .collect();
        let missing: Vec<&String> = acknowledged.iter().filter(|kid| !activated.contains(kid.as_str())).collect();
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "acknowledged rotations without an audit event: {missing:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let sessions = open_sessions(&history, "afterkeys", 1).await;
    for id in cluster.ids() {
        for access in &sessions[0].accesses {
            assert!(history.verify(id, 0, access, false).await.ok(), "a new token refused on node {id}");
        }
    }
    println!(
        "key rotations: {} acknowledged over three nodes, leader {leader} killed, node {new_leader} leads: one active \
         key ({active}) and one key set on all three, every acknowledged rotation audited",
        acknowledged.len()
    );
}
