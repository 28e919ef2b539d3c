//! relink's errors, and how they travel inside `redis::RedisError`.
//!
//! `Client` implements `redis::aio::ConnectionLike`, whose methods return
//! `RedisError`; so a relink error reaches the caller wrapped in a
//! `RedisError` of kind I/O, and [`Error::from_redis`] gets it back. The text
//! of the `RedisError` says the same thing, so a user who only prints errors
//! still sees "not sent" or "outcome unknown".

use std::io;

use relink_core::{AttemptFailure, ConnectCause, FailureKind, Outcome};

/// What to do about a misconfiguration.
fn next_step(cause: ConnectCause) -> &'static str {
    match cause {
        ConnectCause::Auth | ConnectCause::NoPerm => {
            "check the username and password (update_credentials applies new ones to a live client)"
        }
        ConnectCause::Denied => {
            "the server is in protected mode: give it a password (or bind it to an interface) \
             and connect with credentials"
        }
        ConnectCause::NotRedis => {
            "check the host and port: something other than Redis answers there"
        }
        ConnectCause::Tls => {
            "check the TLS settings: rediss:// for a TLS port, redis:// for a plain one, and the CA"
        }
        ConnectCause::UnknownHost => "check the host name in the URL",
        ConnectCause::Rejected => {
            "check the URL's database and protocol (RESP3 needs Redis 6 or later)"
        }
        _ => "check the configuration",
    }
}

/// "; last attempt: authentication failed: WRONGPASS ..." when there was one.
struct LastAttempt<'a>(&'a Option<Box<AttemptFailure>>);

impl std::fmt::Display for LastAttempt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(failure) => write!(f, "; last attempt: {failure}"),
            None => Ok(()),
        }
    }
}

