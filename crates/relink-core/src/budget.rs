//! The retry budget: gRPC's retry throttling, so that a fleet of clients
//! cannot turn an outage into a retry storm.
//!
//! Every failure drains one token; every success refills `token_ratio` of a
//! token; retries are allowed only while more than half of `max_tokens`
//! remain. While a server is healthy the bucket stays full and retries flow;
//! when most requests fail, retries stop until successes refill it, and the
//! load a client adds to a struggling server is bounded by its own success
//! rate. (gRPC A6, "Retry Throttling"; tokens are kept in thousandths so the
//! arithmetic is exact and identical on every target.)
//!
//! It knows nothing of what is retried or why: the driver reports outcomes
//! and asks before each retry.

use crate::error::ConfigError;

const MILLI: u32 = 1000;

/// Settings of the [`RetryBudget`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetConfig {
    /// Capacity of the bucket, in tokens (1..=1000). gRPC's default is 10.
    pub max_tokens: u32,
    /// Tokens refilled by each success (0.001..=1), gRPC's default 0.1.
    pub token_ratio: f64,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        RetryBudgetConfig {
            max_tokens: 10,
            token_ratio: 0.1,
        }
    }
}

impl RetryBudgetConfig {
    /// Checks the fields; the error names the one out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1000).contains(&self.max_tokens) {
            return Err(ConfigError::invalid(
                "max_tokens",
                "must be between 1 and 1000",
            ));
        }
        if !(self.token_ratio >= 0.001 && self.token_ratio <= 1.0) {
            return Err(ConfigError::invalid(
                "token_ratio",
                "must be a number between 0.001 and 1",
            ));
        }
        Ok(())
    }
}

/// A token bucket that decides whether a retry may be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryBudget {
    max: u32,
    tokens: u32,
    ratio: u32,
}

impl RetryBudget {
    /// A full bucket. Out-of-range settings are clamped into range (validate
    /// the config first to reject them with an error).
    pub fn new(config: RetryBudgetConfig) -> Self {
        let max = config.max_tokens.clamp(1, 1000) * MILLI;
        let ratio = if config.token_ratio.is_nan() {
            MILLI / 10
        } else {
            (config.token_ratio.clamp(0.001, 1.0) * f64::from(MILLI)) as u32
        };
        RetryBudget {
            max,
            tokens: max,
            ratio: ratio.max(1),
        }
    }

    /// A request succeeded: refill `token_ratio`.
    pub fn on_success(&mut self) {
        self.tokens = (self.tokens + self.ratio).min(self.max);
    }

    /// A request (or connection attempt) failed: drain one token.
    pub fn on_failure(&mut self) {
        self.tokens = self.tokens.saturating_sub(MILLI);
    }

    /// May a retry be sent now?
    pub fn may_retry(&self) -> bool {
        self.tokens > self.max / 2
    }

    /// Tokens left, in thousandths of a token.
    pub fn tokens_milli(&self) -> u32 {
        self.tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_stop_retries_and_successes_bring_them_back() {
        let mut b = RetryBudget::new(RetryBudgetConfig::default());
        assert!(b.may_retry());
        for _ in 0..5 {
            b.on_failure();
        }
        // 5 of 10 tokens left: not more than half.
        assert!(!b.may_retry());
        b.on_success();
        assert!(b.may_retry(), "5.1 tokens > 5");
        for _ in 0..1000 {
            b.on_success();
        }
        assert_eq!(b.tokens_milli(), 10_000);
        for _ in 0..100 {
            b.on_failure();
        }
        assert_eq!(b.tokens_milli(), 0);
    }

    #[test]
    fn invalid_settings_are_named() {
        let bad = RetryBudgetConfig {
            max_tokens: 0,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().field(), "max_tokens");
        let bad = RetryBudgetConfig {
            token_ratio: f64::NAN,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().field(), "token_ratio");
        assert!(RetryBudgetConfig::default().validate().is_ok());
        let _ = RetryBudget::new(RetryBudgetConfig {
            max_tokens: 0,
            token_ratio: f64::INFINITY,
        });
    }
}
