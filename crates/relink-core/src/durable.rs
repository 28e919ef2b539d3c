//! Durable acknowledgements: a write is acknowledged only once enough
//! replicas confirmed it.
//!
//! Redis replicates asynchronously: a master answers `OK` before any
//! replica has the write, and a failover promotes a replica that may not
//! have it, discarding it for good. With a [`Durability`] the driver sends
//! every write (or pipeline) followed by `WAIT <replicas> <timeout>` in the
//! same round trip (or `WAITAOF 1 <replicas> <timeout>` when
//! [`aof`](Durability::aof) is asked for and the server has it), and asks
//! [`Durability::confirm`] what the answer means: confirmed (the reply is
//! passed on), or unconfirmed: the write was applied on the master but may
//! be lost by a failover, so its outcome is unknown to the caller, never
//! `OK`.

use core::time::Duration;

use crate::error::ConfigError;

/// How many replicas must confirm a write before it is acknowledged, and
/// how long to wait for them. Plain data; [`validate`](Self::validate)d.
///
/// Serde form: `{ replicas = 1, timeout = "500ms", aof = false }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Durability {
    /// Replicas that must have the write (1..=[`MAX_REPLICAS`](Self::MAX_REPLICAS)).
    pub replicas: u32,
    /// How long the server waits for them (`WAIT`'s timeout; at least
    /// 1 ms: `WAIT` with 0 would block forever).
    #[serde(with = "crate::duration::human")]
    pub timeout: Duration,
    /// Also wait for the write to be fsynced to the master's append-only
    /// file and the replicas' (`WAITAOF 1 <replicas>`, Redis 7.2 and later,
    /// with `appendonly yes` on every node). On a server without `WAITAOF`
    /// the driver falls back to `WAIT`, and says so.
    #[serde(default)]
    pub aof: bool,
}

/// What the server's answer to `WAIT` / `WAITAOF` means for the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Confirmation {
    /// Enough replicas have it: acknowledge the write.
    Confirmed,
    /// Too few replicas confirmed it within the timeout (or the master did
    /// not fsync it): applied on the master, but a failover may discard
    /// it. The caller must hear "outcome unknown", with the counts.
    Unconfirmed {
        /// Replicas that confirmed it.
        replicated: u32,
        /// Replicas required.
        required: u32,
    },
}

impl Durability {
    /// The most replicas that may be asked for.
    pub const MAX_REPLICAS: u32 = 1000;

    /// `replicas` must confirm within `timeout`.
    pub fn new(replicas: u32, timeout: Duration) -> Durability {
        Durability {
            replicas,
            timeout,
            aof: false,
        }
    }

    /// Sets [`aof`](Self::aof).
    pub fn aof(mut self, aof: bool) -> Durability {
        self.aof = aof;
        self
    }

    /// The timeout in whole milliseconds, as `WAIT` takes it (at least 1).
    pub fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=Self::MAX_REPLICAS).contains(&self.replicas) {
            return Err(ConfigError::invalid(
                "replicas",
                alloc::format!(
                    "must be between 1 and {}, got {}",
                    Self::MAX_REPLICAS,
                    self.replicas
                ),
            ));
        }
        if self.timeout < Duration::from_millis(1) {
            return Err(ConfigError::invalid(
                "timeout",
                "must be at least 1ms (WAIT with 0 would block forever)",
            ));
        }
        Ok(())
    }

    /// What the answer to `WAIT` (`replicated`, and `fsynced_locally`:
    /// `None`) or `WAITAOF` (its two counts: the master's fsync as
    /// `Some(n > 0)`, and the replicas') means.
    pub fn confirm(&self, replicated: u32, fsynced_locally: Option<bool>) -> Confirmation {
        if replicated >= self.replicas && fsynced_locally != Some(false) {
            Confirmation::Confirmed
        } else {
            Confirmation::Unconfirmed {
                replicated,
                required: self.replicas,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enough_replicas_confirm_a_write_and_fewer_leave_it_unknown() {
        let d = Durability::new(2, Duration::from_millis(100));
        assert_eq!(d.confirm(2, None), Confirmation::Confirmed);
        assert_eq!(d.confirm(3, Some(true)), Confirmation::Confirmed);
        assert_eq!(
            d.confirm(1, None),
            Confirmation::Unconfirmed {
                replicated: 1,
                required: 2
            }
        );
        // The master did not fsync it: not durable either.
        assert_eq!(
            d.confirm(2, Some(false)),
            Confirmation::Unconfirmed {
                replicated: 2,
                required: 2
            }
        );
    }

    #[test]
    fn bad_settings_name_the_field() {
        let zero = Durability::new(0, Duration::from_millis(100));
        assert_eq!(zero.validate().unwrap_err().field(), "replicas");
        let forever = Durability::new(1, Duration::ZERO);
        assert_eq!(forever.validate().unwrap_err().field(), "timeout");
        let ok = Durability::new(1, Duration::from_micros(1500));
        ok.validate().unwrap();
        assert_eq!(ok.timeout_ms(), 1);
    }
}
