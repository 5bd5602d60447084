//! Session families and refresh-token rotation.
//!
//! A family is one login's lineage of refresh tokens. Its state names the current
//! generation; the token of generation *n* is recomputed from the family's salt, never stored.
//!
//! ```text
//!  presented token ──► MAC ok? ──no──► Invalid            (nothing changes)
//!                        │yes
//!                        ▼
//!                   revoked? ──yes──► Revoked             (terminal)
//!                        │no
//!                        ▼
//!             past idle/absolute? ──yes──► Expired
//!                        │no
//!                        ▼
//!          gen == current ─────────────► Rotated          current := gen + 1
//!          gen == current − 1, within
//!            grace, same device ───────► Grace            the SAME successor (current)
//!          gen <  current (otherwise) ──► Replayed         revoke the family
//!          gen >  current ─────────────► Invalid          never issued
//! ```
//!
//! Every answer is one of these values; the shell commits the state a verdict carries and
//! replies. At most one successor per token exists by construction: only the current
//! generation rotates, and the write is a compare-and-set on the family's version.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::device::DeviceHash;
use super::event::Event;
use super::ids::{FamilyId, Generation, UserId};
use super::ip::IpPrefix;
use super::refresh_token::{Pepper, RefreshToken};
use super::time::Millis;

/// How a session was authenticated (RFC 8176 `amr` values), as a small set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amr(pub u8);

impl Amr {
    pub const PASSWORD: Amr = Amr(1);
    pub const OTP: Amr = Amr(2);
    /// A recovery code (a look-up secret): named `mfa` (RFC 8176: multiple factors), since
    /// RFC 8176 has no value for it.
    pub const RECOVERY_CODE: Amr = Amr(4);

    pub fn with(self, other: Amr) -> Amr {
        Amr(self.0 | other.0)
    }

    /// A password and a second factor.
    pub fn is_multi_factor(self) -> bool {
        self.0 & Amr::PASSWORD.0 != 0 && self.0 & (Amr::OTP.0 | Amr::RECOVERY_CODE.0) != 0
    }

    /// The authentication level (`acr`): `aal2` for two factors, otherwise `aal1`.
    pub fn acr(self) -> &'static str {
        if self.is_multi_factor() { "aal2" } else { "aal1" }
    }

    const NAMES: [(Amr, &'static str); 3] = [(Amr::PASSWORD, "pwd"), (Amr::OTP, "otp"), (Amr::RECOVERY_CODE, "mfa")];

    /// The set named by `names` (unknown names are ignored).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Amr {
        names.into_iter().fold(Amr::default(), |amr, name| match Amr::NAMES.iter().find(|(_, n)| *n == name) {
            Some((flag, _)) => amr.with(*flag),
            None => amr,
        })
    }

    /// The RFC 8176 names, in a fixed order.
    pub fn names(self) -> Vec<&'static str> {
        Amr::NAMES.into_iter().filter(|(flag, _)| self.0 & flag.0 != 0).map(|(_, name)| name).collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    Logout,
    Replay,
    Cap,
    Admin,
    PasswordChange,
    /// "Log out everywhere".
    LogoutAll,
    /// "Log out every other session".
    LogoutOthers,
    /// A resource server revoked one of the session's tokens (RFC 7009).
    Revocation,
}

impl RevokeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Logout => "logout",
            RevokeReason::Replay => "replay",
            RevokeReason::Cap => "cap",
            RevokeReason::Admin => "admin",
            RevokeReason::PasswordChange => "password_change",
            RevokeReason::LogoutAll => "logout_all",
            RevokeReason::LogoutOthers => "logout_others",
            RevokeReason::Revocation => "revocation",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub at: Millis,
    pub reason: RevokeReason,
}

/// What a request from a device other than the session's does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceBinding {
    /// Refuse it; the session is left untouched.
    #[default]
    Reject,
    /// Allow it (the shell logs it).
    Log,
}

