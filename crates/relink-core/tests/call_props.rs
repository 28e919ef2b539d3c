//! Properties of `relink_core::call` under arbitrary valid policies and
//! arbitrary sequences of what a driver may see, played on a virtual clock
//! by a driver that does what each decision says (sleeps until a `Queue` or
//! `RetryAt` time or wakes earlier, waits at most a `Send`'s timeout for the
//! failure) and now and then wakes late.
//!
//! Checked on every step: the call never outlives its deadline, an attempt's
//! timeout is the policy's or what is left of the deadline, a write of
//! unknown fate is never sent again unless declared idempotent, retries stay
//! within `max_retries` and each one had the retry budget's consent, a failed
//! call stays failed with the same failure, its outcome says `unknown`
//! whenever an attempt may have been applied, and its reason follows from
//! what happened. Then the driver's clock is made to move (every wake-up at
//! the time asked for) and the call must end within a bound computed from
//! the policy.

use core::num::NonZeroU32;
use core::time::Duration;

use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use relink_core::backoff::{BackoffPolicy, Jitter, Strategy};
use relink_core::call::{Call, CallInput, CallPolicy, Decision, FailReason, Failure};
use relink_core::failure::{BusyReason, Delivery, FailureKind, Outcome};
use relink_core::time::ceil_millis;
use relink_core::Timestamp;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The busy backoff: any valid policy, with delays short enough that a
/// queue wait of seconds takes many looks.
fn busy_backoff() -> impl proptest::strategy::Strategy<Value = BackoffPolicy> {
    let strategy = prop_oneof![
        Just(Strategy::Constant),
        (1..=500u64).prop_map(|s| Strategy::Linear { step: ms(s) }),
        (0..=3_000u32).prop_map(|k| Strategy::Exponential {
            multiplier: f64::from(1000 + k) / 1000.0
        }),
    ];
    let jitter = prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
        (0..=1000u32).prop_map(|k| Jitter::Proportional {
            factor: f64::from(k) / 1000.0
        }),
    ];
    // The backoff's own limits: the call must not end because of them.
    let max_elapsed = prop_oneof![
        3 => (1..=5_000u64).prop_map(ms),
        1 => (1..=3_000u64).prop_map(Duration::from_micros),
    ];
    (
        strategy,
        jitter,
        1..=500u64,
        0..=2_000u64,
        proptest::option::weighted(0.2, 1..=5u32),
        proptest::option::weighted(0.2, max_elapsed),
    )
        .prop_map(|(strategy, jitter, initial, extra, attempts, elapsed)| {
            BackoffPolicy::default()
                .strategy(strategy)
                .jitter(jitter)
                .initial_delay(ms(initial))
                .max_delay(ms(initial + extra))
                .max_attempts(attempts.and_then(NonZeroU32::new))
                .max_elapsed(elapsed)
        })
}

/// A duration of at least 1 ms, sometimes not a whole number of ms.
fn positive_duration(max_ms: u64) -> impl proptest::strategy::Strategy<Value = Duration> {
    prop_oneof![
        4 => (1..=max_ms).prop_map(ms),
        1 => (1_000..=max_ms * 1_000).prop_map(Duration::from_micros),
    ]
}

fn policy() -> impl proptest::strategy::Strategy<Value = CallPolicy> {
    (
        proptest::option::weighted(0.6, positive_duration(10_000)),
        0..=5u32,
        0..=5u32,
        positive_duration(5_000),
        proptest::option::weighted(0.7, (1..=10_000u64).prop_map(ms)),
        prop_oneof![
            1 => Just(CallPolicy::default_busy_backoff()),
            3 => busy_backoff(),
        ],
    )
        .prop_map(
            |(queue_wait, retries, redirects, response_timeout, deadline, busy)| {
                CallPolicy::default()
                    .queue_wait(queue_wait)
                    .max_retries(retries)
                    .max_redirects(redirects)
                    .response_timeout(response_timeout)
                    .deadline(deadline)
                    .busy_backoff(busy)
            },
        )
        .prop_filter("validated policies only", |p| p.validate().is_ok())
}

