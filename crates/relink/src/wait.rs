//! The one timer every task loop waits on.

use std::time::Instant;

/// Resolves at `at`, the core's next deadline; never when there is none.
pub(crate) async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