/// Lifetimes of a session family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    /// How long after a rotation the previous token may be retried (same device only).
    pub grace: Duration,
    /// A family not refreshed for this long expires.
    pub idle: Duration,
    /// A family expires this long after login, however active.
    pub absolute: Duration,
    pub binding: DeviceBinding,
    /// How long an ended family's record is kept before it is deleted. Longer than an access
    /// token lives, so every token the family issued has expired by then.
    pub retention: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            grace: Duration::from_secs(10),
            idle: Duration::from_secs(7 * 24 * 3600),
            absolute: Duration::from_secs(30 * 24 * 3600),
            binding: DeviceBinding::Reject,
            retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// A session family's replicated state. Appending fields is the only allowed change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Family {
    pub user: UserId,
    pub generation: Generation,
    pub salt: [u8; 16],
    pub created_at: Millis,
    pub auth_time: Millis,
    pub amr: Amr,
    /// When the current generation was issued (login or last rotation).
    pub rotated_at: Millis,
    /// The device that obtained the current generation.
    pub rotated_by: DeviceHash,
    /// The device and network the session was created from.
    pub login_device: DeviceHash,
    pub ip_prefix: Option<IpPrefix>,
    pub last_seen: Millis,
    pub idle_deadline: Millis,
    pub absolute_deadline: Millis,
    pub revoked: Option<Revocation>,
    /// A short, human description of the login device (e.g. the start of its User-Agent).
    pub device_label: String,
}

/// Everything a new session starts from.
#[derive(Clone, Debug)]
pub struct Opening {
    pub user: UserId,
    pub salt: [u8; 16],
    pub device: DeviceHash,
    pub ip_prefix: Option<IpPrefix>,
    pub amr: Amr,
    pub auth_time: Millis,
    pub device_label: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefreshVerdict {
    /// Commit `family`; its current generation is the successor.
    Rotated {
        family: Family,
    },
    /// A retry of the immediate parent: answer with the existing successor, write nothing.
    Grace {
        successor: Generation,
    },
    /// An older genuine token came back: commit the revoked `family`.
    Replayed {
        family: Family,
    },
    /// The current token, from a device other than the session's, under `Reject` binding:
    /// refused, nothing changes.
    ForeignDevice,
    Expired,
    Revoked,
    Invalid,
}

/// What a request to end a session on behalf of a user decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndVerdict {
    /// Commit `family`.
    Revoked {
        family: Family,
    },
    AlreadyRevoked,
    /// The session belongs to someone else: answered as if it did not exist.
    NotOwner,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokeVerdict {
    /// Commit `family`.
    Revoked {
        family: Family,
    },
    AlreadyRevoked,
}

impl RefreshVerdict {
    /// The security events of this verdict on session `id` (whose state before the refresh is
    /// `family`), for a token of generation `presented`.
    pub fn events(&self, id: FamilyId, family: &Family, presented: Generation) -> Vec<Event> {
        let (user, session) = (family.user, id);
        match self {
            RefreshVerdict::Replayed { .. } => vec![
                Event::ReplayDetected { user, session, presented },
                Event::SessionRevoked { user, session, reason: RevokeReason::Replay },
            ],
            RefreshVerdict::ForeignDevice => vec![Event::DeviceMismatchRefused { user, session }],
            // Allowed from another device under the `Log` binding: a metric and a log line, not
            // an audit event (like a normal refresh).
            RefreshVerdict::Rotated { .. }
            | RefreshVerdict::Grace { .. }
            | RefreshVerdict::Expired
            | RefreshVerdict::Revoked
            | RefreshVerdict::Invalid => Vec::new(),
        }
    }
}

/// Whether an access token of generation `generation` may still be honoured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessVerdict {
    Allowed,
    Revoked,
    /// The token names a generation this family never reached (e.g. state restored from an
    /// older snapshot).
    UnknownGeneration,
    Expired,
    /// A cookie-authenticated request from a device other than the session's (`Reject` binding).
    ForeignDevice,
}

