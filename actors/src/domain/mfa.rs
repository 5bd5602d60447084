//! A second factor: TOTP (RFC 6238) with recovery codes, and the challenge a login passes
//! through between its password and its code.
//!
//! ```text
//!   enrol ──► Pending (sealed secret, 10 min) ──confirm(code)──► Enrolled: totp, recovery codes
//!
//!   login: password right, MFA enrolled ──► Challenge (5 min, 5 wrong codes) ──code──► session
//!
//!   a code ──► its step must match within ±1 step of now, and lie after the last accepted step
//!   a recovery code ──► its keyed digest must be among the unused ones; it is then removed
//! ```
//!
//! The account's identity actor decides every one of these in one compare-and-set write of
//! the `mfa/{user}` record, so a step or a recovery code is accepted at most once per user,
//! whatever the concurrency and the node a request arrives at (invariant 6). The shell unseals
//! the secret (this module never sees a key) and draws ids, digests and nonces.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use totp_rs::{Algorithm, Builder};

use super::event::Event;
use super::family::Amr;
use super::ids::UserId;
use super::time::Millis;

/// RFC 6238 time step.
pub const STEP_SECS: u64 = 30;
/// Steps either side of now that a code may come from (clock drift).
pub const SKEW_STEPS: u8 = 1;
pub const DIGITS: usize = 6;
/// Recovery codes handed out per enrolment or regeneration.
pub const RECOVERY_CODES: usize = 10;
/// How long an unconfirmed enrolment waits for its first code.
pub const ENROLMENT_TTL: Duration = Duration::from_secs(600);
/// How long a login waits between its password and its code.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(300);
/// Wrong codes after which a challenge dies.
pub const MAX_WRONG_CODES: u8 = 5;
/// Challenges an account holds at once; a new one beyond this replaces the oldest.
pub const MAX_CHALLENGES: usize = 20;

/// A secret sealed with the key-encryption key (XChaCha20-Poly1305, bound to its owner and
/// factor); the store, its snapshots and the Raft log never hold it in the clear.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub nonce: [u8; 24],
    pub bytes: Vec<u8>,
}

/// A confirmed authenticator app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpFactor {
    pub id: [u8; 16],
    pub secret: Sealed,
    pub enrolled_at: Millis,
}

/// An enrolment waiting for its first code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingFactor {
    pub id: [u8; 16],
    pub secret: Sealed,
    pub expires_at: Millis,
}

/// A login whose password was right, waiting for its second factor. The client holds the
/// token; the record holds its SHA-256 digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub digest: [u8; 32],
    pub expires_at: Millis,
    pub wrong: u8,
    /// The credential the password was checked against: a password change meanwhile ends it.
    pub credential_version: u32,
}

/// An account's second factor, as replicated under `mfa/{user}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mfa {
    pub totp: Option<TotpFactor>,
    pub pending: Option<PendingFactor>,
    /// Keyed digests (HMAC-SHA-256) of the unused recovery codes.
    pub recovery: Vec<[u8; 32]>,
    /// The last TOTP step accepted: no code of this step or an earlier one is accepted again.
    pub last_step: u64,
    pub challenges: Vec<Challenge>,
}

/// The step of `now`.
pub fn step_of(now: Millis) -> u64 {
    now.as_secs() / STEP_SECS
}

/// What a presented TOTP code is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeVerdict {
    /// The code of `step`, within the window and after the last accepted step.
    Accepted {
        step: u64,
    },
    /// A code of the window, but of a step already accepted or before it.
    Replayed,
    Wrong,
}

/// Checks `code` against `secret` at `now`, given the last accepted step.
pub fn check_code(secret: &[u8], code: &str, now: Millis, last_step: u64) -> CodeVerdict {
    let totp = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS as u8)
        .with_step_duration(STEP_SECS)
        .with_skew(u16::from(SKEW_STEPS))
        .with_secret(secret.to_vec())
        .build_noncompliant();
    match totp.check(code.trim(), now.as_secs()) {
        Some(step) if step > last_step => CodeVerdict::Accepted { step },
        Some(_) => CodeVerdict::Replayed,
        None => CodeVerdict::Wrong,
    }
}

