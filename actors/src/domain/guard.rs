//! The login guard: attempt permits, progressive delays and lockout for one account.
//!
//! No password is checked without a permit. A permit is granted only while the recorded
//! consecutive failures plus the permits still in flight stay under the threshold, and only
//! once the delay earned by the failures so far has passed. The node that holds a permit
//! verifies the password and reports the result; a permit never reported counts as a failure
//! once it expires (the guess may have been evaluated). So between two successes at most
//! `threshold` guesses are ever evaluated, however many requests arrive at however many nodes.
//!
//! ```text
//!            failures + in flight < threshold ┐
//!   request ─► and now ≥ last failure + delay ├─yes─► Granted(permit)
//!            and not locked                   ┘
//!      │ no                         report(permit, success) ─► failures := 0, locks := 0
//!      ▼                            report(permit, failure) ─► failures += 1; at threshold:
//!   Throttled(retry after)                                      locked for `lock`, locks += 1,
//!   Locked(until | forever)                                     forever after `permanent_after` locks
//!
//!   delay(f) = min(base · 2^(f−1), max)      1 s, 2 s, 4 s, 8 s, 16 s, 16 s … by default
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::time::{Millis, whole_seconds};

/// Hard ceiling on consecutive failures without a lock, whatever the configuration.
pub const MAX_THRESHOLD: u32 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Consecutive failures that lock the account (at most [`MAX_THRESHOLD`]).
    pub threshold: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub lock: Duration,
    /// After this many temporary locks, lock until an administrator unlocks.
    pub permanent_after: Option<u32>,
    /// A permit not reported within this time counts as a failure.
    pub permit_ttl: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            threshold: 10,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(16),
            lock: Duration::from_secs(3600),
            permanent_after: None,
            permit_ttl: Duration::from_secs(10),
        }
    }
}

impl LockoutPolicy {
    fn threshold(&self) -> u32 {
        self.threshold.clamp(1, MAX_THRESHOLD)
    }