/// Everything relink itself can report.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value was rejected; `field` names it.
    #[error("invalid config `{field}`: {reason}")]
    Config {
        /// The field, as spelled in TOML/JSON config (e.g. `heartbeat.interval`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL asks for TLS (`rediss://`, `valkeys://`) and this build of
    /// relink has none: the `tls-rustls` feature is off. Its own variant so
    /// that a binding (C, Python) can say so in its users' terms.
    #[error(
        "invalid config `url`: `{scheme}://` needs TLS, and relink was built without TLS support: \
         enable relink's `tls-rustls` feature (in Cargo.toml: \
         relink = {{ version = \"...\", features = [\"tls-rustls\"] }})"
    )]
    TlsUnavailable {
        /// The URL's scheme (`rediss` or `valkeys`).
        scheme: String,
    },
    /// Not connected and the outage policy is fail-fast: the command was not
    /// sent; nothing happened.
    #[error(
        "not connected (state {state}{}); the command was not sent: nothing happened",
        LastAttempt(.last_attempt)
    )]
    NotConnected {
        /// The health state at the time.
        state: relink_core::State,
        /// Why the latest connection attempt failed, if one did.
        last_attempt: Option<Box<AttemptFailure>>,
    },
    /// Not connected, and the latest connection attempt failed for a cause
    /// retrying will not fix by itself: a wrong password, an ACL user
    /// without a permission the handshake needs, a peer that is not Redis,
    /// a host name that does not resolve. The command was not sent; nothing
    /// happened. Fix the configuration (for credentials, without a restart:
    /// [`Client::update_credentials`](crate::Client::update_credentials)).
    #[error(
        "misconfigured: {failure}; retrying will not fix this: {}; the command was not sent: \
         nothing happened",
        next_step(failure.cause)
    )]
    Misconfigured {
        /// The attempt that failed, its cause and the server's words.
        failure: Box<AttemptFailure>,
    },
    /// The outage backlog is full: the command was not sent; nothing happened.
    #[error(
        "backlog full ({capacity} commands waiting); the command was not sent: nothing happened"
    )]
    BacklogFull {
        /// The backlog capacity.
        capacity: usize,
    },
    /// The command waited `max_wait` in the backlog for a connection that did
    /// not come: it was not sent; nothing happened.
    #[error(
        "no connection within {waited:?}{}; the command was not sent: nothing happened",
        LastAttempt(.last_attempt)
    )]
    QueueTimeout {
        /// How long it waited.
        waited: std::time::Duration,
        /// Why the latest connection attempt failed, if one did.
        last_attempt: Option<Box<AttemptFailure>>,
    },
    /// The command was sent (or may have been) and no reply came: the server
    /// may have applied it. It was not retried because it is not idempotent,
    /// or retries ran out. For a read (`read_only`), nothing was changed
    /// either way: only its result is missing.
    #[error("{} ({kind}: {detail})", if *.read_only {
        "no reply to the read: its result is lost, and a read changes nothing"
    } else {
        "outcome unknown: the command may have been applied"
    })]
    OutcomeUnknown {
        /// What went wrong.
        kind: FailureKind,
        /// The underlying error's text.
        detail: String,
        /// The command was a read (by the command table): it changed
        /// nothing, whatever happened to it.
        read_only: bool,
    },
    /// A write sent with durable acknowledgements
    /// ([`Client::durable`](crate::Client::durable)) was applied on the
    /// master, but fewer replicas than required confirmed it within the
    /// timeout (`WAIT`/`WAITAOF`): a failover may still discard it, so its
    /// outcome is unknown. The master's reply is not passed on: the caller
    /// is never told "OK" for a write a failover can lose.
    #[error(
        "outcome unknown: replicated to {replicated} of {required} replicas within {timeout:?} \
         (applied on the master; a failover may discard it): {detail}"
    )]
    NotReplicated {
        /// Replicas that confirmed the write.
        replicated: u32,
        /// Replicas required.
        required: u32,
        /// How long the server waited for them.
        timeout: std::time::Duration,
        /// What the server answered to `WAIT` (or `WAITAOF`).
        detail: String,
    },
    /// The command failed before it could have been applied, and was not
    /// retried (retries ran out or the retry budget is spent).
    #[error("not applied: the command failed before it could run ({kind}: {detail})")]
    NotApplied {
        /// What went wrong.
        kind: FailureKind,
        /// The underlying error's text.
        detail: String,
    },
    /// The call's deadline passed before it could be completed.
    #[error("deadline of {deadline:?} exceeded; {}{}", match (outcome, read_only) {
        (Outcome::Unknown, true) => "no reply to the read: its result is lost, and a read changes nothing",
        (Outcome::Unknown, false) => "outcome unknown: the command may have been applied",
        _ => "the command was not sent: nothing happened",
    }, LastAttempt(.last_attempt))]
    DeadlineExceeded {
        /// The deadline the call had.
        deadline: std::time::Duration,
        /// What the command may have done: `NotApplied` when it was never
        /// sent (or certainly refused), `Unknown` when an attempt was sent
        /// and its reply never came.
        outcome: Outcome,
        /// The command was a read (by the command table): it changed
        /// nothing, whatever happened to it.
        read_only: bool,
        /// Why the latest connection attempt failed, if the call ended
        /// without a connection and one did.
        last_attempt: Option<Box<AttemptFailure>>,
    },
    /// [`Client::wait_ready`](crate::Client::wait_ready) (or the cluster's)
    /// gave up: the client did not become Ready in time. No command is
    /// involved.
    #[error("not ready within {waited:?} (state {state}{})", LastAttempt(.last_attempt))]
    NotReady {
        /// How long it waited.
        waited: std::time::Duration,
        /// The health state when it gave up.
        state: relink_core::State,
        /// Why the latest connection attempt failed, if one did.
        last_attempt: Option<Box<AttemptFailure>>,
    },
    /// The command itself is malformed in a way relink must understand (a
    /// blocking command's timeout that is negative or not a number): it
    /// was not sent; nothing happened.
    #[error("invalid command ({reason}); it was not sent: nothing happened")]
    InvalidCommand {
        /// What is wrong with it.
        reason: String,
    },
    /// Every exclusive connection is in use and the outage policy is
    /// fail-fast (or the wait for one ended): not sent; nothing happened.
    #[error(
        "all {max} exclusive connections are in use; the command was not sent: nothing happened"
    )]
    NoExclusiveConnection {
        /// The configured bound (`exclusive.max_connections`).
        max: usize,
    },
    /// An exclusive lease's connection was lost and replaced while it held
    /// `WATCH`ed keys or an open `MULTI`: the server forgot them, so the
    /// command was not sent (it would have run unguarded); nothing happened.
    /// Start the transaction again (`WATCH` ...) on the same lease.
    #[error(
        "the lease's connection was replaced and the server forgot its WATCH/MULTI; \
         the command was not sent: nothing happened (start the transaction again)"
    )]
    ConnectionReplaced,
    /// The client was shut down (or its reconnect policy gave up).
    #[error("client is shut down; the command was not sent: nothing happened")]
    Shutdown,
    /// A redis-rs error that relink passes on as it is (a server error reply,
    /// a type conversion error).
    #[error(transparent)]
    Redis(redis::RedisError),
}