fn failure_kind() -> impl proptest::strategy::Strategy<Value = FailureKind> {
    prop_oneof![
        Just(FailureKind::Io),
        Just(FailureKind::Closed),
        Just(FailureKind::Timeout),
        Just(FailureKind::Auth),
        Just(FailureKind::Protocol),
        Just(FailureKind::Moved),
        Just(FailureKind::Command),
        Just(FailureKind::ServerBusy(BusyReason::Loading)),
        Just(FailureKind::ServerBusy(BusyReason::Busy)),
        Just(FailureKind::ServerBusy(BusyReason::MasterDown)),
        Just(FailureKind::ServerBusy(BusyReason::ReadOnly)),
        Just(FailureKind::ServerBusy(BusyReason::TryAgain)),
    ]
}

fn delivery() -> impl proptest::strategy::Strategy<Value = Delivery> {
    prop_oneof![
        1 => Just(Delivery::NotSent),
        3 => Just(Delivery::MaybeSent),
        2 => Just(Delivery::Answered),
    ]
}

/// When the driver acts, relative to what the last decision asked for.
#[derive(Debug, Clone, Copy)]
enum When {
    /// At the time asked for (a timer at `until`/`at`, a reply that never
    /// came by the attempt's timeout).
    Exact,
    /// Earlier, at this fraction (per mille) of the way there: a connection
    /// came back, the reply failed early.
    Early(u16),
    /// A timer that fired this many ms late (waits only; a failure still
    /// comes by the attempt's timeout).
    Late(u64),
}

fn when() -> impl proptest::strategy::Strategy<Value = When> {
    prop_oneof![
        4 => Just(When::Exact),
        4 => (0..=1000u16).prop_map(When::Early),
        1 => (1..=500u64).prop_map(When::Late),
    ]
}

/// One step of the driver: the input is chosen by `pick` among those that
/// make sense after the last decision.
#[derive(Debug, Clone, Copy)]
struct Step {
    pick: u16,
    kind: FailureKind,
    delivery: Delivery,
    budget_allows: bool,
    when: When,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    (
        0..1000u16,
        failure_kind(),
        delivery(),
        proptest::bool::weighted(0.8),
        when(),
    )
        .prop_map(|(pick, kind, delivery, budget_allows, when)| Step {
            pick,
            kind,
            delivery,
            budget_allows,
            when,
        })
}

fn ms_of(d: Duration) -> u64 {
    ceil_millis(d)
}

/// The driver, checking every decision against the promises of the module.
struct Checker {
    policy: CallPolicy,
    call: Call,
    idempotent: bool,
    start: u64,
    now: u64,
    deadline: Option<u64>,
    /// The decision the driver is acting on (`None` before the first).
    last: Option<Decision>,
    /// The failure given, once given.
    ended: Option<Failure>,
    /// Did any reported failure leave the command's fate unknown?
    unknown_seen: bool,
    /// The kind of the last failure (a redirect past the limit is `TRYAGAIN`).
    last_kind: Option<FailureKind>,
    /// Retries and redirects as counted here from the decisions.
    retries: u32,
    redirects: u32,
    /// Every (time, input) fed, to replay.
    fed: Vec<(u64, CallInput)>,
    decisions: Vec<Decision>,
}

impl Checker {
    fn new(
        policy: CallPolicy,
        own_deadline: Option<Option<u64>>,
        idempotent: bool,
        seed: u64,
        start: u64,
    ) -> Checker {
        let now = Timestamp::from_millis(start);
        let call = match own_deadline {
            None => Call::new(&policy, now, idempotent, seed),
            Some(own) => Call::with_deadline(now, idempotent, own.map(ms), seed),
        };
        let deadline = match own_deadline {
            None => policy.deadline.map(|d| start.saturating_add(ms_of(d))),
            Some(own) => own.map(|d| start.saturating_add(d)),
        };
        Checker {
            policy,
            call,
            idempotent,
            start,
            now: start,
            deadline,
            last: None,
            ended: None,
            unknown_seen: false,
            last_kind: None,
            retries: 0,
            redirects: 0,
            fed: Vec::new(),
            decisions: Vec::new(),
        }
    }

