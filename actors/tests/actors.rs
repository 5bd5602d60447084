//! The actor shells over fake ports: serialization, compare-and-set commits, conflicts,
//! leadership changes.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;
use tessera_actors::address_actor::Register;
use tessera_actors::audit::Origin;
use tessera_actors::client_actor::AdmitRegistration;
use tessera_actors::domain::{DeviceHash, Email, Millis, RefreshToken, SessionPolicy, UserId, Verified};
use tessera_actors::family_actor::{Logout, LogoutAll, Refresh};
use tessera_actors::identity_actor::{BeginLogin, CompleteLogin, FailLogin};
use tessera_actors::ports::Clock;
use tessera_actors::ports::Write;
use tessera_actors::protocol::{
    ActorError, Admission, ClientContext, LoginOutcome, LoginStart, LoginSubject, LogoutOutcome, RefreshOutcome,
    RegisterOutcome, SessionGrant,
};
use tessera_actors::record::{Record, keys};
use tessera_actors::sweeper::{Sweeper, Swept};

const PHONE: DeviceHash = DeviceHash([1; 16]);

fn phone() -> ClientContext {
    ClientContext { device: PHONE, ip: None, label: "phone".into() }
}

/// Logs `email` in (the password is taken to be right) and returns the outcome.
async fn login(world: &World, email: &Email) -> LoginOutcome {
    match world.domain.run(BeginLogin { email: email.clone(), ip: None, origin: Origin::default() }).await.unwrap() {
        LoginStart::Permit { subject, permit, credential_version, .. } => world
            .domain
            .run(CompleteLogin {
                subject,
                verified: Verified { permit, credential_version },
                client: phone(),
                origin: Origin::default(),
            })
            .await
            .unwrap(),
        LoginStart::Wait { retry_after_secs } => panic!("told to wait {retry_after_secs}s"),
    }
}

async fn registered_session(world: &World) -> SessionGrant {
    let user = UserId::from_random([9; 16]);
    let email = Email::parse("alice@example.com").unwrap();
    assert_eq!(
        world
            .domain
            .run(Register {
                user,
                email: email.clone(),
                password_hash: "$argon2id$x".into(),
                origin: Origin::default()
            })
            .await
            .unwrap(),
        RegisterOutcome::Registered
    );
    match login(world, &email).await {
        LoginOutcome::Opened(grant) => grant,
        other => panic!("login: {other:?}"),
    }
}

fn family_generation(world: &World, grant: &SessionGrant) -> u64 {
    match world.store.data.lock().get(&keys::family(grant.family)) {
        Some((_, Record::Family(family))) => family.generation.0,
        other => panic!("no family: {other:?}"),
    }
}