/// The second factor a client presents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proof {
    /// A TOTP code as typed.
    Code(String),
    /// The keyed digest of a recovery code as typed (normalised by the edge).
    RecoveryCode([u8; 32]),
}

/// What a presented factor does to the record.
#[allow(clippy::large_enum_variant)] // matched at once, as `login::LoginDecision`
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FactorVerdict {
    /// Accepted: `mfa` has the step or the recovery code consumed; `amr` names the factor.
    Accepted { mfa: Mfa, amr: Amr, events: Vec<Event> },
    /// Wrong, replayed or already used (answered the same way).
    Refused,
}

impl Mfa {
    pub fn enrolled(&self) -> bool {
        self.totp.is_some()
    }

    /// The record without anything expired at `now`.
    pub fn settled(&self, now: Millis) -> Mfa {
        let mut mfa = self.clone();
        mfa.pending = mfa.pending.filter(|p| now < p.expires_at);
        mfa.challenges.retain(|c| now < c.expires_at);
        mfa
    }

    /// A new enrolment, replacing any unconfirmed one; `None` if a factor is enrolled already.
    pub fn begin_enrolment(&self, id: [u8; 16], secret: Sealed, now: Millis) -> Option<Mfa> {
        if self.enrolled() {
            return None;
        }
        let pending = PendingFactor { id, secret, expires_at: now.saturating_add(ENROLMENT_TTL) };
        Some(Mfa { pending: Some(pending), ..self.settled(now) })
    }

    /// The pending enrolment `id`, if it has not expired.
    pub fn pending(&self, id: [u8; 16], now: Millis) -> Option<&PendingFactor> {
        self.pending.as_ref().filter(|p| p.id == id && now < p.expires_at)
    }

    /// Confirms the pending enrolment with its first code (`secret` is its unsealed secret):
    /// the factor is enrolled, the code's step used, and `recovery` the new recovery codes.
    pub fn confirm(
        &self,
        user: UserId,
        secret: &[u8],
        code: &str,
        recovery: Vec<[u8; 32]>,
        now: Millis,
    ) -> Option<(Mfa, Vec<Event>)> {
        let pending = self.pending.clone().filter(|p| now < p.expires_at)?;
        let CodeVerdict::Accepted { step } = check_code(secret, code, now, 0) else {
            return None;
        };
        let totp = TotpFactor { id: pending.id, secret: pending.secret, enrolled_at: now };
        let mfa = Mfa { totp: Some(totp), pending: None, recovery, last_step: step, ..self.settled(now) };
        Some((mfa, vec![Event::TotpEnrolled { user }]))
    }

    /// New recovery codes; the old ones stop working. `None` if no factor is enrolled.
    pub fn regenerate(&self, user: UserId, recovery: Vec<[u8; 32]>, now: Millis) -> Option<(Mfa, Vec<Event>)> {
        self.enrolled().then(|| (Mfa { recovery, ..self.settled(now) }, vec![Event::RecoveryCodesRegenerated { user }]))
    }

    /// Disables MFA: the factor, recovery codes, enrolment and challenges go. The last step is
    /// kept, so a code of the old secret's window is still refused after a re-enrolment.
    pub fn disable(&self, user: UserId) -> Option<(Mfa, Vec<Event>)> {
        self.enrolled()
            .then(|| (Mfa { last_step: self.last_step, ..Mfa::default() }, vec![Event::TotpDisabled { user }]))
    }

    /// A challenge for a login whose password (credential `credential_version`) was right.
    pub fn challenge(&self, digest: [u8; 32], credential_version: u32, now: Millis) -> Mfa {
        let mut mfa = self.settled(now);
        if mfa.challenges.len() >= MAX_CHALLENGES {
            mfa.challenges.sort_by_key(|c| c.expires_at);
            mfa.challenges.drain(..=mfa.challenges.len() - MAX_CHALLENGES);
        }
        mfa.challenges.push(Challenge {
            digest,
            expires_at: now.saturating_add(CHALLENGE_TTL),
            wrong: 0,
            credential_version,
        });
        mfa
    }