    /// Moves the clock as the driver would after the last decision.
    fn advance(&mut self, when: When, exact_waits: bool) {
        let toward = |now: u64, target: u64, when: When| match when {
            When::Exact => target,
            When::Early(f) => now + (target.saturating_sub(now)) * u64::from(f) / 1000,
            When::Late(late) => target.saturating_add(late),
        };
        self.now = match self.last {
            None => self.now,
            Some(Decision::Queue { until: t } | Decision::RetryAt { at: t }) => {
                let when = if exact_waits { When::Exact } else { when };
                toward(self.now, t.as_millis().max(self.now), when)
            }
            Some(Decision::Send { timeout } | Decision::Redirect { timeout }) => {
                let by = self.now.saturating_add(ms_of(timeout));
                let when = if let When::Late(_) = when {
                    When::Exact
                } else {
                    when
                };
                toward(self.now, by, when)
            }
            // Whatever comes after the end, whenever.
            Some(_) => match when {
                When::Exact => self.now,
                When::Early(f) => self.now + u64::from(f),
                When::Late(late) => self.now.saturating_add(late * 100),
            },
        };
    }

    /// An input that makes sense after the last decision.
    fn input(&self, step: Step) -> CallInput {
        let p = step.pick;
        let failed = CallInput::Failed {
            kind: step.kind,
            delivery: step.delivery,
            budget_allows: step.budget_allows,
        };
        match self.last {
            // In flight: it failed, was redirected, or the client shut down.
            Some(Decision::Send { .. } | Decision::Redirect { .. }) => match p {
                0..=779 => failed,
                780..=989 => CallInput::Redirected,
                _ => CallInput::Shutdown,
            },
            // Waiting in the backlog: a connection, none, no slot after all.
            Some(Decision::Queue { .. }) => match p {
                0..=499 => CallInput::Connected,
                500..=939 => CallInput::NotConnected,
                940..=989 => CallInput::BacklogFull,
                _ => CallInput::Shutdown,
            },
            // About to (re)try: a connection or none.
            None | Some(Decision::RetryAt { .. }) => match p {
                0..=599 => CallInput::Connected,
                600..=989 => CallInput::NotConnected,
                _ => CallInput::Shutdown,
            },
            // Over: anything at all.
            Some(_) => match p % 6 {
                0 => CallInput::Connected,
                1 => CallInput::NotConnected,
                2 => CallInput::BacklogFull,
                3 => failed,
                4 => CallInput::Redirected,
                _ => CallInput::Shutdown,
            },
        }
    }

    fn step(&mut self, step: Step, exact_waits: bool) -> Result<Decision, TestCaseError> {
        self.advance(step.when, exact_waits);
        let input = self.input(step);
        let now = Timestamp::from_millis(self.now);
        let decision = self.call.decide(&self.policy, now, input);
        self.fed.push((self.now, input));
        self.decisions.push(decision);
        self.check(input, decision)?;
        self.last = Some(decision);
        Ok(decision)
    }

