//! Where a state follower stands, and how it gets back in step.
//!
//! A topic is a replicated key/value state plus a change log whose entries
//! carry contiguous sequence numbers `1, 2, 3, ...` within an *epoch* (a random
//! id made when the topic is created, and made anew when it is reset). The
//! [`SyncCursor`] is the follower's position: the epoch it follows and the last
//! sequence number it applied. It answers two questions:
//!
//! - [`SyncCursor::offer`]: here is update `(epoch, seq)`; apply it, or is it a
//!   duplicate, a gap, or from another epoch? Only `Apply` advances the cursor,
//!   so an update is applied exactly once and never out of order.
//! - [`SyncCursor::resume_plan`]: after a reconnect, given what the server's log
//!   holds now, catch up incrementally, or take a full snapshot (and why)?
//!
//! It knows nothing of Redis, streams or snapshots' contents: only numbers.

use core::fmt;

/// The identity of one incarnation of a topic. A topic deleted and created
/// again gets a new epoch, so a follower can tell its history was replaced.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A follower's position: the epoch it follows and the last sequence number it
/// applied. `seq == 0` means nothing applied yet.
///
/// It is a plain serde value: store it wherever you like and hand it back after
/// a process restart to resume where you left off.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(deny_unknown_fields)]
pub struct SyncCursor {
    epoch: Option<Epoch>,
    seq: u64,
}

/// The verdict on one offered update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
#[non_exhaustive]
pub enum Offer {
    /// The next update in order: apply it. The cursor has advanced to it.
    Apply,
    /// Already applied (`seq` ≤ the cursor): drop it.
    Duplicate,
    /// Updates are missing between the cursor and this one: do not apply;
    /// read again from `expected`.
    Gap {
        /// The sequence number that should have come next.
        expected: u64,
        /// The one that came.
        got: u64,
    },
    /// The update belongs to another incarnation of the topic: do not apply;
    /// take a full resync.
    WrongEpoch {
        /// The epoch the cursor follows.
        expected: Epoch,
        /// The epoch of the update.
        got: Epoch,
    },
}

/// What the server's copy of a topic holds right now, as read by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ServerPosition {
    /// The topic's current epoch.
    pub epoch: Epoch,
    /// The oldest sequence number still in the log; `None` when the log is empty.
    pub first: Option<u64>,
    /// The watermark: the sequence number the server's state reflects.
    pub last: u64,
}

/// Why a follower must take a full snapshot instead of reading the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResyncReason {
    /// The follower has no position yet.
    Initial,
    /// The log was trimmed past the follower's position.
    Trimmed,
    /// The topic was deleted and created again (a new epoch).
    EpochChanged,
    /// The server is behind the follower: it lost history (a restart without
    /// persistence, a failover to a lagging replica).
    ServerBehind,
}

impl ResyncReason {
    /// A short stable name for logs and bindings.
    pub fn as_str(self) -> &'static str {
        match self {
            ResyncReason::Initial => "initial",
            ResyncReason::Trimmed => "trimmed",
            ResyncReason::EpochChanged => "epoch_changed",
            ResyncReason::ServerBehind => "server_behind",
        }
    }
}

impl fmt::Display for ResyncReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a follower gets back in step with the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "plan")]
#[non_exhaustive]
pub enum ResumePlan {
    /// Nothing to fetch: the follower is at the server's watermark.
    UpToDate,
    /// Read the log from the entry after `after`; it is all still there.
    Incremental {
        /// The last sequence number the follower applied.
        after: u64,
    },
    /// Take a snapshot of state + watermark + epoch in one atomic read.
    FullResync {
        /// Why the log cannot be used.
        reason: ResyncReason,
    },
}

impl SyncCursor {
    /// A cursor with no position: its first plan is a full resync.
    pub const fn new() -> Self {
        SyncCursor {
            epoch: None,
            seq: 0,
        }
    }

    /// A cursor that has applied everything up to `seq` of `epoch`.
    pub const fn at(epoch: Epoch, seq: u64) -> Self {
        SyncCursor {
            epoch: Some(epoch),
            seq,
        }
    }

    /// A cursor at exactly this position, as its serde form
    /// (`{epoch, seq}`) describes one: for a binding that reads the
    /// position without serde (the WebAssembly one).
    pub const fn from_parts(epoch: Option<Epoch>, seq: u64) -> Self {
        SyncCursor { epoch, seq }
    }

    /// The epoch followed, if any yet.
    pub fn epoch(&self) -> Option<Epoch> {
        self.epoch
    }

    /// The last sequence number applied (0: none).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Judges update `(epoch, seq)`; on [`Offer::Apply`] the cursor advances to it.
    ///
    /// A cursor with no epoch yet accepts sequence number 1 of any epoch (the
    /// first update of a topic, applied to the empty state) and adopts that epoch.
    pub fn offer(&mut self, epoch: Epoch, seq: u64) -> Offer {
        match self.epoch {
            Some(current) if current != epoch => Offer::WrongEpoch {
                expected: current,
                got: epoch,
            },
            _ if seq <= self.seq => Offer::Duplicate,
            _ if seq != self.seq + 1 => Offer::Gap {
                expected: self.seq + 1,
                got: seq,
            },
            _ => {
                self.epoch = Some(epoch);
                self.seq = seq;
                Offer::Apply
            }
        }
    }

