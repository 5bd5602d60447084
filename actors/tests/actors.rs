//! The actor shells over fake ports: serialization, compare-and-set commits, conflicts,
//! leadership changes.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;
use tessera_actors::domain::{DeviceHash, Email, RefreshToken, UserId};
use tessera_actors::ports::Write;
use tessera_actors::protocol::{
    ActorError, LoginOutcome, LoginStart, LogoutOutcome, RefreshOutcome, RegisterOutcome, SessionGrant,
};
use tessera_actors::record::{Record, keys};

const PHONE: DeviceHash = DeviceHash([1; 16]);

async fn registered_session(world: &World) -> SessionGrant {
    let user = UserId::from_random([9; 16]);
    let email = Email::parse("alice@example.com").unwrap();
    assert_eq!(
        world.sessions.register(user, email.clone(), "$argon2id$x".into()).await.unwrap(),
        RegisterOutcome::Registered
    );
    let LoginStart::Proceed { credential_version, .. } = world.sessions.begin_login(email).await.unwrap() else {
        panic!("registered user is known")
    };
    match world.sessions.complete_login(user, credential_version, PHONE, None).await.unwrap() {
        LoginOutcome::Opened(grant) => grant,
        LoginOutcome::Rejected => panic!("login rejected"),
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

    let refreshes = (0..10).map(|_| world.sessions.refresh(grant.refresh_token.clone(), PHONE));
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
    let RefreshOutcome::Rotated(g2) = world.sessions.refresh(g1.refresh_token.clone(), PHONE).await.unwrap() else {
        panic!()
    };
    world.clock.advance(Duration::from_secs(60));
    let RefreshOutcome::Rotated(g3) = world.sessions.refresh(g2.refresh_token.clone(), PHONE).await.unwrap() else {
        panic!()
    };

    assert_eq!(world.sessions.refresh(g1.refresh_token, PHONE).await.unwrap(), RefreshOutcome::Replayed);
    assert_eq!(world.sessions.refresh(g3.refresh_token, PHONE).await.unwrap(), RefreshOutcome::Revoked);
    assert!(world.store.data.lock().get(&keys::user_family(g1.user, g1.family)).is_none(), "index entry removed");
}

#[actix_rt::test]
async fn a_stale_actor_reloads_after_a_conflict_and_decides_again() {
    let world = world();
    let grant = registered_session(&world).await;
    // Activate the actor, then revoke the family behind its back (as a previous leader might).
    let RefreshOutcome::Rotated(next) = world.sessions.refresh(grant.refresh_token.clone(), PHONE).await.unwrap()
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
    assert_eq!(world.sessions.refresh(next.refresh_token, PHONE).await.unwrap(), RefreshOutcome::Revoked);
}

#[actix_rt::test]
async fn two_conflicts_in_a_row_are_reported_as_contention() {
    let world = world();
    let grant = registered_session(&world).await;
    world.store.force_conflicts.store(2, Ordering::SeqCst);
    let outcome = world.sessions.refresh(grant.refresh_token.clone(), PHONE).await;
    assert_eq!(outcome, Err(ActorError::Contention));
    // Nothing was lost: the token still rotates afterwards.
    assert!(matches!(world.sessions.refresh(grant.refresh_token, PHONE).await, Ok(RefreshOutcome::Rotated(_))));
}

#[actix_rt::test]
async fn concurrent_registrations_of_one_email_give_exactly_one_account() {
    let world = world();
    let attempts = (0..8u8).map(|i| {
        let email = Email::parse(if i % 2 == 0 { "Bob@Example.com" } else { " bob@example.COM " }).unwrap();
        world.sessions.register(UserId::from_random([i; 16]), email, "$argon2id$x".into())
    });
    let outcomes = futures::future::join_all(attempts).await;
    let registered = outcomes.iter().filter(|o| **o == Ok(RegisterOutcome::Registered)).count();
    let taken = outcomes.iter().filter(|o| **o == Ok(RegisterOutcome::EmailTaken)).count();
    assert_eq!((registered, taken), (1, 7));
}

#[actix_rt::test]
async fn a_login_against_a_replaced_credential_is_rejected() {
    let world = world();
    let user = UserId::from_random([3; 16]);
    let email = Email::parse("carol@example.com").unwrap();
    world.sessions.register(user, email.clone(), "$argon2id$old".into()).await.unwrap();
    let LoginStart::Proceed { credential_version, .. } = world.sessions.begin_login(email).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        world.sessions.complete_login(user, credential_version + 1, PHONE, None).await.unwrap(),
        LoginOutcome::Rejected
    );
    assert!(matches!(
        world.sessions.complete_login(user, credential_version, PHONE, None).await.unwrap(),
        LoginOutcome::Opened(_)
    ));
}

#[actix_rt::test]
async fn unknown_accounts_and_families_are_answered_without_activating_anything() {
    let world = world();
    let unknown = Email::parse("nobody@example.com").unwrap();
    assert_eq!(world.sessions.begin_login(unknown).await.unwrap(), LoginStart::Unknown);
    let forged =
        pepper().issue(tessera_actors::domain::FamilyId([4; 16]), tessera_actors::domain::Generation(1), &[0; 16]);
    assert_eq!(world.sessions.refresh(forged, PHONE).await.unwrap(), RefreshOutcome::Invalid);
    assert_eq!(world.sessions.registry().counts().families, 0);
}

#[actix_rt::test]
async fn logout_is_for_the_owner_only_and_logout_all_revokes_every_session() {
    let world = world();
    let first = registered_session(&world).await;
    let LoginOutcome::Opened(second) = world.sessions.complete_login(first.user, 1, PHONE, None).await.unwrap() else {
        panic!()
    };
    let stranger = UserId::from_random([8; 16]);
    assert_eq!(world.sessions.logout(stranger, first.family).await.unwrap(), LogoutOutcome::NotFound);
    assert_eq!(world.sessions.logout(first.user, first.family).await.unwrap(), LogoutOutcome::LoggedOut);
    assert_eq!(world.sessions.logout(first.user, first.family).await.unwrap(), LogoutOutcome::AlreadyLoggedOut);
    assert_eq!(world.sessions.logout_all(first.user).await.unwrap(), 1, "only the second was still live");
    assert_eq!(world.sessions.refresh(second.refresh_token, PHONE).await.unwrap(), RefreshOutcome::Revoked);
}

#[actix_rt::test]
async fn a_node_that_does_not_lead_refuses_and_a_new_term_reloads_every_actor() {
    let world = world();
    let grant = registered_session(&world).await;
    assert_eq!(world.store.confirmations.load(Ordering::SeqCst), 1, "one confirmation per term");

    *world.store.term.lock() = None;
    assert_eq!(world.sessions.refresh(grant.refresh_token.clone(), PHONE).await, Err(ActorError::NotLeader));

    *world.store.term.lock() = Some(2);
    assert!(matches!(world.sessions.refresh(grant.refresh_token, PHONE).await, Ok(RefreshOutcome::Rotated(_))));
    assert_eq!(world.store.confirmations.load(Ordering::SeqCst), 2);
    assert_eq!(world.sessions.registry().counts().identities, 0, "the new term dropped the old actors");
    assert_eq!(world.sessions.registry().passivate_idle(Duration::ZERO), 1, "only the family was activated since");
}
