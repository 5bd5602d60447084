//! Notices when this whole process was frozen (`SIGSTOP`, a suspended VM, a host swapping it
//! out) so the gateway does not act on requests that waited in a socket buffer meanwhile.
//!
//! Such a request's age is unknown: the kernel accepted it while nothing here ran. Its client
//! has probably given up and moved on; a refresh it carried may since have rotated twice
//! elsewhere, so running it now would look like a replay and end the session. Reads need no
//! guard (they answer from the replica as it is when they run, behind the staleness check).
//!
//! A ticker thread notes the monotonic time every [`TICK`]. A gap longer than [`THRESHOLD`]
//! between two ticks is a freeze. Commands are refused while either holds:
//! - the last tick is older than the threshold: the process has just woken and the ticker
//!   has not run yet, so a request read now may have waited through the freeze;
//! - a freeze ended less than [`QUARANTINE`] ago: requests read in the burst right after the
//!   wake-up may have waited through it.
//!
//! Between the two, no ordering of the ticker and a request handler after a wake-up lets a
//! request read during the burst through. Freezes shorter than the threshold go unnoticed;
//! they are indistinguishable from a slow network, which the refresh grace window absorbs.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the ticker notes the time.
pub const TICK: Duration = Duration::from_millis(10);
/// The shortest gap between ticks taken for a freeze: far above scheduling jitter, below the
/// Raft election timeout (a process starved this long already loses its leadership).
pub const THRESHOLD: Duration = Duration::from_millis(500);
/// How long after a freeze ends commands stay refused.
pub const QUARANTINE: Duration = Duration::from_secs(1);

const NEVER: u64 = u64::MAX;

/// A freeze this process just came out of; commands are refused until [`FreezeWatch::check`]
/// passes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this node was frozen and has just resumed; retry")]
pub struct Frozen;

/// The freeze detector's state, in milliseconds since `origin`.
#[derive(Debug)]
pub struct FreezeWatch {
    origin: Instant,
    last_tick: AtomicU64,
    thawed: AtomicU64,
}

impl FreezeWatch {
    fn new(origin: Instant) -> FreezeWatch {
        FreezeWatch { origin, last_tick: AtomicU64::new(0), thawed: AtomicU64::new(NEVER) }
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// Records a tick at `now`; returns how long the process was frozen, if it was.
    fn tick(&self, now: Instant) -> Option<Duration> {
        let now = self.millis(now);
        let gap = now.saturating_sub(self.last_tick.swap(now, Ordering::SeqCst));
        (gap > THRESHOLD.as_millis() as u64).then(|| {
            self.thawed.store(now, Ordering::SeqCst);
            Duration::from_millis(gap)
        })
    }

    fn check_at(&self, now: Instant) -> Result<(), Frozen> {
        let now = self.millis(now);
        let since_tick = now.saturating_sub(self.last_tick.load(Ordering::SeqCst));
        let thawed = self.thawed.load(Ordering::SeqCst);
        let quarantined = thawed != NEVER && now.saturating_sub(thawed) < QUARANTINE.as_millis() as u64;
        if since_tick > THRESHOLD.as_millis() as u64 || quarantined { Err(Frozen) } else { Ok(()) }
    }

    /// `Err` if this process may have been frozen while the request being handled waited.
    pub fn check(&self) -> Result<(), Frozen> {
        self.check_at(Instant::now())
    }
}

/// The process-wide detector (a freeze stops every node in the process); its ticker thread
/// starts on first use.
pub fn watch() -> &'static FreezeWatch {
    static WATCH: OnceLock<&'static FreezeWatch> = OnceLock::new();
    WATCH.get_or_init(|| {
        let watch: &'static FreezeWatch = Box::leak(Box::new(FreezeWatch::new(Instant::now())));
        let ticker = move || {
            loop {
                std::thread::sleep(TICK);
                if let Some(frozen) = watch.tick(Instant::now()) {
                    metrics::counter!("tessera_process_freezes_total").increment(1);
                    tracing::warn!(
                        frozen_ms = frozen.as_millis() as u64,
                        quarantine_ms = QUARANTINE.as_millis() as u64,
                        "this process was frozen; refusing commands that may have waited through it"
                    );
                }
            }
        };
        std::thread::Builder::new().name("freeze-watch".into()).spawn(ticker).expect("spawn the freeze watch thread");
        watch
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_regular_ticker_lets_commands_through() {
        let t0 = Instant::now();
        let watch = FreezeWatch::new(t0);
        for i in 1..=100 {
            assert_eq!(watch.tick(t0 + TICK * i), None);
            assert_eq!(watch.check_at(t0 + TICK * i + ms(3)), Ok(()));
        }
    }

    #[test]
    fn a_request_read_before_the_ticker_wakes_is_refused() {
        let t0 = Instant::now();
        let watch = FreezeWatch::new(t0);
        watch.tick(t0 + ms(10));
        // Woken after 3 s; the handler runs before the ticker.
        assert_eq!(watch.check_at(t0 + ms(3_010)), Err(Frozen));
    }

    #[test]
    fn requests_read_right_after_a_freeze_are_refused_until_the_quarantine_ends() {
        let t0 = Instant::now();
        let watch = FreezeWatch::new(t0);
        watch.tick(t0 + ms(10));
        assert_eq!(watch.tick(t0 + ms(3_010)), Some(ms(3_000)));
        assert_eq!(watch.check_at(t0 + ms(3_011)), Err(Frozen));
        let mut now = t0 + ms(3_010);
        while now < t0 + ms(3_010) + QUARANTINE {
            now += TICK;
            watch.tick(now);
            let expected = if now - (t0 + ms(3_010)) < QUARANTINE { Err(Frozen) } else { Ok(()) };
            assert_eq!(watch.check_at(now), expected);
        }
        assert_eq!(watch.check_at(now + ms(1)), Ok(()));
    }

    #[test]
    fn a_short_scheduling_delay_is_not_a_freeze() {
        let t0 = Instant::now();
        let watch = FreezeWatch::new(t0);
        watch.tick(t0 + ms(10));
        assert_eq!(watch.check_at(t0 + ms(10) + THRESHOLD), Ok(()));
        assert_eq!(watch.tick(t0 + ms(10) + THRESHOLD), None);
        assert_eq!(watch.check_at(t0 + ms(20) + THRESHOLD), Ok(()));
    }

    #[test]
    fn the_process_wide_watch_ticks() {
        let watch = watch();
        std::thread::sleep(TICK * 5);
        assert_eq!(watch.check(), Ok(()));
    }
}