impl Family {
    /// The state of a brand-new session, at generation 1.
    pub fn open(opening: Opening, now: Millis, policy: &SessionPolicy) -> Family {
        let absolute_deadline = now.saturating_add(policy.absolute);
        Family {
            user: opening.user,
            generation: Generation::FIRST,
            salt: opening.salt,
            created_at: now,
            auth_time: opening.auth_time,
            amr: opening.amr,
            rotated_at: now,
            rotated_by: opening.device,
            login_device: opening.device,
            ip_prefix: opening.ip_prefix,
            last_seen: now,
            idle_deadline: now.saturating_add(policy.idle).min(absolute_deadline),
            absolute_deadline,
            revoked: None,
            device_label: opening.device_label,
        }
    }

    pub fn is_live(&self, now: Millis) -> bool {
        self.revoked.is_none() && now < self.idle_deadline && now < self.absolute_deadline
    }

    /// Whether this family's record may be deleted at `now`: it ended (was revoked, or passed
    /// a deadline, which nothing extends once passed) at least `policy.retention` ago. Every
    /// token it issued was issued before it ended, so with a retention longer than an access
    /// token's lifetime none of them is honoured any more; a token naming a deleted family is
    /// refused as unknown. A live family is never collectable.
    pub fn collectable(&self, now: Millis, policy: &SessionPolicy) -> bool {
        let deadline = self.idle_deadline.min(self.absolute_deadline);
        let ended = self.revoked.map_or(deadline, |revocation| revocation.at.min(deadline));
        now >= ended.saturating_add(policy.retention)
    }

    /// Whether a refresh token of `generation` (already known to be genuine) would rotate now:
    /// the family is live and the token is its current one. What introspection calls active.
    pub fn honours_refresh(&self, generation: Generation, now: Millis) -> bool {
        self.is_live(now) && generation == self.generation
    }

    /// Decides what a presented refresh token does to this family (see the module diagram).
    pub fn refresh(
        &self,
        id: FamilyId,
        token: &RefreshToken,
        device: DeviceHash,
        now: Millis,
        policy: &SessionPolicy,
        pepper: &Pepper,
    ) -> RefreshVerdict {
        if token.family != id || !pepper.verifies(token, &self.salt) {
            return RefreshVerdict::Invalid;
        }
        if self.revoked.is_some() {
            return RefreshVerdict::Revoked;
        }
        if now >= self.idle_deadline || now >= self.absolute_deadline {
            return RefreshVerdict::Expired;
        }
        let presented = token.generation;
        if presented == self.generation {
            if device != self.login_device && policy.binding == DeviceBinding::Reject {
                return RefreshVerdict::ForeignDevice;
            }
            return RefreshVerdict::Rotated { family: self.advanced(now, device, policy) };
        }
        if presented > self.generation {
            return RefreshVerdict::Invalid;
        }
        let parent = presented.next() == self.generation;
        if parent && now.since(self.rotated_at) <= policy.grace && device == self.rotated_by {
            return RefreshVerdict::Grace { successor: self.generation };
        }
        RefreshVerdict::Replayed { family: self.revoked_at(now, RevokeReason::Replay) }
    }

    /// The next generation, issued now to `device`.
    fn advanced(&self, now: Millis, device: DeviceHash, policy: &SessionPolicy) -> Family {
        let mut next = self.clone();
        next.generation = self.generation.next();
        next.rotated_at = now;
        next.rotated_by = device;
        next.last_seen = now;
        next.idle_deadline = now.saturating_add(policy.idle).min(self.absolute_deadline);
        next
    }

    /// A new generation issued by the server itself (after a password change), so every
    /// refresh token handed out before is superseded. `None` if the family is not live.
    pub fn reissued(&self, now: Millis, device: DeviceHash, policy: &SessionPolicy) -> Option<Family> {
        self.is_live(now).then(|| self.advanced(now, device, policy))
    }