impl From<redis::RedisError> for Error {
    /// A `RedisError` that carries a relink error (one that came back through
    /// `ConnectionLike`) becomes that error again; any other is `Error::Redis`.
    fn from(err: redis::RedisError) -> Self {
        match Error::from_redis(&err) {
            Some(ours) => ours.clone(),
            None => Error::Redis(err),
        }
    }
}

impl Error {
    /// What the failed command may have done on the server, when relink knows.
    pub fn outcome(&self) -> Option<Outcome> {
        match self {
            Error::NotConnected { .. }
            | Error::Misconfigured { .. }
            | Error::BacklogFull { .. }
            | Error::QueueTimeout { .. }
            | Error::NotApplied { .. }
            | Error::InvalidCommand { .. }
            | Error::NoExclusiveConnection { .. }
            | Error::ConnectionReplaced
            | Error::Shutdown => Some(Outcome::NotApplied),
            Error::OutcomeUnknown { .. } | Error::NotReplicated { .. } => Some(Outcome::Unknown),
            Error::DeadlineExceeded { outcome, .. } => Some(*outcome),
            Error::Config { .. }
            | Error::TlsUnavailable { .. }
            | Error::NotReady { .. }
            | Error::Redis(_) => None,
        }
    }

    /// Finds the relink error inside a `RedisError` returned through
    /// `ConnectionLike` (e.g. by an `AsyncCommands` method).
    pub fn from_redis(err: &redis::RedisError) -> Option<&Error> {
        type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
        let source = std::error::Error::source(err)?;
        // redis-rs keeps the io::Error behind an Arc, and hands out the Arc.
        let source: &(dyn std::error::Error + 'static) = match source.downcast_ref::<Shared>() {
            Some(shared) => &**shared,
            None => source,
        };
        let io = source.downcast_ref::<io::Error>()?;
        io.get_ref()?.downcast_ref::<Error>()
    }

    /// The outcome of a failed command as seen through a `RedisError`:
    /// relink's own verdict if it has one, else judged from the error itself
    /// (a server error reply means the command was rejected, not applied).
    pub fn outcome_of(err: &redis::RedisError) -> Outcome {
        match Error::from_redis(err).and_then(Error::outcome) {
            Some(outcome) => outcome,
            None => crate::classify::outcome_of_foreign(err),
        }
    }

    /// The same error, naming why the latest connection attempt failed
    /// where the error has room for it.
    pub(crate) fn with_last_attempt(mut self, failure: Option<Box<AttemptFailure>>) -> Error {
        if let Error::NotConnected { last_attempt, .. }
        | Error::QueueTimeout { last_attempt, .. }
        | Error::DeadlineExceeded { last_attempt, .. }
        | Error::NotReady { last_attempt, .. } = &mut self
        {
            *last_attempt = failure;
        }
        self
    }

    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Wraps this error into a `RedisError` of kind I/O, recoverable with
    /// [`Error::from_redis`].
    pub(crate) fn into_redis(self) -> redis::RedisError {
        if let Error::Redis(e) = self {
            return e;
        }
        crate::classify::wrap(self)
    }
}

impl From<relink_core::ConfigError> for Error {
    fn from(e: relink_core::ConfigError) -> Self {
        match e {
            relink_core::ConfigError::Invalid { field, reason } => Error::config(field, reason),
            other => Error::config("config", other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relink_errors_survive_the_trip_through_redis_error() {
        let e = Error::OutcomeUnknown {
            kind: FailureKind::Closed,
            detail: "connection closed".into(),
            read_only: false,
        }
        .into_redis();
        assert!(e.to_string().contains("outcome unknown"), "{e}");
        let back = Error::from_redis(&e).expect("recoverable");
        assert!(matches!(
            back,
            Error::OutcomeUnknown {
                kind: FailureKind::Closed,
                ..
            }
        ));
        assert_eq!(Error::outcome_of(&e), Outcome::Unknown);
        let e = Error::BacklogFull { capacity: 3 }.into_redis();
        assert_eq!(Error::outcome_of(&e), Outcome::NotApplied);
        assert!(e.to_string().contains("backlog full"), "{e}");
    }
}
