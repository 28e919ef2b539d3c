//! The one place where a `redis::RedisError` becomes the core's [`FailureKind`].
//!
//! Server error replies are classified by their code through the core (so C
//! and JavaScript read `-LOADING` the same way); client-side errors by what
//! redis-rs says about them. The execution loop's `judge` adds what a call
//! needs besides the kind: how far the command got ([`Delivery`]) and where a
//! redirect points. Nothing else in relink (or its C binding) looks at an
//! error's kind or code: they ask [`failure_kind`] and [`is_server_reply`].

use std::io;
use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};
use relink_core::{BusyReason, ConnectCause, Delivery, FailureKind};

/// Where a redirection sends a command: host, port, and whether `ASKING`
/// must go first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Redirect {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) ask: bool,
}

/// What a failed attempt means for the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// `MOVED` or `ASK`: answered, not applied, go there.
    Redirect(Redirect),
    /// Anything else, in the core's terms (`FailureKind::Command` is the
    /// server's verdict on the command, to be passed on as it is).
    Failure {
        kind: FailureKind,
        delivery: Delivery,
    },
}

/// Judges a failed attempt: redirects, the cluster's refusals and redis-rs's
/// "no connection to that node" first, then [`failure_kind`].
pub(crate) fn judge(err: &RedisError) -> Verdict {
    let refused = |kind| Verdict::Failure {
        kind,
        delivery: Delivery::Answered,
    };
    match err.kind() {
        ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask) => {
            let ask = err.kind() == ErrorKind::Server(ServerErrorKind::Ask);
            let target = err.redirect_node().and_then(|(addr, _slot)| {
                let (host, port) = addr.rsplit_once(':')?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                Some((host.to_owned(), port.parse().ok()?))
            });
            match target {
                Some((host, port)) => Verdict::Redirect(Redirect { host, port, ask }),
                None => refused(FailureKind::ServerBusy(BusyReason::TryAgain)),
            }
        }
        // The cluster (or this slot) is down for now: refused, not applied.
        ErrorKind::Server(ServerErrorKind::ClusterDown) => {
            refused(FailureKind::ServerBusy(BusyReason::TryAgain))
        }
        // redis-rs had no connection to send it on.
        ErrorKind::ClusterConnectionNotFound => Verdict::Failure {
            kind: FailureKind::Io,
            delivery: Delivery::NotSent,
        },
        _ if err.is_connection_refusal() => Verdict::Failure {
            kind: FailureKind::Io,
            delivery: Delivery::NotSent,
        },
        _ => {
            let kind = failure_kind(err);
            let delivery = if is_server_reply(err) {
                Delivery::Answered
            } else if matches!(
                crate::Error::from_redis(err),
                Some(
                    crate::Error::NotApplied { .. }
                        | crate::Error::NotConnected { .. }
                        | crate::Error::BacklogFull { .. }
                        | crate::Error::QueueTimeout { .. }
                        | crate::Error::Shutdown
                )
            ) {
                Delivery::NotSent
            } else {
                Delivery::MaybeSent
            };
            Verdict::Failure { kind, delivery }
        }
    }
}

/// Is a server error reply that redis-rs handed back as a value the
/// server's verdict on the command (`WRONGTYPE`, `ERR ...`), to be passed on
/// as it is? Otherwise it is a refusal or a redirect: turn it into a
/// `RedisError` and [`judge`] it.
pub(crate) fn is_verdict(reply: &redis::ServerError) -> bool {
    !matches!(reply.code(), "MOVED" | "ASK" | "CLUSTERDOWN")
        && FailureKind::from_error_code(reply.code()) == FailureKind::Command
}

/// The error of a command whose connection relink gave up on (its heartbeat
/// or another command found it dead) while the command waited for a reply.
pub(crate) fn given_up() -> RedisError {
    RedisError::from(io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection given up by relink (declared dead) before the reply came",
    ))
}

/// The error of a command whose connection relink closed under it, saying
/// why (`reason`): the connection was closed (the command's fate is
/// unknown), whatever made the core give it up.
pub(crate) fn closed_by_relink(reason: &str) -> RedisError {
    RedisError::from(io::Error::new(
        io::ErrorKind::ConnectionAborted,
        reason.to_owned(),
    ))
}

/// What a failed command may have done, judged from an error relink did
/// not make (a bare redis-rs error): the transport failing or timing out
/// leaves it unknown; anything else (a server's error reply, a type
/// conversion) means it was rejected.
pub(crate) fn outcome_of_foreign(err: &RedisError) -> relink_core::Outcome {
    if err.is_io_error() || err.is_timeout() {
        relink_core::Outcome::Unknown
    } else {
        relink_core::Outcome::Rejected
    }
}