    /// The live challenge whose token has `digest`.
    pub fn find_challenge(&self, digest: [u8; 32], now: Millis) -> Option<&Challenge> {
        self.challenges.iter().find(|c| c.digest == digest && now < c.expires_at)
    }

    /// The record after a wrong code for challenge `digest`: one more wrong, and gone at the
    /// fifth.
    pub fn wrong_code(&self, digest: [u8; 32], now: Millis) -> Mfa {
        let mut mfa = self.settled(now);
        for challenge in mfa.challenges.iter_mut().filter(|c| c.digest == digest) {
            challenge.wrong = challenge.wrong.saturating_add(1);
        }
        mfa.challenges.retain(|c| c.wrong < MAX_WRONG_CODES);
        mfa
    }

    /// The record without challenge `digest` (it was passed).
    pub fn without_challenge(&self, digest: [u8; 32], now: Millis) -> Mfa {
        let mut mfa = self.settled(now);
        mfa.challenges.retain(|c| c.digest != digest);
        mfa
    }

    /// Checks a presented factor (`secret`: the enrolled factor's unsealed secret).
    pub fn accept(&self, user: UserId, secret: &[u8], proof: &Proof, now: Millis) -> FactorVerdict {
        if !self.enrolled() {
            return FactorVerdict::Refused;
        }
        match proof {
            Proof::Code(code) => match check_code(secret, code, now, self.last_step) {
                CodeVerdict::Accepted { step } => FactorVerdict::Accepted {
                    mfa: Mfa { last_step: step, ..self.settled(now) },
                    amr: Amr::OTP,
                    events: Vec::new(),
                },
                CodeVerdict::Replayed | CodeVerdict::Wrong => FactorVerdict::Refused,
            },
            Proof::RecoveryCode(digest) => {
                if !self.recovery.contains(digest) {
                    return FactorVerdict::Refused;
                }
                let mut mfa = self.settled(now);
                mfa.recovery.retain(|d| d != digest);
                let remaining = mfa.recovery.len() as u32;
                FactorVerdict::Accepted {
                    mfa,
                    amr: Amr::RECOVERY_CODE,
                    events: vec![Event::RecoveryCodeUsed { user, remaining }],
                }
            }
        }
    }
}

/// How fresh and how strong a session must be for a sensitive operation (RFC 9470).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepUp {
    pub max_age: Duration,
}

impl Default for StepUp {
    fn default() -> Self {
        StepUp { max_age: Duration::from_secs(300) }
    }
}

/// What a sensitive operation demands of the session besides freshness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepUpLevel {
    /// Two factors if the account has a second factor (password change, logging out others).
    AsEnrolled,
    /// Two factors (changes to the second factor itself).
    TwoFactors,
    /// Freshness only (enrolling the first factor).
    Fresh,
}

/// Why a session may not do a sensitive operation now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insufficient {
    /// Authenticated longer ago than the bound.
    Stale,
    /// Authenticated with one factor where two are needed.
    NeedsSecondFactor,
}

