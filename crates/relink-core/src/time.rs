//! Time as the core sees it: a monotonic [`Timestamp`] whose epoch the driver
//! picks, and [`core::time::Duration`] for intervals.
//!
//! The core never reads a clock. `std::time::Instant` cannot be built by C or
//! JavaScript (and `Instant::now()` panics on `wasm32-unknown-unknown`), so a
//! timestamp is a plain count of milliseconds since an epoch of the driver's
//! choosing: process start, `performance.now()`'s origin, anything monotonic.
//!
//! Milliseconds, not nanoseconds: every deadline relink keeps (heartbeats,
//! timeouts, backoff delays) is coarser than that, and a millisecond count is
//! exact as a C `uint64_t` and as a JavaScript number, so every binding sees
//! the very same values (the golden vectors rely on it).

use core::fmt;
use core::ops::{Add, Sub};
use core::time::Duration;

/// A point on the driver's monotonic clock, in milliseconds since the driver's epoch.
///
/// Arithmetic saturates: a timestamp never wraps, and "earlier minus later" is
/// zero rather than a panic, so a driver whose clock goes backwards cannot make
/// the core misbehave.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The driver's epoch.
    pub const ZERO: Timestamp = Timestamp(0);
    /// The latest representable instant; used as "never".
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// A timestamp `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Timestamp(millis)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// `self + d` with `d` rounded up to whole milliseconds (a deadline is
    /// never earlier than asked), saturating at [`Timestamp::MAX`].
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(ceil_millis(d)))
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: Duration) -> Timestamp {
        self.saturating_add(rhs)
    }
}

impl Sub<Timestamp> for Timestamp {
    type Output = Duration;
    fn sub(self, rhs: Timestamp) -> Duration {
        self.saturating_since(rhs)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{}ms", self.as_millis())
    }
}

/// `d` in whole milliseconds, rounded up, saturating at `u64::MAX`.
pub fn ceil_millis(d: Duration) -> u64 {
    let ms = d.as_millis() + u128::from(d.subsec_nanos() % 1_000_000 != 0);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// Serde for a [`Duration`] as a whole number of milliseconds (truncating),
/// the form durations take in events and golden vectors.
pub mod millis {
    use core::time::Duration;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes `d` as whole milliseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Reads whole milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        let t = Timestamp::from_millis(5);
        assert_eq!(Timestamp::ZERO - t, Duration::ZERO);
        assert_eq!(t - Timestamp::ZERO, Duration::from_millis(5));
        assert_eq!(Timestamp::MAX + Duration::from_secs(1), Timestamp::MAX);
        assert_eq!(t + Duration::from_micros(1), Timestamp::from_millis(6));
        assert_eq!(t + Duration::from_millis(2), Timestamp::from_millis(7));
        assert_eq!(ceil_millis(Duration::MAX), u64::MAX);
    }
}
