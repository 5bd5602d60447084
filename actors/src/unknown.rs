//! Guards for email addresses that have no account.
//!
//! A login for an unknown address must look exactly like one for a real account: same
//! permits, same delays, same lock, same answers, and a dummy hash verification. The rules are
//! the same `LoginGuard` rules; the state is kept in the leader's memory only (there is no
//! account to protect), bounded, and forgotten once it no longer affects any answer.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::domain::{Attempt, Email, LockoutPolicy, LoginGuard, Millis, PermitVerdict, ReportVerdict};

pub struct UnknownLogins {
    guards: Mutex<HashMap<Email, LoginGuard>>,
    capacity: usize,
}

impl UnknownLogins {
    pub fn new(capacity: usize) -> UnknownLogins {
        UnknownLogins { guards: Mutex::new(HashMap::new()), capacity: capacity.max(1) }
    }

    /// Same rule as for accounts; a granted permit is kept in memory.
    pub fn request_permit(&self, email: &Email, now: Millis, policy: &LockoutPolicy) -> PermitVerdict {
        let mut guards = self.guards.lock();
        let guard = guards.get(email).cloned().unwrap_or_default();
        let verdict = guard.request_permit(now, policy);
        if let PermitVerdict::Granted { guard, .. } = &verdict {
            if guards.len() >= self.capacity && !guards.contains_key(email) {
                Self::forget_idle(&mut guards, now, policy, self.capacity);
            }
            guards.insert(email.clone(), guard.clone());
        }
        verdict
    }

    pub fn report(&self, email: &Email, permit: u64, attempt: Attempt, now: Millis, policy: &LockoutPolicy) {
        let mut guards = self.guards.lock();
        if let Some(guard) = guards.get(email)
            && let ReportVerdict::Recorded { guard } = guard.report(permit, attempt, now, policy)
        {
            guards.insert(email.clone(), guard);
        }
    }

    /// Drops guards that no longer change any answer; if that is not enough, the oldest half.
    fn forget_idle(guards: &mut HashMap<Email, LoginGuard>, now: Millis, policy: &LockoutPolicy, capacity: usize) {
        let quiet = |g: &LoginGuard| {
            g.permits.is_empty() && !g.is_locked(now) && g.last_failure.is_none_or(|t| now.since(t) >= policy.max_delay)
        };
        guards.retain(|_, g| !quiet(g));
        if guards.len() >= capacity {
            let mut by_age: Vec<(Email, Millis)> =
                guards.iter().map(|(e, g)| (e.clone(), g.last_failure.unwrap_or_default())).collect();
            by_age.sort_by_key(|(_, t)| *t);
            for (email, _) in by_age.into_iter().take(capacity / 2 + 1) {
                guards.remove(&email);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.guards.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self) {
        self.guards.lock().clear();
    }
}
