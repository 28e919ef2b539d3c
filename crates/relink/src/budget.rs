//! The retry budget as the hot paths share it: the core's [`RetryBudget`]
//! behind a lock that successes never wait on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use relink_core::budget::{RetryBudget, RetryBudgetConfig};

/// One client's retry budget, shared by every command it runs.
#[derive(Debug)]
pub(crate) struct SharedBudget {
    budget: Mutex<RetryBudget>,
    /// The bucket is at its cap (a hint, so successes skip the lock).
    full: AtomicBool,
}

impl SharedBudget {
    pub(crate) fn new(config: RetryBudgetConfig) -> Self {
        SharedBudget {
            budget: Mutex::new(RetryBudget::new(config)),
            full: AtomicBool::new(true),
        }
    }

    /// A success refills the bucket without ever waiting: one that finds it
    /// full (the usual case) touches nothing; one that finds it busy goes
    /// uncounted, which only makes it refill a little slower (the safe way).
    pub(crate) fn refill(&self) {
        if self.full.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut budget) = self.budget.try_lock() {
            let before = budget.tokens_milli();
            budget.on_success();
            self.full
                .store(budget.tokens_milli() == before, Ordering::Relaxed);
        }
    }

    /// A failure (of a command or of a reconnect) drains the bucket; returns
    /// whether a retry may follow.
    pub(crate) fn drain(&self) -> bool {
        // Nothing that runs under this lock can panic, so it is never poisoned.
        let mut budget = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        budget.on_failure();
        self.full.store(false, Ordering::Relaxed);
        budget.may_retry()
    }
}

/// A pipeline's replies, as `ConnectionLike::req_packed_commands` returns them.
pub(crate) fn into_values(value: redis::Value) -> Vec<redis::Value> {
    match value {
        redis::Value::Array(values) => values,
        other => vec![other],
    }
}
