//! Sliding-window limits per client network (credential stuffing, registration floods).
//!
//! A window remembers the times of the events it counts (at most `limit` of them, so memory is
//! bounded). An action is allowed while fewer than `limit` events fall inside the last
//! `window`; otherwise it may retry when the oldest of them leaves the window.

use std::collections::VecDeque;
use std::time::Duration;

use super::time::Millis;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowPolicy {
    pub limit: u32,
    pub window: Duration,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlidingWindow {
    events: VecDeque<Millis>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowVerdict {
    Allowed,
    Throttled { retry_after: Duration },
}

impl SlidingWindow {
    fn trimmed(&mut self, now: Millis, policy: &WindowPolicy) {
        while self.events.front().is_some_and(|t| now.since(*t) >= policy.window) {
            self.events.pop_front();
        }
    }

    /// Whether one more event is allowed now.
    pub fn check(&mut self, now: Millis, policy: &WindowPolicy) -> WindowVerdict {
        self.trimmed(now, policy);
        if (self.events.len() as u32) < policy.limit {
            return WindowVerdict::Allowed;
        }
        let oldest = *self.events.front().expect("limit > 0 events are held");
        WindowVerdict::Throttled {
            retry_after: oldest.saturating_add(policy.window).since(now).max(Duration::from_secs(1)),
        }
    }

    /// Counts one event.
    pub fn record(&mut self, now: Millis, policy: &WindowPolicy) {
        self.trimmed(now, policy);
        self.events.push_back(now);
        while self.events.len() > policy.limit as usize {
            self.events.pop_front();
        }
    }

    /// True when nothing in the window is left (the state can be forgotten).
    pub fn is_idle(&mut self, now: Millis, policy: &WindowPolicy) -> bool {
        self.trimmed(now, policy);
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_slides() {
        let policy = WindowPolicy { limit: 3, window: Duration::from_secs(60) };
        let mut window = SlidingWindow::default();
        for s in [0u64, 10, 20] {
            assert_eq!(window.check(Millis(s * 1000), &policy), WindowVerdict::Allowed);
            window.record(Millis(s * 1000), &policy);
        }
        assert_eq!(
            window.check(Millis(30_000), &policy),
            WindowVerdict::Throttled { retry_after: Duration::from_secs(30) }
        );
        assert_eq!(window.check(Millis(60_000), &policy), WindowVerdict::Allowed, "the first event left the window");
        assert!(!window.is_idle(Millis(79_999), &policy));
        assert!(window.is_idle(Millis(80_000), &policy));
    }
}