#[actix_rt::test]
async fn ten_concurrent_refreshes_of_one_token_rotate_once_and_share_the_successor() {
    let world = world();
    let grant = registered_session(&world).await;
    let writes_before = world.store.writes.load(Ordering::SeqCst);

    let refreshes = (0..10).map(|_| {
        world.domain.run(Refresh { token: grant.refresh_token.clone(), device: PHONE, origin: Origin::default() })
    });
    let outcomes = futures::future::join_all(refreshes).await;

    let successors: Vec<RefreshToken> = outcomes
        .into_iter()
        .map(|o| match o.unwrap() {
            RefreshOutcome::Rotated(g) | RefreshOutcome::Grace(g) => g.refresh_token,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert!(successors.iter().all(|t| *t == successors[0]), "one successor for all");
    assert_eq!(world.store.writes.load(Ordering::SeqCst) - writes_before, 1, "exactly one rotation was written");
    assert_eq!(family_generation(&world, &grant), 2);
}

#[actix_rt::test]
async fn an_older_generation_revokes_the_family_and_its_live_child() {
    let world = world();
    let g1 = registered_session(&world).await;
    let RefreshOutcome::Rotated(g2) = world
        .domain
        .run(Refresh { token: g1.refresh_token.clone(), device: PHONE, origin: Origin::default() })
        .await
        .unwrap()
    else {
        panic!()
    };
    world.clock.advance(Duration::from_secs(60));
    let RefreshOutcome::Rotated(g3) = world
        .domain
        .run(Refresh { token: g2.refresh_token.clone(), device: PHONE, origin: Origin::default() })
        .await
        .unwrap()
    else {
        panic!()
    };

    assert_eq!(
        world.domain.run(Refresh { token: g1.refresh_token, device: PHONE, origin: Origin::default() }).await.unwrap(),
        RefreshOutcome::Replayed
    );
    assert_eq!(
        world.domain.run(Refresh { token: g3.refresh_token, device: PHONE, origin: Origin::default() }).await.unwrap(),
        RefreshOutcome::Revoked
    );
    assert!(world.store.data.lock().get(&keys::user_family(g1.user, g1.family)).is_none(), "index entry removed");
}

#[actix_rt::test]
async fn a_stale_actor_reloads_after_a_conflict_and_decides_again() {
    let world = world();
    let grant = registered_session(&world).await;
    // Activate the actor, then revoke the family behind its back (as a previous leader might).
    let RefreshOutcome::Rotated(next) = world
        .domain
        .run(Refresh { token: grant.refresh_token.clone(), device: PHONE, origin: Origin::default() })
        .await
        .unwrap()
    else {
        panic!()
    };
    let key = keys::family(grant.family);
    let (version, Record::Family(family)) = world.store.data.lock().get(&key).cloned().unwrap() else { panic!() };
    let revoked = match family.revoke(family.rotated_at, tessera_actors::domain::RevokeReason::Admin) {
        tessera_actors::domain::RevokeVerdict::Revoked { family } => family,
        other => panic!("{other:?}"),
    };
    world.store.apply(Write::default().expect(key.clone(), Some(version)).put(key, Record::Family(revoked)));

    // The actor's in-memory state still says "live, generation 2": its write conflicts, it
    // reloads, and the rule now says revoked.
    assert_eq!(
        world
            .domain
            .run(Refresh { token: next.refresh_token, device: PHONE, origin: Origin::default() })
            .await
            .unwrap(),
        RefreshOutcome::Revoked
    );
}

#[actix_rt::test]
async fn two_conflicts_in_a_row_are_reported_as_contention() {
    let world = world();
    let grant = registered_session(&world).await;
    world.store.force_conflicts.store(2, Ordering::SeqCst);
    let outcome = world
        .domain
        .run(Refresh { token: grant.refresh_token.clone(), device: PHONE, origin: Origin::default() })
        .await;
    assert_eq!(outcome, Err(ActorError::Contention));
    // Nothing was lost: the token still rotates afterwards.
    assert!(matches!(
        world.domain.run(Refresh { token: grant.refresh_token, device: PHONE, origin: Origin::default() }).await,
        Ok(RefreshOutcome::Rotated(_))
    ));
}

#[actix_rt::test]
async fn concurrent_registrations_of_one_email_give_exactly_one_account() {
    let world = world();
    let attempts = (0..8u8).map(|i| {
        let email = Email::parse(if i % 2 == 0 { "Bob@Example.com" } else { " bob@example.COM " }).unwrap();
        world.domain.run(Register {
            user: UserId::from_random([i; 16]),
            email,
            password_hash: "$argon2id$x".into(),
            origin: Origin::default(),
        })
    });
    let outcomes = futures::future::join_all(attempts).await;
    let registered = outcomes.iter().filter(|o| **o == Ok(RegisterOutcome::Registered)).count();
    let taken = outcomes.iter().filter(|o| **o == Ok(RegisterOutcome::EmailTaken)).count();
    assert_eq!((registered, taken), (1, 7));
}

#[actix_rt::test]
async fn a_success_against_a_replaced_credential_is_rejected_and_counts_as_a_failure() {
    let world = world();
    let user = UserId::from_random([3; 16]);
    let email = Email::parse("carol@example.com").unwrap();
    world
        .domain
        .run(Register { user, email: email.clone(), password_hash: "$argon2id$old".into(), origin: Origin::default() })
        .await
        .unwrap();
    let LoginStart::Permit { subject, permit, credential_version, .. } =
        world.domain.run(BeginLogin { email: email.clone(), ip: None, origin: Origin::default() }).await.unwrap()
    else {
        panic!()
    };
    let outcome = world
        .domain
        .run(CompleteLogin {
            subject,
            verified: Verified { permit, credential_version: credential_version + 1 },
            client: phone(),
            origin: Origin::default(),
        })
        .await;
    assert_eq!(outcome.unwrap(), LoginOutcome::Rejected);
    assert_eq!(
        world.domain.run(BeginLogin { email, ip: None, origin: Origin::default() }).await.unwrap(),
        LoginStart::Wait { retry_after_secs: 1 }
    );
}

#[actix_rt::test]
async fn a_permit_is_good_for_one_report_only() {
    let world = world();
    registered_session(&world).await;
    let email = Email::parse("alice@example.com").unwrap();
    let LoginStart::Permit { subject, permit, credential_version, .. } =
        world.domain.run(BeginLogin { email, ip: None, origin: Origin::default() }).await.unwrap()
    else {
        panic!()
    };
    let first = world
        .domain
        .run(CompleteLogin {
            subject: subject.clone(),
            verified: Verified { permit, credential_version },
            client: phone(),
            origin: Origin::default(),
        })
        .await;
    assert!(matches!(first.unwrap(), LoginOutcome::Opened(_)));
    let again = world
        .domain
        .run(CompleteLogin {
            subject,
            verified: Verified { permit, credential_version },
            client: phone(),
            origin: Origin::default(),
        })
        .await;
    assert_eq!(again.unwrap(), LoginOutcome::Rejected);
}

#[actix_rt::test]
async fn unknown_accounts_and_families_are_answered_without_activating_anything() {
    let world = world();
    let unknown = Email::parse("nobody@example.com").unwrap();
    assert!(matches!(
        world.domain.run(BeginLogin { email: unknown, ip: None, origin: Origin::default() }).await.unwrap(),
        LoginStart::Permit { password_hash: None, .. }
    ));
    let forged =
        pepper().issue(tessera_actors::domain::FamilyId([4; 16]), tessera_actors::domain::Generation(1), &[0; 16]);
    assert_eq!(
        world.domain.run(Refresh { token: forged, device: PHONE, origin: Origin::default() }).await.unwrap(),
        RefreshOutcome::Invalid
    );
    assert_eq!(world.domain.registry().counts().families, 0);
}

#[actix_rt::test]
async fn logout_is_for_the_owner_only_and_logout_all_revokes_every_session() {
    let world = world();
    let first = registered_session(&world).await;
    let LoginOutcome::Opened(second) = login(&world, &Email::parse("alice@example.com").unwrap()).await else {
        panic!()
    };
    let stranger = UserId::from_random([8; 16]);
    assert_eq!(
        world.domain.run(Logout { user: stranger, family: first.family, origin: Origin::default() }).await.unwrap(),
        LogoutOutcome::NotFound
    );
    assert_eq!(
        world.domain.run(Logout { user: first.user, family: first.family, origin: Origin::default() }).await.unwrap(),
        LogoutOutcome::LoggedOut
    );
    assert_eq!(
        world.domain.run(Logout { user: first.user, family: first.family, origin: Origin::default() }).await.unwrap(),
        LogoutOutcome::AlreadyLoggedOut
    );
    assert_eq!(
        world.domain.run(LogoutAll { user: first.user, origin: Origin::default() }).await.unwrap(),
        1,
        "only the second was still live"
    );
    assert_eq!(
        world
            .domain
            .run(Refresh { token: second.refresh_token, device: PHONE, origin: Origin::default() })
            .await
            .unwrap(),
        RefreshOutcome::Revoked
    );
}

#[actix_rt::test]
async fn a_node_that_does_not_lead_refuses_and_a_new_term_reloads_every_actor() {
    let world = world();
    let grant = registered_session(&world).await;
    assert_eq!(world.store.confirmations.load(Ordering::SeqCst), 1, "one confirmation per term");

    *world.store.term.lock() = None;
    assert_eq!(
        world
            .domain
            .run(Refresh { token: grant.refresh_token.clone(), device: PHONE, origin: Origin::default() })
            .await,
        Err(ActorError::NotLeader)
    );

    *world.store.term.lock() = Some(2);
    assert!(matches!(
        world.domain.run(Refresh { token: grant.refresh_token, device: PHONE, origin: Origin::default() }).await,
        Ok(RefreshOutcome::Rotated(_))
    ));
    assert_eq!(world.store.confirmations.load(Ordering::SeqCst), 2);
    assert_eq!(world.domain.registry().counts().identities, 0, "the new term dropped the old actors");
    assert_eq!(world.domain.registry().passivate_idle(Duration::ZERO), 1, "only the family was activated since");
}

#[actix_rt::test]
async fn concurrent_attempts_never_get_more_permits_than_the_threshold() {
    let world = world();
    let email = Email::parse("target@example.com").unwrap();
    world
        .domain
        .run(Register {
            user: UserId::from_random([6; 16]),
            email: email.clone(),
            password_hash: "$argon2id$x".into(),
            origin: Origin::default(),
        })
        .await
        .unwrap();
    let attempts =
        (0..200).map(|_| world.domain.run(BeginLogin { email: email.clone(), ip: None, origin: Origin::default() }));
    let starts = futures::future::join_all(attempts).await;
    let permits: Vec<(LoginSubject, u64)> = starts
        .iter()
        .filter_map(|s| match s.as_ref().unwrap() {
            LoginStart::Permit { subject, permit, .. } => Some((subject.clone(), *permit)),
            LoginStart::Wait { .. } => None,
        })
        .collect();
    assert_eq!(permits.len(), 10, "the threshold, however many ask at once");
    for (subject, permit) in permits {
        world.domain.run(FailLogin { subject, permit, ip: None, origin: Origin::default() }).await.unwrap();
    }
    // Locked: even the right password is not checked.
    assert_eq!(
        world.domain.run(BeginLogin { email, ip: None, origin: Origin::default() }).await.unwrap(),
        LoginStart::Wait { retry_after_secs: 3600 }
    );
}

#[actix_rt::test]
async fn an_unknown_address_is_answered_exactly_like_an_account() {
    let world = world();
    let known = Email::parse("known@example.com").unwrap();
    world
        .domain
        .run(Register {
            user: UserId::from_random([7; 16]),
            email: known.clone(),
            password_hash: "$argon2id$x".into(),
            origin: Origin::default(),
        })
        .await
        .unwrap();
    let unknown = Email::parse("unknown@example.com").unwrap();
    let mut transcripts = Vec::new();
    for email in [known, unknown] {
        let mut transcript = Vec::new();
        for step in 0..26 {
            let start = world
                .domain
                .run(BeginLogin { email: email.clone(), ip: None, origin: Origin::default() })
                .await
                .unwrap();
            match &start {
                LoginStart::Permit { subject, permit, .. } => {
                    transcript.push("permit".to_string());
                    world
                        .domain
                        .run(FailLogin {
                            subject: subject.clone(),
                            permit: *permit,
                            ip: None,
                            origin: Origin::default(),
                        })
                        .await
                        .unwrap();
                }
                LoginStart::Wait { retry_after_secs } => transcript.push(format!("wait {retry_after_secs}")),
            }
            if step % 2 == 1 {
                world.clock.advance(Duration::from_secs(20));
            }
        }
        transcripts.push(transcript);
        world.clock.advance(Duration::from_secs(7200));
    }
    assert_eq!(transcripts[0], transcripts[1]);
    assert!(transcripts[0].iter().any(|t| t == "wait 3600"), "{:?}", transcripts[0]);
}

#[actix_rt::test]
async fn the_session_cap_evicts_the_oldest_or_refuses() {
    let world = world_with(|cx| cx.cap = tessera_actors::domain::SessionCap { max: 3, ..Default::default() });
    let first = registered_session(&world).await;
    let email = Email::parse("alice@example.com").unwrap();
    let mut grants = vec![first];
    for _ in 0..4 {
        world.clock.advance(Duration::from_secs(1));
        let LoginOutcome::Opened(grant) = login(&world, &email).await else { panic!() };
        grants.push(grant);
    }
    let live: Vec<bool> = grants
        .iter()
        .map(|g| match world.store.data.lock().get(&keys::family(g.family)) {
            Some((_, Record::Family(f))) => f.revoked.is_none(),
            _ => false,
        })
        .collect();
    assert_eq!(live, vec![false, false, true, true, true], "the two oldest were evicted");

    let deny = world_with(|cx| {
        cx.cap = tessera_actors::domain::SessionCap { max: 1, action: tessera_actors::domain::CapAction::Deny }
    });
    registered_session(&deny).await;
    assert_eq!(login(&deny, &email).await, LoginOutcome::CapReached);
    // A refusal by policy is not a failed attempt: the next attempt is not delayed.
    assert!(matches!(
        deny.domain.run(BeginLogin { email, ip: None, origin: Origin::default() }).await.unwrap(),
        LoginStart::Permit { .. }
    ));
}

#[actix_rt::test]
async fn a_network_with_too_many_failures_is_throttled_for_every_account() {
    use tessera_actors::domain::{IpPrefix, WindowPolicy};
    let world =
        world_with(|cx| cx.throttle.login_failures = WindowPolicy { limit: 3, window: Duration::from_secs(600) });
    let ip = Some(IpPrefix::V4([198, 51, 100]));
    for i in 0..3 {
        let email = Email::parse(&format!("victim{i}@example.com")).unwrap();
        let LoginStart::Permit { subject, permit, .. } =
            world.domain.run(BeginLogin { email, ip, origin: Origin::default() }).await.unwrap()
        else {
            panic!()
        };
        world.domain.run(FailLogin { subject, permit, ip, origin: Origin::default() }).await.unwrap();
    }
    let fresh = Email::parse("untouched@example.com").unwrap();
    assert!(matches!(
        world.domain.run(BeginLogin { email: fresh.clone(), ip, origin: Origin::default() }).await.unwrap(),
        LoginStart::Wait { .. }
    ));
    let other_network = Some(IpPrefix::V4([198, 51, 101]));
    assert!(matches!(
        world.domain.run(BeginLogin { email: fresh, ip: other_network, origin: Origin::default() }).await.unwrap(),
        LoginStart::Permit { .. }
    ));

    let registrations =
        world_with(|cx| cx.throttle.registrations = WindowPolicy { limit: 2, window: Duration::from_secs(3600) });
    let outcomes: Vec<Admission> =
        futures::future::join_all((0..3).map(|_| registrations.domain.run(AdmitRegistration { ip })))
            .await
            .into_iter()
            .map(|a| a.unwrap())
            .collect();
    assert_eq!(outcomes.iter().filter(|a| **a == Admission::Allowed).count(), 2);
}

/// Sweeps every family once, a page of one at a time; returns how many were deleted.
async fn sweep_all(sweeper: &mut Sweeper) -> usize {
    let mut collected = 0;
    loop {
        let swept = sweeper.sweep(1).await.unwrap();
        collected += swept.collected;
        if swept.wrapped {
            return collected;
        }
    }
}

#[actix_rt::test]
async fn ended_families_are_collected_a_retention_later_and_live_ones_never() {
    let world = world();
    let retention = SessionPolicy::default().retention;
    let mut sweeper = Sweeper::new(Arc::clone(world.domain.registry().context()));
    let email = Email::parse("alice@example.com").unwrap();
    let logged_out = registered_session(&world).await;
    let LoginOutcome::Opened(mut active) = login(&world, &email).await else { panic!() };
    let LoginOutcome::Opened(idle) = login(&world, &email).await else { panic!() };
    assert_eq!(
        world
            .domain
            .run(Logout { user: logged_out.user, family: logged_out.family, origin: Origin::default() })
            .await
            .unwrap(),
        LogoutOutcome::LoggedOut
    );
    assert_eq!(sweep_all(&mut sweeper).await, 0, "nothing ended a retention ago");

    world.clock.advance(retention);
    assert_eq!(sweep_all(&mut sweeper).await, 1);
    let stored = |family| world.store.data.lock().contains_key(&keys::family(family));
    let indexed = |family| world.store.data.lock().contains_key(&keys::user_family(logged_out.user, family));
    assert!(!stored(logged_out.family) && !indexed(logged_out.family));
    // Its actor, still in memory, answers from the state it holds; a fresh one finds nothing.
    let refused = world
        .domain
        .run(Refresh { token: logged_out.refresh_token.clone(), device: PHONE, origin: Origin::default() })
        .await
        .unwrap();
    assert_eq!(refused, RefreshOutcome::Revoked);
    world.domain.registry().leadership_lost();
    assert_eq!(
        world
            .domain
            .run(Refresh { token: logged_out.refresh_token, device: PHONE, origin: Origin::default() })
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );
    // The idle session's actor is in memory when its family is deleted.
    let RefreshOutcome::Rotated(idle) = world
        .domain
        .run(Refresh { token: idle.refresh_token, device: PHONE, origin: Origin::default() })
        .await
        .unwrap()
    else {
        panic!()
    };

    // A day at a time for a week and more: the active session keeps rotating, the idle one
    // expires after its week and is collected a retention later.
    for _ in 0..10 {
        world.clock.advance(Duration::from_secs(24 * 3600));
        let RefreshOutcome::Rotated(next) = world
            .domain
            .run(Refresh { token: active.refresh_token, device: PHONE, origin: Origin::default() })
            .await
            .unwrap()
        else {
            panic!("the active session ended")
        };
        active = next;
        sweep_all(&mut sweeper).await;
    }
    assert!(stored(active.family) && indexed(active.family));
    assert!(!stored(idle.family) && !indexed(idle.family));
    // The idle session's actor still holds the expired state: logging it out writes, finds
    // the family deleted, and answers as for a family that never existed.
    assert_eq!(
        world.domain.run(Logout { user: idle.user, family: idle.family, origin: Origin::default() }).await.unwrap(),
        LogoutOutcome::NotFound
    );
}

#[actix_rt::test]
async fn a_family_that_changed_since_it_was_judged_is_left_for_the_next_pass() {
    let world = world();
    let mut sweeper = Sweeper::new(Arc::clone(world.domain.registry().context()));
    let grant = registered_session(&world).await;
    assert_eq!(
        world.domain.run(Logout { user: grant.user, family: grant.family, origin: Origin::default() }).await.unwrap(),
        LogoutOutcome::LoggedOut
    );
    world.clock.advance(SessionPolicy::default().retention);
    world.store.force_conflicts.store(1, Ordering::SeqCst);
    assert_eq!(sweeper.sweep(10).await.unwrap(), Swept { scanned: 1, collected: 0, wrapped: true });
    assert!(world.store.data.lock().contains_key(&keys::family(grant.family)));
    assert_eq!(sweeper.sweep(10).await.unwrap(), Swept { scanned: 1, collected: 1, wrapped: true });
    assert!(!world.store.data.lock().contains_key(&keys::family(grant.family)));
}

/// The actions recorded in the audit stream so far, in order.
fn audited(world: &World) -> Vec<String> {
    world
        .store
        .streams
        .lock()
        .get(tessera_actors::audit::STREAM)
        .map(|texts| {
            texts.iter().map(|t| serde_json::from_str::<serde_json::Value>(t).unwrap()["action"].to_string()).collect()
        })
        .unwrap_or_default()
}

#[actix_rt::test]
async fn every_acknowledged_security_decision_is_recorded_once_and_a_normal_refresh_not_at_all() {
    let world = world();
    let grant = registered_session(&world).await;
    assert_eq!(audited(&world), [r#""user.registered""#, r#""login.succeeded""#, r#""session.created""#]);

    let refreshes = (0..10).map(|_| {
        world.domain.run(Refresh { token: grant.refresh_token.clone(), device: PHONE, origin: Origin::default() })
    });
    let successors: Vec<_> = futures::future::join_all(refreshes).await;
    assert_eq!(audited(&world).len(), 3, "rotations and grace retries are not events");
    let (RefreshOutcome::Rotated(next) | RefreshOutcome::Grace(next)) = successors[0].clone().unwrap() else {
        panic!()
    };
    world.clock.advance(Duration::from_secs(60));
    let RefreshOutcome::Rotated(_) = world
        .domain
        .run(Refresh { token: next.refresh_token, device: PHONE, origin: Origin::default() })
        .await
        .unwrap()
    else {
        panic!()
    };
    let replay = Refresh { token: grant.refresh_token.clone(), device: PHONE, origin: Origin::default() };
    assert_eq!(world.domain.run(replay).await.unwrap(), RefreshOutcome::Replayed);
    let again = Refresh { token: grant.refresh_token, device: PHONE, origin: Origin::default() };
    assert_eq!(world.domain.run(again).await.unwrap(), RefreshOutcome::Revoked);
    assert_eq!(audited(&world)[3..], [r#""session.replay_detected""#, r#""session.revoked""#], "once, not per replay");

    let unknown = Email::parse("nobody@example.com").unwrap();
    let LoginStart::Permit { subject, permit, .. } =
        world.domain.run(BeginLogin { email: unknown, ip: None, origin: Origin::default() }).await.unwrap()
    else {
        panic!()
    };
    world.domain.run(FailLogin { subject, permit, ip: None, origin: Origin::default() }).await.unwrap();
    let stream = world.store.streams.lock().get(tessera_actors::audit::STREAM).unwrap().clone();
    let failure: serde_json::Value = serde_json::from_str(stream.last().unwrap()).unwrap();
    assert_eq!(failure["action"], "login.failed");
    assert_eq!(failure["changes"]["reason"], "unknown_account");
    assert_eq!(failure["user_id"], serde_json::Value::Null);
    assert!(!stream.last().unwrap().contains("nobody@example.com"), "the address is sealed: {failure}");
    assert!(!stream.iter().any(|t| t.contains("alice@example.com")), "so is the registered one");
}

fn key_set(world: &World) -> tessera_actors::keys::KeySet {
    tessera_actors::keys::KeySet::read(&*world.store).unwrap()
}

#[actix_rt::test]
async fn ten_concurrent_rotations_of_one_key_replace_it_once_and_all_answer_with_that_result() {
    use tessera_actors::keys::{Advanced, RotateKeys, RotateOutcome, advance};
    let world = world();
    let cx = world.domain.context().clone();
    let first = advance(&cx, "https://issuer.test").await.unwrap();
    assert_eq!(
        first,
        Some(Advanced::Provisioned { key: Some("k1".into()), issuer: Some("https://issuer.test".into()) })
    );

    let rotations = (0..10)
        .map(|i| world.domain.run(RotateKeys { target: "k1".into(), revoke: i % 2 == 0, origin: Origin::default() }));
    let outcomes = futures::future::join_all(rotations).await;

    let rotated: Vec<_> = outcomes.iter().filter(|o| matches!(o, Ok(RotateOutcome::Rotated { .. }))).collect();
    assert_eq!(rotated.len(), 1, "{outcomes:?}");
    let Ok(RotateOutcome::Rotated { active, replaced, .. }) = rotated[0] else { unreachable!() };
    assert_eq!(replaced, "k1");
    for outcome in &outcomes {
        match outcome {
            Ok(RotateOutcome::Rotated { .. }) => {}
            Ok(RotateOutcome::AlreadyRotated { active: seen }) => assert_eq!(seen, active),
            other => panic!("unexpected {other:?}"),
        }
    }
    let set = key_set(&world);
    assert_eq!(set.active.as_ref().map(|(kid, _)| kid.as_str()), Some(active.as_str()));
    assert!(set.keys.len() <= 2, "one new key; the old one retired or removed: {:?}", set.keys);
}

#[actix_rt::test]
async fn the_schedule_publishes_a_successor_activates_it_on_time_and_removes_the_retired_key_later() {
    use tessera_actors::domain::{KeyPolicy, KeyState};
    use tessera_actors::keys::{Advanced, advance};
    let world = world_with(|cx| {
        cx.signing.schedule = KeyPolicy {
            rotate_every: Duration::from_secs(100),
            prepublish: Duration::from_secs(10),
            retain_retired: Duration::from_secs(20),
        };
    });
    let cx = world.domain.context().clone();
    let mut seen = Vec::new();
    for _ in 0..(150 * 4) {
        if let Some(done) = advance(&cx, "https://issuer.test").await.unwrap() {
            seen.push((done, world.clock.now().0));
        }
        world.clock.advance(Duration::from_millis(250));
    }
    let start = seen[0].1;
    let at = |i: usize| (seen[i].1 - start) / 1000;
    assert!(matches!(seen[0].0, Advanced::Provisioned { .. }));
    assert_eq!((&seen[1].0, at(1)), (&Advanced::Published { kid: "k2".into() }, 90));
    assert_eq!((&seen[2].0, at(2)), (&Advanced::Activated { kid: "k2".into(), retired: "k1".into() }, 100));
    assert_eq!((&seen[3].0, at(3)), (&Advanced::Removed { kid: "k1".into() }, 120));
    assert_eq!(seen.len(), 4, "{seen:?}");
    let set = key_set(&world);
    let records = set.records();
    assert_eq!(records.state("k2"), KeyState::Active);
    assert_eq!(set.keys.len(), 1);
}

#[actix_rt::test]
async fn a_key_stored_before_the_lifecycle_is_read_as_active_since_its_creation_and_retired_by_a_rotation() {
    use tessera_actors::domain::KeyState;
    use tessera_actors::keys::{RotateKeys, RotateOutcome};
    use tessera_actors::record::{KeyLife, SigningKey};
    let world = world();
    let old = SigningKey {
        kid: "old".into(),
        public: [1; 32],
        nonce: [0; 24],
        sealed_private: vec![0; 48],
        created_at: Millis(5),
    };
    world.store.apply(
        Write::default()
            .put(keys::signing_key("old"), Record::SigningKey(old.clone()))
            .put(keys::ACTIVE_SIGNING_KEY, Record::ActiveSigningKey("old".into()))
            .put(keys::ISSUER, Record::Issuer("https://issuer.test".into())),
    );
    assert_eq!(key_set(&world).records().state("old"), KeyState::Active);

    let rotated = world.domain.run(RotateKeys { target: "old".into(), revoke: false, origin: Origin::default() }).await;
    let Ok(RotateOutcome::Rotated { active, .. }) = rotated else { panic!("{rotated:?}") };
    let set = key_set(&world);
    let (_, life, _) = set.keys.iter().find(|(k, _, _)| k.kid == "old").unwrap();
    let now = world.clock.now();
    assert_eq!(*life, KeyLife { activated_at: Some(Millis(5)), retired_at: Some(now) });
    assert_eq!(set.records().state(&active), KeyState::Active);
}
