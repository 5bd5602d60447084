//! Where a webhook endpoint stands, and what an attempt to deliver to it changes.
//!
//! ```text
//!               delivered (2xx)                        failed, retries left
//!   ready ────────────────────────► ready (next)   ready ─────────────────────► waiting until retry_at
//!     ▲                                                                               │
//!     └───────────────────────────────── retry_at passed ─────────────────────────────┘
//!   failed, no retry left ──► disabled (until an administrator enables it again)
//! ```
//!
//! The cursor is replicated (`webhook/{name}`), so a new leader resumes where the old one
//! stopped; an event is delivered before its cursor moves, so delivery is at least once and
//! receivers deduplicate on `webhook-id`. Delays follow the schedule (about 5 s, 5 min,
//! 30 min, 2 h, 5 h, 10 h), spread by ±10% jitter so endpoints do not retry in lockstep,
//! unless the receiver's `Retry-After` asks for a particular delay.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Millis;

/// An endpoint's delivery state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookCursor {
    /// Every matching audit event up to this `seq` was delivered (the others were skipped).
    pub delivered: u64,
    /// Failed attempts at the event after `delivered`.
    pub failures: u32,
    /// The next attempt, not before (Unix milliseconds; 0: now).
    pub retry_at: u64,
    /// When the event at hand first failed.
    pub failing_since: Option<Millis>,
    /// No more attempts until an administrator enables the endpoint.
    pub disabled: bool,
}

/// What one attempt came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Not a 2xx, or no answer; `retry_after` if the receiver said when to come back.
    Failed {
        retry_after: Option<Duration>,
    },
}

/// What the cursor says to do at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Deliver the next matching event after `delivered`.
    Now,
    Later,
    Disabled,
}

impl WebhookCursor {
    /// A new endpoint starts at the trail's head: it receives events from now on.
    pub fn starting_at(head: u64) -> WebhookCursor {
        WebhookCursor { delivered: head, ..WebhookCursor::default() }
    }

    pub fn due(&self, now: Millis) -> Due {
        match (self.disabled, now.0 >= self.retry_at) {
            (true, _) => Due::Disabled,
            (false, true) => Due::Now,
            (false, false) => Due::Later,
        }
    }

    /// The cursor past events that do not match the endpoint, up to `seq`.
    pub fn skipped_to(&self, seq: u64) -> WebhookCursor {
        WebhookCursor { delivered: self.delivered.max(seq), ..self.clone() }
    }

    /// The cursor after an attempt at the event `seq`, at `now`. `jitter` in `[0, 1)` spreads
    /// the scheduled delay over ±10%.
    pub fn after(&self, seq: u64, attempt: Attempt, now: Millis, schedule: &[Duration], jitter: f64) -> WebhookCursor {
        match attempt {
            Attempt::Delivered => WebhookCursor { delivered: seq, ..WebhookCursor::default() },
            Attempt::Failed { retry_after } => {
                let failures = self.failures + 1;
                let failing_since = Some(self.failing_since.unwrap_or(now));
                match schedule.get(self.failures as usize) {
                    None => WebhookCursor { failures, failing_since, disabled: true, ..self.clone() },
                    Some(scheduled) => {
                        let spread = scheduled.mul_f64(0.9 + 0.2 * jitter.clamp(0.0, 1.0));
                        let delay = retry_after.unwrap_or(spread);
                        let retry_at = now.0.saturating_add(delay.as_millis() as u64);
                        WebhookCursor { failures, retry_at, failing_since, ..self.clone() }
                    }
                }
            }
        }
    }

    /// Enabled again by an administrator: the event at hand is tried at once.
    pub fn enabled(&self) -> WebhookCursor {
        WebhookCursor { delivered: self.delivered, ..WebhookCursor::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: [Duration; 2] = [Duration::from_secs(5), Duration::from_secs(300)];

    #[test]
    fn failures_back_off_by_the_schedule_then_disable_and_a_delivery_resets() {
        let start = WebhookCursor::starting_at(7);
        let failed = Attempt::Failed { retry_after: None };
        let once = start.after(8, failed, Millis(1_000), &SCHEDULE, 0.5);
        assert_eq!((once.delivered, once.failures, once.retry_at), (7, 1, 6_000));
        assert_eq!(once.due(Millis(5_999)), Due::Later);
        assert_eq!(once.due(Millis(6_000)), Due::Now);
        let twice = once.after(8, failed, Millis(6_000), &SCHEDULE, 0.0);
        assert_eq!(twice.retry_at, 6_000 + 270_000, "300 s less 10%");
        assert_eq!(twice.failing_since, Some(Millis(1_000)));
        let thrice = twice.after(8, failed, Millis(300_000), &SCHEDULE, 0.0);
        assert_eq!(thrice.due(Millis(u64::MAX)), Due::Disabled);
        assert_eq!(thrice.enabled().due(Millis(0)), Due::Now);
        assert_eq!(thrice.enabled().delivered, 7);
        assert_eq!(twice.after(8, Attempt::Delivered, Millis(9), &SCHEDULE, 0.0), WebhookCursor::starting_at(8));
    }

    #[test]
    fn retry_after_overrides_the_schedule_and_skipping_never_goes_back() {
        let asked = Attempt::Failed { retry_after: Some(Duration::from_secs(60)) };
        assert_eq!(WebhookCursor::default().after(1, asked, Millis(0), &SCHEDULE, 0.9).retry_at, 60_000);
        assert_eq!(WebhookCursor::starting_at(9).skipped_to(4).delivered, 9);
    }
}