    /// The wait earned by `failures` consecutive failures.
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let doublings = (failures - 1).min(30);
        self.base_delay.saturating_mul(1 << doublings).min(self.max_delay)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permit {
    pub id: u64,
    pub expires: Millis,
}

/// One account's guard state (replicated for real accounts).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginGuard {
    pub failures: u32,
    pub last_failure: Option<Millis>,
    pub locked_until: Option<Millis>,
    /// Temporary locks since the last success.
    pub locks: u32,
    pub locked_forever: bool,
    pub permits: Vec<Permit>,
    pub next_permit: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PermitVerdict {
    /// Commit `guard`, then verify the password under `permit`.
    Granted { guard: LoginGuard, permit: u64 },
    /// Too soon after a failure (or too many guesses in flight): try again later.
    Throttled { retry_after: Duration },
    /// Locked until `until`, or until an administrator unlocks (`None`).
    Locked { until: Option<Millis> },
}

impl PermitVerdict {
    /// How long to tell a refused client to wait before it asks again, in whole seconds (at
    /// least one; zero for a granted permit). The same answer whether the account exists or
    /// not; a permanent lock says to come back after a temporary lock's length.
    pub fn retry_after_secs(&self, now: Millis, policy: &LockoutPolicy) -> u64 {
        match self {
            PermitVerdict::Granted { .. } => 0,
            PermitVerdict::Throttled { retry_after } => whole_seconds(*retry_after),
            PermitVerdict::Locked { until: Some(until) } => whole_seconds(until.since(now)),
            PermitVerdict::Locked { until: None } => whole_seconds(policy.lock),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    Succeeded,
    Failed,
    /// The password was never checked (the hashing pool was saturated): the permit is
    /// returned without counting either way.
    Abandoned,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportVerdict {
    /// Commit `guard`. For a success, the session may be opened.
    Recorded { guard: LoginGuard },
    /// The permit is unknown or has expired (and was already counted as a failure).
    NoSuchPermit,
}

impl LoginGuard {
    /// Counts expired permits as failures and lifts a temporary lock that has run out.
    fn settled(&self, now: Millis, policy: &LockoutPolicy) -> LoginGuard {
        let mut guard = self.clone();
        let expired = guard.permits.iter().filter(|p| p.expires <= now).count() as u32;
        if expired > 0 {
            guard.permits.retain(|p| p.expires > now);
            for _ in 0..expired {
                guard.fail(now, policy);
            }
        }
        if guard.locked_until.is_some_and(|until| now >= until) {
            guard.locked_until = None;
            guard.failures = 0;
        }
        guard
    }

    fn fail(&mut self, now: Millis, policy: &LockoutPolicy) {
        if self.locked_forever || self.locked_until.is_some() {
            return;
        }
        self.failures += 1;
        self.last_failure = Some(now);
        if self.failures >= policy.threshold() {
            self.locks += 1;
            if policy.permanent_after.is_some_and(|n| self.locks >= n) {
                self.locked_forever = true;
            } else {
                self.locked_until = Some(now.saturating_add(policy.lock));
            }
        }
    }

    /// Whether (and when) a password may be checked now.
    pub fn request_permit(&self, now: Millis, policy: &LockoutPolicy) -> PermitVerdict {
        let mut guard = self.settled(now, policy);
        if guard.locked_forever {
            return PermitVerdict::Locked { until: None };
        }
        if let Some(until) = guard.locked_until {
            return PermitVerdict::Locked { until: Some(until) };
        }
        if let Some(last) = guard.last_failure.filter(|_| guard.failures > 0) {
            let ready = last.saturating_add(policy.delay(guard.failures));
            if now < ready {
                return PermitVerdict::Throttled { retry_after: ready.since(now) };
            }
        }
        if guard.failures + guard.permits.len() as u32 >= policy.threshold() {
            // Guesses in flight could reach the threshold: wait for them to be reported.
            let soonest = guard.permits.iter().map(|p| p.expires).min().unwrap_or(now);
            return PermitVerdict::Throttled { retry_after: soonest.since(now).max(Duration::from_secs(1)) };
        }
        let permit = guard.next_permit;
        guard.next_permit += 1;
        guard.permits.push(Permit { id: permit, expires: now.saturating_add(policy.permit_ttl) });
        PermitVerdict::Granted { guard, permit }
    }

    /// Records the outcome of the verification done under `permit`.
    pub fn report(&self, permit: u64, attempt: Attempt, now: Millis, policy: &LockoutPolicy) -> ReportVerdict {
        let mut guard = self.settled(now, policy);
        let before = guard.permits.len();
        guard.permits.retain(|p| p.id != permit);
        if guard.permits.len() == before {
            return ReportVerdict::NoSuchPermit;
        }
        match attempt {
            Attempt::Succeeded => {
                guard.failures = 0;
                guard.locks = 0;
                guard.last_failure = None;
            }
            Attempt::Failed => guard.fail(now, policy),
            Attempt::Abandoned => {}
        }
        ReportVerdict::Recorded { guard }
    }

    /// An administrator's unlock: a clean slate (permits in flight stay in flight).
    pub fn unlocked(&self) -> LoginGuard {
        LoginGuard { permits: self.permits.clone(), next_permit: self.next_permit, ..LoginGuard::default() }
    }

    pub fn is_locked(&self, now: Millis) -> bool {
        self.locked_forever || self.locked_until.is_some_and(|until| now < until)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const T0: Millis = Millis(1_000_000);

    fn at(ms: u64) -> Millis {
        Millis(T0.0 + ms)
    }

    fn grant(guard: &LoginGuard, now: Millis) -> (LoginGuard, u64) {
        match guard.request_permit(now, &LockoutPolicy::default()) {
            PermitVerdict::Granted { guard, permit } => (guard, permit),
            other => panic!("expected a permit at {now}, got {other:?}"),
        }
    }

    fn fail(guard: &LoginGuard, now: Millis) -> LoginGuard {
        let (guard, permit) = grant(guard, now);
        match guard.report(permit, Attempt::Failed, now, &LockoutPolicy::default()) {
            ReportVerdict::Recorded { guard } => guard,
            ReportVerdict::NoSuchPermit => panic!("permit vanished"),
        }
    }

    #[test]
    fn delays_double_from_one_second_to_sixteen() {
        let policy = LockoutPolicy::default();
        let delays: Vec<u64> = (0..8).map(|f| policy.delay(f).as_secs()).collect();
        assert_eq!(delays, vec![0, 1, 2, 4, 8, 16, 16, 16]);
    }

    #[test]
    fn each_failure_earns_a_longer_wait_then_a_lock() {
        let policy = LockoutPolicy::default();
        let mut guard = LoginGuard::default();
        let mut now = T0;
        for failures in 1..=9u32 {
            guard = fail(&guard, now);
            let wait = policy.delay(failures);
            assert_eq!(
                guard.request_permit(now, &policy),
                PermitVerdict::Throttled { retry_after: wait },
                "right after failure {failures}"
            );
            now = now.saturating_add(wait);
        }
        guard = fail(&guard, now);
        assert_eq!(
            guard.request_permit(now, &policy),
            PermitVerdict::Locked { until: Some(now.saturating_add(policy.lock)) }
        );
        // After the lock runs out the slate is clean.
        let later = now.saturating_add(policy.lock);
        assert!(matches!(guard.request_permit(later, &policy), PermitVerdict::Granted { .. }));
    }

    #[test]
    fn a_success_resets_failures_and_locks() {
        let policy = LockoutPolicy::default();
        let guard = fail(&fail(&LoginGuard::default(), T0), at(1_000));
        let (guard, permit) = grant(&guard, at(5_000));
        let ReportVerdict::Recorded { guard } = guard.report(permit, Attempt::Succeeded, at(5_000), &policy) else {
            panic!()
        };
        assert_eq!((guard.failures, guard.locks, guard.permits.len()), (0, 0, 0));
        assert!(matches!(guard.request_permit(at(5_001), &policy), PermitVerdict::Granted { .. }));
    }

    #[test]
    fn permits_in_flight_count_toward_the_threshold() {
        let policy = LockoutPolicy::default();
        let mut guard = LoginGuard::default();
        for _ in 0..10 {
            guard = grant(&guard, T0).0;
        }
        assert!(matches!(guard.request_permit(T0, &policy), PermitVerdict::Throttled { .. }));
    }

    #[test]
    fn an_unreported_permit_counts_as_a_failure_when_it_expires() {
        let policy = LockoutPolicy::default();
        let (guard, permit) = grant(&LoginGuard::default(), T0);
        let late = T0.saturating_add(policy.permit_ttl);
        assert_eq!(guard.report(permit, Attempt::Succeeded, late, &policy), ReportVerdict::NoSuchPermit);
        assert_eq!(
            guard.request_permit(late, &policy),
            PermitVerdict::Throttled { retry_after: Duration::from_secs(1) }
        );
    }

    #[test]
    fn repeated_locks_become_permanent_until_an_administrator_unlocks() {
        let policy = LockoutPolicy { threshold: 1, permanent_after: Some(2), ..LockoutPolicy::default() };
        let report_fail = |guard: &LoginGuard, now| match guard.request_permit(now, &policy) {
            PermitVerdict::Granted { guard, permit } => match guard.report(permit, Attempt::Failed, now, &policy) {
                ReportVerdict::Recorded { guard } => guard,
                ReportVerdict::NoSuchPermit => unreachable!(),
            },
            other => panic!("{other:?}"),
        };
        let guard = report_fail(&LoginGuard::default(), T0);
        let after_lock = T0.saturating_add(policy.lock);
        let guard = report_fail(&guard, after_lock);
        assert_eq!(
            guard.request_permit(after_lock.saturating_add(policy.lock * 10), &policy),
            PermitVerdict::Locked { until: None }
        );
        assert!(matches!(guard.unlocked().request_permit(after_lock, &policy), PermitVerdict::Granted { .. }));
    }

    #[test]
    fn the_threshold_is_capped_at_one_hundred() {
        let policy = LockoutPolicy { threshold: 1_000, base_delay: Duration::ZERO, ..LockoutPolicy::default() };
        let mut guard = LoginGuard::default();
        for i in 0..100 {
            match guard.request_permit(T0, &policy) {
                PermitVerdict::Granted { guard: g, permit } => {
                    let ReportVerdict::Recorded { guard: g } = g.report(permit, Attempt::Failed, T0, &policy) else {
                        panic!()
                    };
                    guard = g;
                }
                other => panic!("attempt {i}: {other:?}"),
            }
        }
        assert!(matches!(guard.request_permit(T0, &policy), PermitVerdict::Locked { .. }));
    }

    proptest! {
        /// Whatever the interleaving of requests, reports and time, the guesses evaluated
        /// (permits granted) between two successes never exceed the threshold.
        #[test]
        fn guesses_between_successes_never_exceed_the_threshold(
            steps in prop::collection::vec((0u8..4, 0u64..3_000), 1..200)
        ) {
            let policy = LockoutPolicy { permit_ttl: Duration::from_secs(2), ..LockoutPolicy::default() };
            let mut guard = LoginGuard::default();
            let mut now = T0;
            let mut outstanding: Vec<u64> = Vec::new();
            let mut granted_since_success = 0u32;
            for (action, wait) in steps {
                now = now.saturating_add(Duration::from_millis(wait));
                match action {
                    0 | 1 => if let PermitVerdict::Granted { guard: g, permit } = guard.request_permit(now, &policy) {
                        guard = g;
                        outstanding.push(permit);
                        granted_since_success += 1;
                        prop_assert!(granted_since_success <= policy.threshold, "{} guesses", granted_since_success);
                    },
                    2 => if let Some(permit) = outstanding.pop()
                        && let ReportVerdict::Recorded { guard: g } = guard.report(permit, Attempt::Failed, now, &policy)
                    {
                        guard = g;
                    },
                    _ => if let Some(permit) = outstanding.pop()
                        && let ReportVerdict::Recorded { guard: g } = guard.report(permit, Attempt::Succeeded, now, &policy)
                    {
                        guard = g;
                        granted_since_success = guard.permits.len() as u32;
                    },
                }
            }
        }
    }
}