impl StepUp {
    /// Decides whether a session authenticated at `auth_time` with `amr` may do an operation
    /// of `level` for an account that has a second factor when `enrolled`.
    pub fn demand(
        &self,
        auth_time: Millis,
        amr: Amr,
        level: StepUpLevel,
        enrolled: bool,
        now: Millis,
    ) -> Result<(), Insufficient> {
        let two_factors = match level {
            StepUpLevel::TwoFactors => true,
            StepUpLevel::AsEnrolled => enrolled,
            StepUpLevel::Fresh => false,
        };
        if two_factors && !amr.is_multi_factor() {
            Err(Insufficient::NeedsSecondFactor)
        } else if now.since(auth_time) > self.max_age {
            Err(Insufficient::Stale)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: UserId = UserId([1; 16]);
    const SECRET: &[u8] = b"12345678901234567890";

    fn code_at(secret: &[u8], secs: u64, digits: usize) -> String {
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(digits as u8)
            .with_secret(secret.to_vec())
            .build_noncompliant()
            .generate(secs)
            .to_string()
    }

    fn sealed() -> Sealed {
        Sealed { nonce: [0; 24], bytes: vec![1, 2, 3] }
    }

    fn enrolled(now: Millis) -> Mfa {
        let mfa = Mfa::default().begin_enrolment([7; 16], sealed(), now).unwrap();
        let code = code_at(SECRET, now.as_secs(), DIGITS);
        mfa.confirm(USER, SECRET, &code, vec![[9; 32], [8; 32]], now).unwrap().0
    }

    #[test]
    fn rfc_6238_appendix_b_sha1_vectors() {
        for (secs, code) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code_at(SECRET, secs, 8), code, "T = {secs}");
        }
    }

    #[test]
    fn a_code_is_accepted_within_one_step_either_side_and_each_step_once() {
        let now = Millis(1_000_000_000_000);
        let step = step_of(now);
        let at = |secs: u64| code_at(SECRET, secs, DIGITS);
        let secs = now.as_secs();
        assert_eq!(check_code(SECRET, &at(secs), now, 0), CodeVerdict::Accepted { step });
        assert_eq!(check_code(SECRET, &at(secs - 30), now, 0), CodeVerdict::Accepted { step: step - 1 });
        assert_eq!(check_code(SECRET, &at(secs + 30), now, 0), CodeVerdict::Accepted { step: step + 1 });
        assert_eq!(check_code(SECRET, &at(secs - 60), now, 0), CodeVerdict::Wrong);
        assert_eq!(check_code(SECRET, &at(secs), now, step), CodeVerdict::Replayed);
        assert_eq!(check_code(SECRET, &at(secs - 30), now, step), CodeVerdict::Replayed, "before the last");
        assert_eq!(check_code(SECRET, "12345", now, 0), CodeVerdict::Wrong);
        assert_eq!(check_code(SECRET, "not a code", now, 0), CodeVerdict::Wrong);
    }

    #[test]
    fn the_confirming_code_is_used_and_a_code_is_accepted_once() {
        let now = Millis(1_700_000_000_000);
        let mfa = enrolled(now);
        assert!(mfa.enrolled() && mfa.pending.is_none());
        let code = Proof::Code(code_at(SECRET, now.as_secs(), DIGITS));
        assert_eq!(mfa.accept(USER, SECRET, &code, now), FactorVerdict::Refused, "the confirming step");
        let later = Millis(now.0 + 30_000);
        let next = Proof::Code(code_at(SECRET, later.as_secs(), DIGITS));
        let FactorVerdict::Accepted { mfa, amr, .. } = mfa.accept(USER, SECRET, &next, later) else { panic!() };
        assert_eq!(amr, Amr::OTP);
        assert_eq!(mfa.accept(USER, SECRET, &next, later), FactorVerdict::Refused);
    }

    #[test]
    fn a_recovery_code_is_accepted_once_and_regeneration_replaces_them() {
        let now = Millis(1_700_000_000_000);
        let mfa = enrolled(now);
        let FactorVerdict::Accepted { mfa, amr, events } = mfa.accept(USER, SECRET, &Proof::RecoveryCode([9; 32]), now)
        else {
            panic!()
        };
        assert_eq!((amr, mfa.recovery.len()), (Amr::RECOVERY_CODE, 1));
        assert_eq!(events, vec![Event::RecoveryCodeUsed { user: USER, remaining: 1 }]);
        assert_eq!(mfa.accept(USER, SECRET, &Proof::RecoveryCode([9; 32]), now), FactorVerdict::Refused);
        let (mfa, _) = mfa.regenerate(USER, vec![[5; 32]], now).unwrap();
        assert_eq!(mfa.accept(USER, SECRET, &Proof::RecoveryCode([8; 32]), now), FactorVerdict::Refused, "old");
        assert!(matches!(mfa.accept(USER, SECRET, &Proof::RecoveryCode([5; 32]), now), FactorVerdict::Accepted { .. }));
    }

