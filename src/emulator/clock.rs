//! The emulator's clock: the wall clock plus an offset that tests can move forward.
//!
//! CA lifetimes, certificate validity, CRL times and the 72-hour deletion run on this clock. Request
//! authentication uses the real wall clock, so clients keep signing with their own time after a test
//! has moved the emulator's clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;

/// Milliseconds since the Unix epoch, real time.
#[must_use]
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Converts epoch milliseconds to a time (clamped to the representable range).
#[must_use]
pub fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Converts a time to epoch milliseconds.
#[must_use]
pub fn to_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Largest clock offset: 100 years.
pub(crate) const MAX_OFFSET_MS: i64 = 100 * 365 * 86_400_000;

/// Wall clock plus an adjustable offset.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    pub(crate) fn now_ms(&self) -> i64 {
        wall_ms().saturating_add(self.offset_ms.load(Ordering::SeqCst))
    }

    pub(crate) fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }

    /// Moves the clock by `ms`, keeping the offset within ±[`MAX_OFFSET_MS`] so that dates stay far
    /// from the limits of X.509 and `time` arithmetic.
    pub(crate) fn advance(&self, ms: i64) {
        let _ = self
            .offset_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |o| {
                Some(o.saturating_add(ms).clamp(-MAX_OFFSET_MS, MAX_OFFSET_MS))
            });
    }

    pub(crate) fn reset(&self) {
        self.offset_ms.store(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_by_offsets_within_bounds() {
        let c = Clock::default();
        c.advance(86_400_000);
        assert_eq!(c.offset_ms(), 86_400_000);
        assert!(c.now_ms() - wall_ms() >= 86_400_000 - 1_000);
        c.advance(i64::MAX);
        assert_eq!(c.offset_ms(), MAX_OFFSET_MS);
        c.advance(i64::MIN);
        assert_eq!(c.offset_ms(), -MAX_OFFSET_MS);
        c.reset();
        assert_eq!(c.offset_ms(), 0);
        assert_eq!(to_ms(from_ms(1_700_000_000_123)), 1_700_000_000_123);
    }
}