    /// The session after its user proved themselves again (step-up): `auth_time` is now and
    /// `amr` gains `proved`. The refresh lineage is unchanged (same generation, so the refresh
    /// token the client holds stays the current one). `None` if the family is not live.
    pub fn reauthenticated(&self, now: Millis, proved: Amr) -> Option<Family> {
        self.is_live(now).then(|| Family { auth_time: now, amr: self.amr.with(proved), last_seen: now, ..self.clone() })
    }

    /// Revokes the family for `reason`. Revocation is terminal: the first reason stays.
    pub fn revoke(&self, now: Millis, reason: RevokeReason) -> RevokeVerdict {
        match self.revoked {
            Some(_) => RevokeVerdict::AlreadyRevoked,
            None => RevokeVerdict::Revoked { family: self.revoked_at(now, reason) },
        }
    }

    /// Ends the session on behalf of `owner` (a logout, or one's own session list).
    pub fn end_for(&self, owner: UserId, now: Millis, reason: RevokeReason) -> EndVerdict {
        if self.user != owner {
            return EndVerdict::NotOwner;
        }
        match self.revoke(now, reason) {
            RevokeVerdict::Revoked { family } => EndVerdict::Revoked { family },
            RevokeVerdict::AlreadyRevoked => EndVerdict::AlreadyRevoked,
        }
    }

    fn revoked_at(&self, now: Millis, reason: RevokeReason) -> Family {
        Family { revoked: Some(Revocation { at: now, reason }), ..self.clone() }
    }