    #[test]
    fn enrolments_expire_and_a_second_factor_cannot_be_enrolled_twice() {
        let now = Millis(1_700_000_000_000);
        let pending = Mfa::default().begin_enrolment([7; 16], sealed(), now).unwrap();
        assert!(pending.pending([7; 16], now).is_some());
        assert!(pending.pending([6; 16], now).is_none());
        let late = now.saturating_add(ENROLMENT_TTL);
        assert!(pending.pending([7; 16], late).is_none());
        let code = code_at(SECRET, late.as_secs(), DIGITS);
        assert!(pending.confirm(USER, SECRET, &code, vec![], late).is_none());
        let wrong = if code_at(SECRET, now.as_secs(), DIGITS) == "000000" { "000001" } else { "000000" };
        assert!(pending.confirm(USER, SECRET, wrong, vec![], now).is_none());
        assert!(enrolled(now).begin_enrolment([6; 16], sealed(), now).is_none());
        let (disabled, _) = enrolled(now).disable(USER).unwrap();
        assert!(!disabled.enrolled() && disabled.recovery.is_empty());
        assert_eq!(disabled.last_step, step_of(now), "the used step stays used");
    }

    #[test]
    fn a_challenge_dies_after_five_wrong_codes_or_when_it_expires_and_their_number_is_bounded() {
        let now = Millis(1_700_000_000_000);
        let mut mfa = enrolled(now).challenge([1; 32], 1, now);
        for _ in 0..MAX_WRONG_CODES - 1 {
            mfa = mfa.wrong_code([1; 32], now);
            assert!(mfa.find_challenge([1; 32], now).is_some());
        }
        assert!(mfa.wrong_code([1; 32], now).find_challenge([1; 32], now).is_none());
        assert!(mfa.find_challenge([1; 32], now.saturating_add(CHALLENGE_TTL)).is_none());
        let many =
            (0..=MAX_CHALLENGES as u8).fold(mfa, |mfa, n| mfa.challenge([n; 32], 1, Millis(now.0 + u64::from(n))));
        assert_eq!(many.challenges.len(), MAX_CHALLENGES);
        assert!(many.find_challenge([0; 32], now).is_none(), "the oldest went");
    }

    #[test]
    fn step_up_demands_freshness_and_a_second_factor_where_needed() {
        let policy = StepUp { max_age: Duration::from_secs(300) };
        let t = Millis(1_000_000);
        let later = t.saturating_add(Duration::from_secs(301));
        let (pwd, two) = (Amr::PASSWORD, Amr::PASSWORD.with(Amr::OTP));
        assert_eq!(policy.demand(t, pwd, StepUpLevel::AsEnrolled, false, t), Ok(()));
        assert_eq!(policy.demand(t, pwd, StepUpLevel::AsEnrolled, false, later), Err(Insufficient::Stale));
        assert_eq!(policy.demand(t, pwd, StepUpLevel::AsEnrolled, true, t), Err(Insufficient::NeedsSecondFactor));
        assert_eq!(policy.demand(t, pwd, StepUpLevel::TwoFactors, false, t), Err(Insufficient::NeedsSecondFactor));
        assert_eq!(policy.demand(t, pwd, StepUpLevel::Fresh, true, t), Ok(()));
        assert_eq!(policy.demand(t, two, StepUpLevel::TwoFactors, true, t), Ok(()));
        let recovery = Amr::PASSWORD.with(Amr::RECOVERY_CODE);
        assert_eq!(policy.demand(t, recovery, StepUpLevel::TwoFactors, true, later), Err(Insufficient::Stale));
    }
}