    /// Moves the cursor to a snapshot's position after a full resync.
    pub fn reset_to(&mut self, epoch: Epoch, seq: u64) {
        self.epoch = Some(epoch);
        self.seq = seq;
    }

    /// Decides how to resume against the server's current position.
    ///
    /// Incremental when the epoch matches and the log still holds the entry
    /// after the cursor; a full resync when there is no position yet, the
    /// epoch changed, the log was trimmed past the cursor, or the server's
    /// watermark is behind the cursor (waiting for it would wait forever for
    /// numbers that will never come again with the same contents).
    pub fn resume_plan(&self, server: &ServerPosition) -> ResumePlan {
        let Some(epoch) = self.epoch else {
            return ResumePlan::FullResync {
                reason: ResyncReason::Initial,
            };
        };
        if epoch != server.epoch {
            return ResumePlan::FullResync {
                reason: ResyncReason::EpochChanged,
            };
        }
        if server.last < self.seq {
            return ResumePlan::FullResync {
                reason: ResyncReason::ServerBehind,
            };
        }
        if server.last == self.seq {
            return ResumePlan::UpToDate;
        }
        match server.first {
            Some(first) if first <= self.seq + 1 => ResumePlan::Incremental { after: self.seq },
            _ => ResumePlan::FullResync {
                reason: ResyncReason::Trimmed,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: Epoch = Epoch(7);

    #[test]
    fn applies_in_order_exactly_once() {
        let mut c = SyncCursor::new();
        assert_eq!(c.offer(E, 1), Offer::Apply);
        assert_eq!(c.epoch(), Some(E));
        assert_eq!(c.offer(E, 1), Offer::Duplicate);
        assert_eq!(
            c.offer(E, 3),
            Offer::Gap {
                expected: 2,
                got: 3
            }
        );
        assert_eq!(c.seq(), 1);
        assert_eq!(c.offer(E, 2), Offer::Apply);
        assert_eq!(
            c.offer(Epoch(8), 3),
            Offer::WrongEpoch {
                expected: E,
                got: Epoch(8)
            }
        );
        assert_eq!(c.seq(), 2);
    }

    #[test]
    fn a_fresh_cursor_needs_the_first_update_or_a_snapshot() {
        let mut c = SyncCursor::new();
        assert_eq!(
            c.offer(E, 5),
            Offer::Gap {
                expected: 1,
                got: 5
            }
        );
        assert_eq!(c.offer(E, 0), Offer::Duplicate);
        let server = ServerPosition {
            epoch: E,
            first: Some(1),
            last: 4,
        };
        assert_eq!(
            c.resume_plan(&server),
            ResumePlan::FullResync {
                reason: ResyncReason::Initial
            }
        );
    }

    #[test]
    fn resume_plans() {
        let c = SyncCursor::at(E, 10);
        let pos = |first, last| ServerPosition {
            epoch: E,
            first,
            last,
        };
        assert_eq!(c.resume_plan(&pos(Some(1), 10)), ResumePlan::UpToDate);
        assert_eq!(c.resume_plan(&pos(None, 10)), ResumePlan::UpToDate);
        assert_eq!(
            c.resume_plan(&pos(Some(11), 20)),
            ResumePlan::Incremental { after: 10 }
        );
        assert_eq!(
            c.resume_plan(&pos(Some(5), 20)),
            ResumePlan::Incremental { after: 10 }
        );
        let trimmed = ResumePlan::FullResync {
            reason: ResyncReason::Trimmed,
        };
        assert_eq!(c.resume_plan(&pos(Some(12), 20)), trimmed);
        assert_eq!(c.resume_plan(&pos(None, 20)), trimmed);
        let behind = ResumePlan::FullResync {
            reason: ResyncReason::ServerBehind,
        };
        assert_eq!(c.resume_plan(&pos(Some(1), 9)), behind);
        assert_eq!(c.resume_plan(&pos(None, 0)), behind);
        let other = ServerPosition {
            epoch: Epoch(9),
            first: Some(1),
            last: 10,
        };
        assert_eq!(
            c.resume_plan(&other),
            ResumePlan::FullResync {
                reason: ResyncReason::EpochChanged
            }
        );
    }

    #[test]
    fn cursor_round_trips_as_plain_json() {
        let c = SyncCursor::at(Epoch(42), 1000);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"epoch":42,"seq":1000}"#);
        assert_eq!(serde_json::from_str::<SyncCursor>(&json).unwrap(), c);
        assert!(serde_json::from_str::<SyncCursor>(r#"{"epoch":1,"seq":2,"x":3}"#).is_err());
    }
}