/// Carries relink's own error inside a `RedisError` of kind I/O (with the
/// `io::ErrorKind` a caller who only looks at that would expect), the way
/// `ConnectionLike` must return it; `Error::from_redis` gets it back.
pub(crate) fn wrap(error: crate::Error) -> RedisError {
    use crate::Error;
    let kind = match &error {
        Error::OutcomeUnknown {
            kind: FailureKind::Timeout,
            ..
        }
        | Error::QueueTimeout { .. }
        | Error::DeadlineExceeded { .. }
        | Error::NotReady { .. } => io::ErrorKind::TimedOut,
        Error::NotConnected { .. } | Error::Shutdown => io::ErrorKind::NotConnected,
        _ => io::ErrorKind::Other,
    };
    RedisError::from(io::Error::new(kind, error))
}

/// A reply that is not what the protocol promised (classified `Protocol`).
pub(crate) fn protocol_error(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::UnexpectedReturnType, what))
}

/// Data that is not what relink wrote (classified `Protocol`).
pub(crate) fn unexpected_data(what: &'static str, detail: String) -> RedisError {
    RedisError::from((ErrorKind::UnexpectedReturnType, what, detail))
}

/// The error of an attempt cut short by the call's deadline.
pub(crate) fn timed_out(after: Duration) -> RedisError {
    RedisError::from(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no reply within {after:?} (the call's deadline)"),
    ))
}

/// The transport error inside a redis-rs error, if it is one (redis-rs
/// keeps it behind an `Arc`).
pub(crate) fn io_error(err: &RedisError) -> Option<&io::Error> {
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let source = std::error::Error::source(err)?;
    if let Some(io) = source.downcast_ref::<io::Error>() {
        return Some(io);
    }
    source.downcast_ref::<Shared>()?.downcast_ref::<io::Error>()
}