    fn check(&mut self, input: CallInput, decision: Decision) -> Result<(), TestCaseError> {
        let now = self.now;
        let p = &self.policy;
        prop_assert_eq!(
            self.call.is_done(),
            matches!(decision, Decision::Fail { .. }),
            "is_done() disagrees with {:?}",
            decision
        );
        if let Some(failure) = self.ended {
            prop_assert_eq!(
                decision,
                Decision::Fail { failure },
                "a failed call answered {:?} to {:?}",
                decision,
                input
            );
            return Ok(());
        }

        if let CallInput::Failed { kind, delivery, .. } = input {
            self.unknown_seen |= kind.outcome(delivery) == Outcome::Unknown;
            self.last_kind = Some(kind);
        }
        let past_redirect_limit =
            input == CallInput::Redirected && self.redirects >= p.max_redirects;
        if past_redirect_limit {
            self.last_kind = Some(FailureKind::ServerBusy(BusyReason::TryAgain));
        }

        // Never past the deadline.
        if let Some(deadline) = self.deadline {
            if now >= deadline {
                prop_assert!(
                    matches!(decision, Decision::Fail { .. }),
                    "at {} (deadline {}): {:?}",
                    now,
                    deadline,
                    decision
                );
            }
        }
        // A write whose fate is unknown is never sent again.
        if self.unknown_seen && !self.idempotent {
            prop_assert!(
                matches!(decision, Decision::Fail { .. }),
                "a non-idempotent write of unknown fate went on: {:?}",
                decision
            );
        }

        match decision {
            Decision::Send { timeout } | Decision::Redirect { timeout } => {
                let redirect = matches!(decision, Decision::Redirect { .. });
                let expected_input = if redirect {
                    CallInput::Redirected
                } else {
                    CallInput::Connected
                };
                prop_assert_eq!(input, expected_input, "{:?} after {:?}", decision, input);
                prop_assert!(!timeout.is_zero(), "a zero timeout");
                let mut expected = p.response_timeout;
                if let Some(deadline) = self.deadline {
                    expected = expected.min(ms(deadline - now));
                    prop_assert!(
                        now + ms_of(timeout) <= deadline,
                        "the attempt at {} with {:?} reaches past the deadline {}",
                        now,
                        timeout,
                        deadline
                    );
                }
                prop_assert_eq!(timeout, expected, "the attempt's timeout");
                if redirect {
                    self.redirects += 1;
                }
            }
            Decision::Queue { until } => {
                prop_assert!(p.queue_wait.is_some(), "a fail-fast call queued");
                let from_queue = matches!(
                    input,
                    CallInput::NotConnected
                        | CallInput::Failed {
                            delivery: Delivery::NotSent,
                            ..
                        }
                );
                prop_assert!(from_queue, "queued after {:?}", input);
                self.check_wait_time(until, true)?;
            }
            Decision::RetryAt { at } => {
                self.check_wait_time(at, false)?;
                let queueing = p.queue_wait.is_some();
                match input {
                    CallInput::Failed {
                        kind,
                        delivery,
                        budget_allows,
                    } => {
                        let refusal = kind.outcome(delivery) == Outcome::NotApplied
                            && !kind.kills_connection();
                        prop_assert!(
                            kind.retry_safe(delivery, self.idempotent),
                            "{:?} ({:?}) retried, idempotent: {}",
                            kind,
                            delivery,
                            self.idempotent
                        );
                        if !(queueing && refusal) {
                            // A retry, not a refusal waited out.
                            prop_assert!(budget_allows, "a retry the budget refused");
                            self.retries += 1;
                        } else {
                            prop_assert!(at.as_millis() > now, "a refusal is not hammered");
                        }
                    }
                    CallInput::Redirected => {
                        prop_assert!(past_redirect_limit, "RetryAt for a followable redirect");
                        // Past the limit the call counts as refused (TRYAGAIN):
                        // waited out when queueing, else a retry. The driver
                        // gives no budget answer for a redirect.
                        if !queueing {
                            self.retries += 1;
                        }
                    }
                    other => prop_assert!(false, "RetryAt after {:?}", other),
                }
            }
            Decision::Fail { failure } => {
                self.check_failure(input, failure)?;
                self.ended = Some(failure);
            }
            other => prop_assert!(false, "an unknown decision {:?}", other),
        }

        prop_assert_eq!(self.call.retries(), self.retries, "retries()");
        prop_assert!(self.retries <= p.max_retries, "{} retries", self.retries);
        prop_assert_eq!(self.call.redirects(), self.redirects, "redirects()");
        prop_assert!(self.redirects <= p.max_redirects);
        Ok(())
    }

    /// A `Queue.until` or `RetryAt.at`: not before now, not after the deadline.
    fn check_wait_time(&self, t: Timestamp, strictly_later: bool) -> Result<(), TestCaseError> {
        let t = t.as_millis();
        if strictly_later {
            prop_assert!(t > self.now, "a wait until {} at {}", t, self.now);
        } else {
            prop_assert!(t >= self.now, "a retry at {} at {}", t, self.now);
        }
        if let Some(deadline) = self.deadline {
            prop_assert!(
                t <= deadline,
                "a wait until {} past the deadline {}",
                t,
                deadline
            );
        }
        Ok(())
    }

