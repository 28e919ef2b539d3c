//! `RetryBudget`: the core's retry throttling (gRPC A6), shared by every call
//! of a client.

use relink_core::budget::RetryBudgetConfig;
use wasm_bindgen::prelude::*;

use crate::convert::{self, Result};

/// A token bucket that says whether a retry may be sent: every failure
/// drains a token, every success refills `token_ratio` of one, retries are
/// allowed while more than half the tokens remain. A driver reports each
/// attempt's result and passes `mayRetry` to the call as `budget_allows`.
#[wasm_bindgen]
#[repr(transparent)]
#[derive(Debug)]
pub struct RetryBudget(relink_core::budget::RetryBudget);

#[wasm_bindgen]
impl RetryBudget {
    /// `config`: `{max_tokens: 10, token_ratio: 0.1}` (missing fields take
    /// the defaults; `undefined` is the default), validated.
    #[wasm_bindgen(constructor)]
    pub fn new(config: JsValue) -> Result<RetryBudget> {
        let config = convert::config(&config, "config", read, RetryBudgetConfig::validate)?;
        Ok(RetryBudget(relink_core::budget::RetryBudget::new(config)))
    }

    /// An attempt succeeded.
    #[wasm_bindgen(js_name = onSuccess)]
    pub fn on_success(&mut self) {
        self.0.on_success();
    }

    /// An attempt failed: drains a token.
    #[wasm_bindgen(js_name = onFailure)]
    pub fn on_failure(&mut self) {
        self.0.on_failure();
    }

    /// May a retry be sent now?
    #[wasm_bindgen(getter, js_name = mayRetry)]
    pub fn may_retry(&self) -> bool {
        self.0.may_retry()
    }

    /// Tokens left, in thousandths.
    #[wasm_bindgen(getter, js_name = tokensMilli)]
    pub fn tokens_milli(&self) -> u32 {
        self.0.tokens_milli()
    }
}

fn read(f: &convert::Fields) -> Result<RetryBudgetConfig> {
    f.only(&["max_tokens", "token_ratio"])?;
    let mut config = RetryBudgetConfig::default();
    if let Some(n) = f.u32("max_tokens")? {
        config.max_tokens = n;
    }
    if let Some(ratio) = f.f64("token_ratio")? {
        config.token_ratio = ratio;
    }
    Ok(config)
}