    /// Whether an access token issued at `generation` is still honoured. `device` is the
    /// requesting device when the token came from a cookie (bearer tokens are not bound).
    pub fn access(
        &self,
        generation: Generation,
        now: Millis,
        device: Option<DeviceHash>,
        binding: DeviceBinding,
    ) -> AccessVerdict {
        if self.revoked.is_some() {
            AccessVerdict::Revoked
        } else if generation > self.generation {
            AccessVerdict::UnknownGeneration
        } else if now >= self.absolute_deadline {
            AccessVerdict::Expired
        } else if device.is_some_and(|d| d != self.login_device) && binding == DeviceBinding::Reject {
            AccessVerdict::ForeignDevice
        } else {
            AccessVerdict::Allowed
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const ID: FamilyId = FamilyId([1; 16]);
    const PHONE: DeviceHash = DeviceHash([1; 16]);
    const LAPTOP: DeviceHash = DeviceHash([2; 16]);
    const T0: Millis = Millis(1_000_000);

    fn pepper() -> Pepper {
        Pepper::new(b"test pepper, long enough to count as a secret")
    }

    fn policy() -> SessionPolicy {
        SessionPolicy {
            grace: Duration::from_secs(10),
            idle: Duration::from_secs(3600),
            absolute: Duration::from_secs(86_400),
            binding: DeviceBinding::Log,
            retention: Duration::from_secs(7_200),
        }
    }

    fn fresh() -> Family {
        Family::open(
            Opening {
                user: UserId([5; 16]),
                salt: [7; 16],
                device: PHONE,
                ip_prefix: None,
                amr: Amr::PASSWORD,
                auth_time: T0,
                device_label: "test".into(),
            },
            T0,
            &policy(),
        )
    }

    fn token(family: &Family, generation: u64) -> RefreshToken {
        pepper().issue(ID, Generation(generation), &family.salt)
    }

    fn later(secs: u64) -> Millis {
        T0.saturating_add(Duration::from_secs(secs))
    }

    /// Rotates `family` at `now` from `device`, returning the new state.
    fn rotate(family: &Family, now: Millis, device: DeviceHash) -> Family {
        match family.refresh(ID, &token(family, family.generation.0), device, now, &policy(), &pepper()) {
            RefreshVerdict::Rotated { family } => family,
            other => panic!("expected a rotation, got {other:?}"),
        }
    }

    #[test]
    fn refresh_with_the_current_generation_rotates_to_the_next() {
        let family = fresh();
        let next = rotate(&family, later(5), PHONE);
        assert_eq!(next.generation, Generation(2));
        assert_eq!((next.rotated_at, next.rotated_by), (later(5), PHONE));
        assert_eq!(next.idle_deadline, later(5 + 3600));
        assert_eq!(next.absolute_deadline, family.absolute_deadline, "rotation never extends the absolute limit");
    }

    #[test]
    fn verdicts_table() {
        let g1 = fresh();
        let g2 = rotate(&g1, later(100), PHONE);
        let g3 = rotate(&g2, later(200), PHONE);
        let revoked = match g3.revoke(later(250), RevokeReason::Logout) {
            RevokeVerdict::Revoked { family } => family,
            RevokeVerdict::AlreadyRevoked => unreachable!(),
        };
        let forged = RefreshToken { mac: [0; 32], ..token(&g3, 3) };
        let wrong_family = RefreshToken { family: FamilyId([2; 16]), ..token(&g3, 3) };

        struct Case {
            name: &'static str,
            state: Family,
            token: RefreshToken,
            device: DeviceHash,
            now: Millis,
            expect: fn(&RefreshVerdict) -> bool,
        }
        let cases = vec![
            Case {
                name: "current",
                state: g3.clone(),
                token: token(&g3, 3),
                device: LAPTOP,
                now: later(201),
                expect: |v| matches!(v, RefreshVerdict::Rotated { family } if family.generation == Generation(4)),
            },
            Case {
                name: "parent within grace, same device",
                state: g3.clone(),
                token: token(&g3, 2),
                device: PHONE,
                now: later(205),
                expect: |v| *v == RefreshVerdict::Grace { successor: Generation(3) },
            },
            Case {
                name: "parent at the grace boundary",
                state: g3.clone(),
                token: token(&g3, 2),
                device: PHONE,
                now: later(210),
                expect: |v| *v == RefreshVerdict::Grace { successor: Generation(3) },
            },
            Case {
                name: "parent after grace",
                state: g3.clone(),
                token: token(&g3, 2),
                device: PHONE,
                now: later(211),
                expect: |v| matches!(v, RefreshVerdict::Replayed { family } if family.revoked.unwrap().reason == RevokeReason::Replay),
            },
            Case {
                name: "parent within grace, other device",
                state: g3.clone(),
                token: token(&g3, 2),
                device: LAPTOP,
                now: later(205),
                expect: |v| matches!(v, RefreshVerdict::Replayed { .. }),
            },
            Case {
                name: "grandparent within grace",
                state: g3.clone(),
                token: token(&g3, 1),
                device: PHONE,
                now: later(201),
                expect: |v| matches!(v, RefreshVerdict::Replayed { .. }),
            },
            Case {
                name: "bad MAC",
                state: g3.clone(),
                token: forged,
                device: PHONE,
                now: later(201),
                expect: |v| *v == RefreshVerdict::Invalid,
            },
            Case {
                name: "token of another family",
                state: g3.clone(),
                token: wrong_family,
                device: PHONE,
                now: later(201),
                expect: |v| *v == RefreshVerdict::Invalid,
            },
            Case {
                name: "future generation",
                state: g3.clone(),
                token: token(&g3, 4),
                device: PHONE,
                now: later(201),
                expect: |v| *v == RefreshVerdict::Invalid,
            },
            Case {
                name: "revoked family, current token",
                state: revoked.clone(),
                token: token(&revoked, 3),
                device: PHONE,
                now: later(251),
                expect: |v| *v == RefreshVerdict::Revoked,
            },
            Case {
                name: "revoked family, old token",
                state: revoked.clone(),
                token: token(&revoked, 1),
                device: PHONE,
                now: later(251),
                expect: |v| *v == RefreshVerdict::Revoked,
            },
            Case {
                name: "idle too long",
                state: g3.clone(),
                token: token(&g3, 3),
                device: PHONE,
                now: later(200 + 3600),
                expect: |v| *v == RefreshVerdict::Expired,
            },
            Case {
                name: "past the absolute deadline",
                state: g3.clone(),
                token: token(&g3, 3),
                device: PHONE,
                now: later(86_400),
                expect: |v| *v == RefreshVerdict::Expired,
            },
        ];
        for case in cases {
            let verdict = case.state.refresh(ID, &case.token, case.device, case.now, &policy(), &pepper());
            assert!((case.expect)(&verdict), "{}: got {verdict:?}", case.name);
        }
    }

    #[test]
    fn the_grandparent_after_a_grace_retry_is_a_replay() {
        let g1 = fresh();
        let g2 = rotate(&g1, later(1), PHONE);
        // The client lost the response and retries g1: same successor, nothing written.
        assert_eq!(
            g2.refresh(ID, &token(&g2, 1), PHONE, later(2), &policy(), &pepper()),
            RefreshVerdict::Grace { successor: Generation(2) }
        );
        let g3 = rotate(&g2, later(3), PHONE);
        assert!(matches!(
            g3.refresh(ID, &token(&g3, 1), PHONE, later(4), &policy(), &pepper()),
            RefreshVerdict::Replayed { .. }
        ));
    }

    #[test]
    fn revocation_is_terminal_and_keeps_its_first_reason() {
        let family = fresh();
        let RevokeVerdict::Revoked { family: revoked } = family.revoke(later(1), RevokeReason::Replay) else {
            panic!("first revocation revokes")
        };
        assert_eq!(revoked.revoke(later(2), RevokeReason::Logout), RevokeVerdict::AlreadyRevoked);
        assert_eq!(revoked.revoked.unwrap().reason, RevokeReason::Replay);
        assert_eq!(revoked.access(Generation(1), later(3), None, DeviceBinding::Reject), AccessVerdict::Revoked);
    }

    #[test]
    fn access_tokens_follow_the_family() {
        let g2 = rotate(&fresh(), later(1), PHONE);
        let access = |generation, at| g2.access(Generation(generation), at, None, DeviceBinding::Reject);
        assert_eq!(access(1, later(2)), AccessVerdict::Allowed);
        assert_eq!(access(2, later(2)), AccessVerdict::Allowed);
        assert_eq!(access(3, later(2)), AccessVerdict::UnknownGeneration);
        assert_eq!(access(2, later(86_400)), AccessVerdict::Expired);
    }

    #[test]
    fn a_bound_session_refuses_other_devices() {
        let family = fresh();
        let reject = SessionPolicy { binding: DeviceBinding::Reject, ..policy() };
        let current = token(&family, 1);
        assert_eq!(family.refresh(ID, &current, LAPTOP, later(1), &reject, &pepper()), RefreshVerdict::ForeignDevice);
        assert!(matches!(
            family.refresh(ID, &current, PHONE, later(1), &reject, &pepper()),
            RefreshVerdict::Rotated { .. }
        ));
        let logged = family.refresh(ID, &current, LAPTOP, later(1), &policy(), &pepper());
        assert!(matches!(logged, RefreshVerdict::Rotated { .. }), "the log policy allows it");
        let access = |device| family.access(Generation(1), later(1), device, DeviceBinding::Reject);
        assert_eq!(access(Some(LAPTOP)), AccessVerdict::ForeignDevice);
        assert_eq!(access(Some(PHONE)), AccessVerdict::Allowed);
        assert_eq!(access(None), AccessVerdict::Allowed, "bearer tokens are not bound");
        // An old genuine token from another device is still a replay: the theft is detected.
        let g3 = rotate(&rotate(&family, later(2), PHONE), later(3), PHONE);
        let replay = g3.refresh(ID, &token(&g3, 1), LAPTOP, later(4), &reject, &pepper());
        assert!(matches!(replay, RefreshVerdict::Replayed { .. }));
    }

    #[test]
    fn a_reissue_supersedes_every_earlier_token() {
        let g2 = fresh().reissued(later(5), PHONE, &policy()).unwrap();
        assert_eq!(g2.generation, Generation(2));
        let RevokeVerdict::Revoked { family: revoked } = g2.revoke(later(6), RevokeReason::Logout) else { panic!() };
        assert_eq!(revoked.reissued(later(7), PHONE, &policy()), None);
    }

    #[test]
    fn a_family_is_collectable_only_a_retention_after_it_ended() {
        let retention = policy().retention;
        let family = fresh();
        let idle_end = T0.saturating_add(policy().idle);
        assert!(!family.collectable(T0, &policy()));
        assert!(!family.collectable(idle_end, &policy()), "expired, but tokens may still be honoured");
        assert!(!family.collectable(Millis(idle_end.saturating_add(retention).0 - 1), &policy()));
        assert!(family.collectable(idle_end.saturating_add(retention), &policy()));

        // Rotation moves the idle deadline, and with it the earliest collection.
        let rotated = rotate(&family, later(3_000), PHONE);
        assert!(!rotated.collectable(idle_end.saturating_add(retention), &policy()));

        // A revoked family counts from its revocation.
        let RevokeVerdict::Revoked { family: revoked } = family.revoke(later(100), RevokeReason::Logout) else {
            panic!("a live family revokes")
        };
        assert!(!revoked.collectable(Millis(later(100).saturating_add(retention).0 - 1), &policy()));
        assert!(revoked.collectable(later(100).saturating_add(retention), &policy()));

        // However active, a family ends at its absolute deadline.
        let mut active = fresh();
        let mut now = T0;
        while now < T0.saturating_add(policy().absolute) {
            now = now.saturating_add(Duration::from_secs(1_800));
            if active.is_live(now) {
                active = rotate(&active, now, PHONE);
            }
        }
        let absolute_end = T0.saturating_add(policy().absolute);
        assert!(!active.collectable(Millis(absolute_end.saturating_add(retention).0 - 1), &policy()));
        assert!(active.collectable(absolute_end.saturating_add(retention), &policy()));
    }

    #[test]
    fn only_the_owner_ends_a_session() {
        let family = fresh();
        assert_eq!(family.end_for(UserId([6; 16]), later(1), RevokeReason::Logout), EndVerdict::NotOwner);
        let EndVerdict::Revoked { family: ended } = family.end_for(family.user, later(1), RevokeReason::Logout) else {
            panic!("the owner ends it")
        };
        assert_eq!(ended.end_for(family.user, later(2), RevokeReason::Logout), EndVerdict::AlreadyRevoked);
    }

    #[test]
    fn a_replay_and_a_foreign_device_are_security_events() {
        let g2 = rotate(&fresh(), later(1), PHONE);
        let replay = g2.refresh(ID, &token(&g2, 1), LAPTOP, later(20), &policy(), &pepper());
        let actions: Vec<_> = replay.events(ID, &g2, Generation(1)).iter().map(Event::action).collect();
        assert_eq!(actions, vec!["session.replay_detected", "session.revoked"]);
        let rotated = g2.refresh(ID, &token(&g2, 2), PHONE, later(21), &policy(), &pepper());
        assert!(rotated.events(ID, &g2, Generation(2)).is_empty(), "a normal refresh is a metric, not an event");
        let reject = SessionPolicy { binding: DeviceBinding::Reject, ..policy() };
        let elsewhere = g2.refresh(ID, &token(&g2, 2), LAPTOP, later(21), &reject, &pepper());
        assert_eq!(
            elsewhere.events(ID, &g2, Generation(2)),
            vec![Event::DeviceMismatchRefused { user: g2.user, session: ID }]
        );
    }

    #[test]
    fn amr_names_follow_rfc_8176() {
        assert_eq!(Amr::PASSWORD.names(), vec!["pwd"]);
        assert_eq!(Amr::PASSWORD.with(Amr::OTP).names(), vec!["pwd", "otp"]);
        assert_eq!(Amr::PASSWORD.with(Amr::RECOVERY_CODE).names(), vec!["pwd", "mfa"]);
        assert_eq!(Amr::from_names(["pwd", "otp", "x"]), Amr::PASSWORD.with(Amr::OTP));
        assert_eq!((Amr::PASSWORD.acr(), Amr::PASSWORD.with(Amr::OTP).acr()), ("aal1", "aal2"));
    }

    proptest! {
        /// Whatever sequence of tokens is presented, a family moves forward one generation
        /// per rotation, answers any token at most once with a *new* successor, and stays
        /// revoked once revoked.
        #[test]
        fn no_token_ever_gets_two_successors(steps in prop::collection::vec((0u64..6, 0u64..30, any::<bool>()), 1..60)) {
            let mut family = fresh();
            let mut now = T0;
            let mut successors: std::collections::BTreeMap<u64, u64> = Default::default();
            for (back, wait, other_device) in steps {
                now = now.saturating_add(Duration::from_secs(wait));
                let presented = family.generation.0.saturating_sub(back).max(1);
                let device = if other_device { LAPTOP } else { PHONE };
                let before = family.clone();
                match family.refresh(ID, &token(&family, presented), device, now, &policy(), &pepper()) {
                    RefreshVerdict::Rotated { family: next } => {
                        prop_assert_eq!(presented, before.generation.0);
                        prop_assert_eq!(next.generation.0, presented + 1);
                        let previous = successors.insert(presented, next.generation.0);
                        prop_assert!(previous.is_none(), "generation {} rotated twice", presented);
                        family = next;
                    }
                    RefreshVerdict::Grace { successor } => {
                        prop_assert_eq!(successors.get(&presented).copied(), Some(successor.0));
                    }
                    RefreshVerdict::Replayed { family: revoked } => {
                        prop_assert!(presented < before.generation.0);
                        prop_assert!(revoked.revoked.is_some());
                        family = revoked;
                    }
                    RefreshVerdict::Revoked => prop_assert!(before.revoked.is_some()),
                                        RefreshVerdict::Expired => prop_assert!(now >= before.idle_deadline || now >= before.absolute_deadline),
                    RefreshVerdict::ForeignDevice => prop_assert!(false, "the test policy logs foreign devices"),
                    RefreshVerdict::Invalid => prop_assert!(false, "genuine tokens are never invalid"),
                }
                if before.revoked.is_some() {
                    prop_assert_eq!(&family, &before, "a revoked family never changes");
                }
            }
        }

        /// A family that may be deleted is ended and issued its last token at least a
        /// retention ago, however its life went.
        #[test]
        fn a_collectable_family_issued_nothing_within_the_retention(
            steps in prop::collection::vec((0u64..4, 0u64..6_000, 0u8..10), 1..40),
        ) {
            let mut family = fresh();
            let mut now = T0;
            for (back, wait, action) in steps {
                now = now.saturating_add(Duration::from_secs(wait));
                if action == 0 {
                    if let RevokeVerdict::Revoked { family: revoked } = family.revoke(now, RevokeReason::Logout) {
                        family = revoked;
                    }
                } else {
                    let presented = family.generation.0.saturating_sub(back).max(1);
                    match family.refresh(ID, &token(&family, presented), PHONE, now, &policy(), &pepper()) {
                        RefreshVerdict::Rotated { family: next } | RefreshVerdict::Replayed { family: next } => family = next,
                        _ => {}
                    }
                }
                if family.collectable(now, &policy()) {
                    prop_assert!(!family.is_live(now));
                    prop_assert!(now >= family.rotated_at.saturating_add(policy().retention));
                    prop_assert!(now >= family.created_at.saturating_add(policy().retention));
                }
            }
        }
    }
}