    fn check_failure(&self, input: CallInput, failure: Failure) -> Result<(), TestCaseError> {
        let p = &self.policy;
        let expected_outcome = if failure.reason == FailReason::Rejected {
            Outcome::Rejected
        } else if self.unknown_seen {
            Outcome::Unknown
        } else {
            Outcome::NotApplied
        };
        prop_assert_eq!(failure.outcome, expected_outcome, "{:?}", failure);
        prop_assert_eq!(failure.kind, self.last_kind, "the failure's kind");

        // Inputs that end a call whatever the state.
        match input {
            CallInput::Shutdown => prop_assert_eq!(failure.reason, FailReason::Shutdown),
            CallInput::BacklogFull => prop_assert_eq!(failure.reason, FailReason::BacklogFull),
            CallInput::Failed {
                kind: FailureKind::Command,
                ..
            } => prop_assert_eq!(failure.reason, FailReason::Rejected),
            CallInput::Failed { kind, delivery, .. }
                if !kind.retry_safe(delivery, self.idempotent) =>
            {
                prop_assert_eq!(failure.reason, FailReason::NotRetrySafe)
            }
            _ => {}
        }

        // Every reason follows from what happened.
        let failed = match input {
            CallInput::Failed {
                kind,
                delivery,
                budget_allows,
            } => Some((kind, delivery, budget_allows)),
            _ => None,
        };
        match failure.reason {
            FailReason::Shutdown => prop_assert_eq!(input, CallInput::Shutdown),
            FailReason::BacklogFull => prop_assert_eq!(input, CallInput::BacklogFull),
            FailReason::Rejected => prop_assert!(
                matches!(failed, Some((FailureKind::Command, _, _))),
                "rejected after {:?}",
                input
            ),
            FailReason::NotRetrySafe => prop_assert!(
                failed.is_some_and(|(k, d, _)| !k.retry_safe(d, self.idempotent)),
                "not retry-safe after {:?}",
                input
            ),
            FailReason::NotConnected => {
                prop_assert!(p.queue_wait.is_none(), "not_connected while queueing");
                prop_assert!(
                    input == CallInput::NotConnected
                        || matches!(failed, Some((_, Delivery::NotSent, _))),
                    "not_connected after {:?}",
                    input
                );
            }
            FailReason::QueueTimeout => {
                let wait = p.queue_wait.map(ms_of);
                prop_assert!(
                    wait.is_some_and(|w| self.now - self.start >= w),
                    "queue_timeout {} ms into the call (queue_wait {:?})",
                    self.now - self.start,
                    p.queue_wait
                );
            }
            FailReason::DeadlineExceeded => {
                prop_assert!(
                    self.deadline.is_some(),
                    "deadline_exceeded without a deadline"
                )
            }
            FailReason::RetriesExhausted => prop_assert_eq!(self.retries, p.max_retries),
            FailReason::BudgetExhausted => prop_assert!(
                matches!(failed, Some((_, _, false))),
                "budget_exhausted after {:?}",
                input
            ),
            other => prop_assert!(false, "an unknown reason {:?}", other),
        }
        Ok(())
    }
}

/// With every wake-up on time, the call ends within this many decisions:
/// each wait moves the clock by at least 1 ms inside the queue wait; each
/// retry and redirect is counted; every send follows a wait, a retry or the
/// start.
fn decision_bound(p: &CallPolicy) -> usize {
    let waits = p.queue_wait.map_or(0, |w| ms_of(w) + 1) as usize;
    let retries = p.max_retries as usize;
    let redirects = p.max_redirects as usize;
    2 * waits + 2 * retries + redirects + 3
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn every_decision_keeps_the_promises(
        policy in policy(),
        own_deadline in proptest::option::weighted(
            0.2,
            proptest::option::weighted(0.8, 0..=10_000u64),
        ),
        idempotent in any::<bool>(),
        seed in any::<u64>(),
        start in prop_oneof![3 => 0..=DAY_MS, 1 => 0..=(1u64 << 53)],
        steps in proptest::collection::vec(step(), 1..150),
    ) {
        let mut c = Checker::new(policy.clone(), own_deadline, idempotent, seed, start);
        for &s in &steps {
            c.step(s, false)?;
        }
        // Now the clock moves: every wait runs to its end.
        let bound = decision_bound(&policy);
        for (n, &s) in steps.iter().cycle().enumerate() {
            if c.ended.is_some() {
                break;
            }
            prop_assert!(n < bound, "not over after {} decisions with the clock moving", bound);
            c.step(s, true)?;
        }
        // Over for good, whatever comes.
        for &s in steps.iter().take(5) {
            c.step(s, false)?;
        }

        // Same inputs, same decisions.
        let mut again = match own_deadline {
            None => Call::new(&policy, Timestamp::from_millis(start), idempotent, seed),
            Some(own) => Call::with_deadline(
                Timestamp::from_millis(start),
                idempotent,
                own.map(ms),
                seed,
            ),
        };
        for (i, &(at, input)) in c.fed.iter().enumerate() {
            let d = again.decide(&policy, Timestamp::from_millis(at), input);
            prop_assert_eq!(d, c.decisions[i], "replay of step {}", i);
        }
    }
}
