//! The one place where a `redis::RedisError` becomes the core's [`FailureKind`].
//!
//! Server error replies are classified by their code through the core (so C
//! and JavaScript read `-LOADING` the same way); client-side errors by what
//! redis-rs says about them.

use redis::{ErrorKind, RedisError};
use relink_core::FailureKind;

/// Classifies an error returned by redis-rs.
pub fn failure_kind(err: &RedisError) -> FailureKind {
    if let Some(ours) = crate::Error::from_redis(err) {
        return match ours {
            crate::Error::OutcomeUnknown { kind, .. } | crate::Error::NotApplied { kind, .. } => {
                *kind
            }
            _ => FailureKind::Closed,
        };
    }
    if err.is_timeout() {
        return FailureKind::Timeout;
    }
    match err.kind() {
        ErrorKind::Io => {
            if err.is_connection_dropped() {
                FailureKind::Closed
            } else {
                FailureKind::Io
            }
        }
        ErrorKind::AuthenticationFailed => FailureKind::Auth,
        ErrorKind::Parse => FailureKind::Protocol,
        ErrorKind::Server(_) | ErrorKind::Extension => match err.code() {
            Some(code) => FailureKind::from_error_code(code),
            None => FailureKind::Command,
        },
        _ => FailureKind::Command,
    }
}

/// Did the error come back from the server as a reply (so the server is alive
/// and its verdict on the command is known)?
pub fn is_server_reply(err: &RedisError) -> bool {
    matches!(err.kind(), ErrorKind::Server(_) | ErrorKind::Extension) && err.code().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use relink_core::BusyReason;
    use std::io;

    fn server_error(code: &str) -> RedisError {
        // Parse a real error reply so the test exercises redis-rs's own path.
        let reply = format!("-{code} something went wrong\r\n");
        let value = redis::parse_redis_value(reply.as_bytes()).expect("parses");
        match value {
            redis::Value::ServerError(e) => e.into(),
            other => panic!("not an error reply: {other:?}"),
        }
    }

    #[test]
    fn server_replies_are_classified_by_code() {
        assert_eq!(
            failure_kind(&server_error("LOADING")),
            FailureKind::ServerBusy(BusyReason::Loading)
        );
        assert_eq!(
            failure_kind(&server_error("READONLY")),
            FailureKind::ServerBusy(BusyReason::ReadOnly)
        );
        assert_eq!(
            failure_kind(&server_error("MASTERDOWN")),
            FailureKind::ServerBusy(BusyReason::MasterDown)
        );
        assert_eq!(
            failure_kind(&server_error("BUSY")),
            FailureKind::ServerBusy(BusyReason::Busy)
        );
        assert_eq!(
            failure_kind(&server_error("TRYAGAIN")),
            FailureKind::ServerBusy(BusyReason::TryAgain)
        );
        assert_eq!(failure_kind(&server_error("NOAUTH")), FailureKind::Auth);
        assert_eq!(
            failure_kind(&server_error("WRONGTYPE")),
            FailureKind::Command
        );
        assert_eq!(failure_kind(&server_error("ERR")), FailureKind::Command);
        assert!(is_server_reply(&server_error("ERR")));
    }

    #[test]
    fn transport_errors_are_classified() {
        let e = RedisError::from(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(failure_kind(&e), FailureKind::Closed);
        assert!(!is_server_reply(&e));
        let e = RedisError::from(io::Error::from(io::ErrorKind::TimedOut));
        assert_eq!(failure_kind(&e), FailureKind::Timeout);
        let e = RedisError::from(io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(failure_kind(&e), FailureKind::Io);
        let e = RedisError::from((ErrorKind::AuthenticationFailed, "bad password"));
        assert_eq!(failure_kind(&e), FailureKind::Auth);
    }
}
