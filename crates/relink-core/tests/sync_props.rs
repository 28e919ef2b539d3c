//! Properties of `relink_core::sync`: a follower fed duplicates, reorderings,
//! gaps and foreign epochs applies every update exactly once and in order,
//! and `resume_plan` never reads a log that cannot serve it.

use proptest::prelude::*;
use relink_core::sync::{Epoch, Offer, ResumePlan, ResyncReason, ServerPosition, SyncCursor};

const E: Epoch = Epoch(7);
const OTHER: Epoch = Epoch(8);

/// One delivery: a sequence number of 1..=N (or a bogus 0), sometimes from
/// another epoch.
fn offers(n: u64) -> impl proptest::strategy::Strategy<Value = Vec<(bool, u64)>> {
    proptest::collection::vec(
        (proptest::bool::weighted(0.05), 0..=n),
        0..(4 * n as usize + 8),
    )
}

fn scenario() -> impl proptest::strategy::Strategy<Value = (u64, bool, Vec<(bool, u64)>)> {
    (1..=60u64, any::<bool>()).prop_flat_map(|(n, fresh)| (Just(n), Just(fresh), offers(n)))
}

/// Offers one update, checks the verdict against the cursor before it, and
/// records what was applied.
fn offer(
    cursor: &mut SyncCursor,
    applied: &mut Vec<u64>,
    epoch: Epoch,
    seq: u64,
) -> Result<(), TestCaseError> {
    let before = *cursor;
    let verdict = cursor.offer(epoch, seq);
    match verdict {
        Offer::Apply => {
            prop_assert_eq!(
                Some(seq),
                before.seq().checked_add(1),
                "applied {} after {}",
                seq,
                before.seq()
            );
            prop_assert!(before.epoch().is_none_or(|e| e == epoch));
            prop_assert_eq!(cursor.seq(), seq);
            prop_assert_eq!(cursor.epoch(), Some(epoch));
            applied.push(seq);
        }
        other => {
            prop_assert_eq!(*cursor, before, "{:?} moved the cursor", other);
            match other {
                Offer::Duplicate => prop_assert!(seq <= before.seq()),
                Offer::Gap { expected, got } => {
                    prop_assert_eq!(Some(expected), before.seq().checked_add(1));
                    prop_assert_eq!(got, seq);
                    prop_assert!(seq > expected);
                }
                Offer::WrongEpoch { expected, got } => {
                    prop_assert_eq!(Some(expected), before.epoch());
                    prop_assert_eq!(got, epoch);
                    prop_assert_ne!(expected, got);
                }
                Offer::Apply => unreachable!(),
                _ => prop_assert!(false, "unknown verdict {:?}", other),
            }
            // The next update in order, from the followed epoch, is never turned away.
            prop_assert!(
                !(Some(seq) == before.seq().checked_add(1)
                    && before.epoch().is_none_or(|e| e == epoch)),
                "seq {} of {:?} refused at cursor {:?}: {:?}",
                seq,
                epoch,
                before,
                other
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn a_follower_applies_each_update_once_and_in_order((n, fresh, deliveries) in scenario()) {
        let mut cursor = if fresh { SyncCursor::new() } else { SyncCursor::at(E, 0) };
        let mut applied = Vec::new();
        for &(foreign, seq) in &deliveries {
            offer(&mut cursor, &mut applied, if foreign { OTHER } else { E }, seq)?;
        }
        // Applied: a prefix 1..=k, once each, in order.
        prop_assert!(applied.iter().copied().eq(1..=cursor.seq()), "applied {:?}", applied);
        if cursor.epoch() == Some(OTHER) {
            // A fresh cursor adopted the foreign epoch with its seq 1 (documented);
            // the followed topic is then the other one.
            return Ok(());
        }
        // Redelivery of the whole log in order completes it, whatever came before.
        for seq in 1..=n {
            offer(&mut cursor, &mut applied, E, seq)?;
        }
        prop_assert_eq!(cursor.seq(), n);
        prop_assert!(applied.iter().copied().eq(1..=n), "applied {:?}", applied);
    }

    #[test]
    fn extreme_sequence_numbers_do_not_overflow(
        start in prop_oneof![Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()],
        seq in prop_oneof![Just(u64::MAX), Just(0u64), any::<u64>()],
        server_last in prop_oneof![Just(u64::MAX), any::<u64>()],
        first in proptest::option::of(prop_oneof![Just(u64::MAX), any::<u64>()]),
    ) {
        let mut cursor = SyncCursor::at(E, start);
        let mut applied = Vec::new();
        offer(&mut cursor, &mut applied, E, seq)?;
        let _ = cursor.resume_plan(&ServerPosition { epoch: E, first, last: server_last });
    }

    #[test]
    fn resume_plans_only_read_a_log_that_holds_the_next_entry(
        cursor_epoch in proptest::option::of(prop_oneof![Just(E), Just(OTHER)]),
        cursor_seq in prop_oneof![4 => 0..=40u64, 1 => any::<u64>()],
        server_epoch in prop_oneof![Just(E), Just(OTHER)],
        first in proptest::option::of(prop_oneof![4 => 0..=45u64, 1 => any::<u64>()]),
        last in prop_oneof![4 => 0..=45u64, 1 => any::<u64>()],
    ) {
        let cursor = match cursor_epoch {
            Some(epoch) => SyncCursor::at(epoch, cursor_seq),
            None => SyncCursor::new(),
        };
        let server = ServerPosition { epoch: server_epoch, first, last };
        let plan = cursor.resume_plan(&server);
        let c = cursor.seq();
        let same_epoch = cursor.epoch() == Some(server.epoch);
        let log_holds_next = c < u64::MAX
            && first.is_some_and(|f| f <= c + 1)
            && last > c;
        match plan {
            ResumePlan::Incremental { after } => {
                prop_assert_eq!(after, c);
                prop_assert!(same_epoch, "incremental across epochs");
                prop_assert!(log_holds_next, "incremental from {} but log is {:?}..={}", c, first, last);
            }
            ResumePlan::UpToDate => {
                prop_assert!(same_epoch);
                prop_assert_eq!(last, c);
            }
            ResumePlan::FullResync { reason } => match reason {
                ResyncReason::Initial => prop_assert!(cursor.epoch().is_none()),
                ResyncReason::EpochChanged => {
                    prop_assert!(cursor.epoch().is_some() && !same_epoch)
                }
                ResyncReason::ServerBehind => prop_assert!(same_epoch && last < c),
                ResyncReason::Trimmed => {
                    prop_assert!(same_epoch && last > c && !log_holds_next)
                }
                other => prop_assert!(false, "unknown reason {:?}", other),
            },
            other => prop_assert!(false, "unknown plan {:?}", other),
        }
        // The iff directions.
        let behind = plan == ResumePlan::FullResync { reason: ResyncReason::ServerBehind };
        prop_assert_eq!(behind, same_epoch && last < c);
        prop_assert_eq!(plan == ResumePlan::UpToDate, same_epoch && last == c);
        prop_assert_eq!(matches!(plan, ResumePlan::Incremental { .. }), same_epoch && log_holds_next);
    }
}