/// Classifies an error returned by redis-rs (or by relink, through
/// `ConnectionLike`) in the core's terms.
pub fn failure_kind(err: &RedisError) -> FailureKind {
    if let Some(ours) = crate::Error::from_redis(err) {
        return match ours {
            crate::Error::OutcomeUnknown { kind, .. } | crate::Error::NotApplied { kind, .. } => {
                *kind
            }
            // WAIT's timeout passed before enough replicas confirmed the
            // write: applied on the master, its durability unknown.
            crate::Error::DeadlineExceeded { .. }
            | crate::Error::QueueTimeout { .. }
            | crate::Error::NotReplicated { .. } => FailureKind::Timeout,
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

/// The cause a redis-rs error names by itself, without asking the server
/// again: its code (a server's error reply) or its transport error's errno
/// name, read by the core.
pub fn connect_cause(err: &RedisError) -> ConnectCause {
    if err.kind() == ErrorKind::AuthenticationFailed {
        return ConnectCause::Auth;
    }
    if err.kind() == ErrorKind::RESP3NotSupported {
        // RESP3 (relink's default) asked of a server before Redis 6.
        return ConnectCause::Rejected;
    }
    if let Some(code) = err.code() {
        let message = format!("{code} {}", err.detail().unwrap_or(""));
        return ConnectCause::from_error(code, &message);
    }
    if err.kind() == ErrorKind::Io {
        if is_tls_failure(err) {
            return ConnectCause::Tls;
        }
        let text = err.to_string();
        if let Some(name) = errno_name(err, &text) {
            return ConnectCause::from_error(name, &text);
        }
        if mentions_tls(&text) {
            return ConnectCause::Tls;
        }
    }
    match failure_kind(err) {
        // Not the server's verdict (it said nothing): a client-side error
        // (a Sentinel that names no master, a reply of the wrong type) is
        // no evidence of a misconfiguration.
        FailureKind::Command => ConnectCause::Io,
        kind => ConnectCause::from_kind(kind),
    }
}

/// The errno name (as the core reads them) of a transport error.
fn errno_name(err: &RedisError, text: &str) -> Option<&'static str> {
    // The resolver's failures come as text ("failed to lookup address
    // information: Name or service not known").
    if text.contains("failed to lookup address") {
        return Some(if text.contains("Temporary failure") {
            "EAI_AGAIN"
        } else {
            "ENOTFOUND"
        });
    }
    if err.is_connection_refusal() {
        return Some("ECONNREFUSED");
    }
    let io = crate::classify::io_error(err)?;
    Some(match io.kind() {
        io::ErrorKind::ConnectionRefused => "ECONNREFUSED",
        io::ErrorKind::TimedOut => "ETIMEDOUT",
        io::ErrorKind::HostUnreachable => "EHOSTUNREACH",
        io::ErrorKind::NetworkUnreachable => "ENETUNREACH",
        io::ErrorKind::NetworkDown => "ENETDOWN",
        io::ErrorKind::NotFound => "ENOENT",
        io::ErrorKind::ConnectionReset => "ECONNRESET",
        io::ErrorKind::BrokenPipe => "EPIPE",
        io::ErrorKind::ConnectionAborted => "ECONNABORTED",
        io::ErrorKind::UnexpectedEof => "EOF",
        io::ErrorKind::AddrNotAvailable => "EADDRNOTAVAIL",
        _ => return None,
    })
}

/// relink's own TLS failure (settings unusable at connect, a failed
/// handshake) as a `RedisError` that [`connect_cause`] names TLS.
#[cfg(feature = "tls-rustls")]
pub(crate) fn tls_failure(failure: crate::tls::TlsFailure) -> RedisError {
    io::Error::new(io::ErrorKind::InvalidData, failure).into()
}

/// A TLS handshake that got no answer within its bound: a timeout, which
/// `diagnose::explain` may find to be TLS asked of a plain port.
#[cfg(feature = "tls-rustls")]
pub(crate) fn tls_handshake_timed_out() -> RedisError {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "TLS handshake: no answer from the server",
    )
    .into()
}

/// A failure of TLS itself: the handshake or the settings (relink's
/// `TlsFailure`), or an alert the server sent once the handshake was done
/// (under TLS 1.3 a server that wants a client certificate says so only
/// after the client's side of the handshake ended, on the first read).
/// Not a reset or an EOF under TLS: those are the transport's.
#[cfg(feature = "tls-rustls")]
fn is_tls_failure(err: &RedisError) -> bool {
    io_error(err)
        .and_then(io::Error::get_ref)
        .is_some_and(|inner| inner.is::<crate::tls::TlsFailure>() || inner.is::<rustls::Error>())
}

#[cfg(not(feature = "tls-rustls"))]
fn is_tls_failure(_: &RedisError) -> bool {
    false
}

fn mentions_tls(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    ["certificate", "tls", "handshake", "invaliddnsname"]
        .iter()
        .any(|word| lower.contains(word))
}

/// The server's own words in an error (an error reply's code and text:
/// `WRONGPASS invalid username-password pair`, `LOADING Redis is loading
/// ...`, where redis-rs's text says `"WRONGPASS": invalid ...` or
/// `BusyLoading: ...`), if it carries them; redis-rs drops them for some
/// handshake failures. relink-doctor prints a failed command's error with it.
pub fn server_words(err: &RedisError) -> Option<String> {
    let code = err.code()?;
    Some(match err.detail() {
        Some(detail) => format!("{code} {detail}"),
        None => code.to_owned(),
    })
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
    fn server_words_are_the_reply_as_the_server_wrote_it() {
        for code in ["WRONGPASS", "LOADING", "ERR", "NOPERM"] {
            let err = server_error(code);
            assert_eq!(
                server_words(&err).as_deref(),
                Some(format!("{code} something went wrong").as_str()),
                "{err}"
            );
        }
        let io = RedisError::from(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(server_words(&io), None);
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
    fn causes_named_by_the_error_itself() {
        let refused = RedisError::from(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(connect_cause(&refused), ConnectCause::Refused);
        let dns = RedisError::from(io::Error::other(
            "failed to lookup address information: Name or service not known",
        ));
        assert_eq!(connect_cause(&dns), ConnectCause::UnknownHost);
        let auth = RedisError::from((ErrorKind::AuthenticationFailed, "bad password"));
        assert_eq!(connect_cause(&auth), ConnectCause::Auth);
        let parse = RedisError::from((ErrorKind::Parse, "Unexpected `84`"));
        assert_eq!(connect_cause(&parse), ConnectCause::Protocol);
    }

    #[test]
    fn only_evidence_names_a_misconfiguration() {
        let resp3 = RedisError::from((ErrorKind::RESP3NotSupported, "no HELLO"));
        assert_eq!(connect_cause(&resp3), ConnectCause::Rejected);
        // A client-side error, or a server error of no known meaning, is
        // not the client's config.
        let client_side = RedisError::from((ErrorKind::Client, "something"));
        assert!(!connect_cause(&client_side).is_misconfiguration());
        let misconf = server_error("MISCONF");
        assert_eq!(connect_cause(&misconf), ConnectCause::ServerError);
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
