//! One classification of what can go wrong talking to Redis, and the questions
//! every driver asks about it: does it kill the connection, and may the command
//! that met it be tried again?
//!
//! This module knows nothing of any client library's error type; each driver
//! maps its own errors onto [`FailureKind`] in exactly one place, and server
//! error replies are classified here by their code ([`FailureKind::from_error_code`])
//! so every binding reads `-LOADING` the same way.
//!
//! The same entry point reads transport error codes, spelled as POSIX errno
//! names the way Node, libuv and most C libraries report them (`ECONNRESET`,
//! `ETIMEDOUT`, `EAI_AGAIN`; see [`FailureKind::from_transport_code`]), so a
//! driver without a typed error of its own (JavaScript, C) asks one question
//! whatever failed. The two namespaces do not collide: an errno name is `E`
//! followed by capitals, and the only Redis codes of that shape, `ERR` and
//! `EXECABORT`, are known here as the command errors they are.

use core::fmt;

/// Why a server refused to run a command right now. In every case the command
/// was *not* executed, so trying again later is safe whatever the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BusyReason {
    /// `-LOADING`: the server is loading its dataset after a restart.
    Loading,
    /// `-BUSY`: a script or function is running too long.
    Busy,
    /// `-MASTERDOWN`: a replica lost its master and refuses stale reads.
    MasterDown,
    /// `-READONLY`: a write reached a replica (typically a demoted master after a failover).
    ReadOnly,
    /// `-TRYAGAIN`: a multi-key command met a slot being migrated.
    TryAgain,
}

/// What kind of failure happened, as far as resilience decisions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The transport failed: refused, reset, broken pipe, unreachable.
    Io,
    /// The peer closed the connection.
    Closed,
    /// No answer in time (connect, handshake, response or heartbeat).
    Timeout,
    /// Authentication was refused (`WRONGPASS`, `NOAUTH`, bad ACL user).
    Auth,
    /// The bytes on the wire made no sense (a protocol violation).
    Protocol,
    /// The server refused to run the command for now; see [`BusyReason`].
    ServerBusy(BusyReason),
    /// The server is not (or no longer) the one to talk to: a `MOVED`/`ASK`
    /// redirect, a node that is not the master Sentinel named, a master that
    /// Sentinel announced has moved. Answered (or not sent), never applied.
    Moved,
    /// The server ran into an error with this command (`WRONGTYPE`, `ERR ...`):
    /// the same command will fail the same way again.
    Command,
}

/// How far a command got before it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// It never left the client: the server cannot have run it.
    NotSent,
    /// It was written (or may have been), and no reply came back: the server
    /// may have run it, may yet run it, or may never have seen it.
    MaybeSent,
    /// A reply came back, so the server's verdict is known.
    Answered,
}

/// What a failed command may have done on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Certainly not applied; nothing happened.
    NotApplied,
    /// It may have been applied: the caller must not assume either way.
    Unknown,
    /// The server answered with an error; retrying would give the same error.
    Rejected,
}

impl FailureKind {
    /// Classifies an error by its code: a server error reply's code (the first
    /// word of its message: `LOADING Redis is loading...` → `LOADING`), or a
    /// transport error's errno name (`ECONNRESET`; see
    /// [`from_transport_code`](Self::from_transport_code)). A whole reply
    /// message may be passed: only its first word is read. Any other code is
    /// a [`Command`](FailureKind::Command) error: the server answered, and
    /// would answer the same again.
    ///
    /// `MOVED` and `ASK` are [`Moved`](FailureKind::Moved) (a redirect), and
    /// `CLUSTERDOWN` is
    /// [`ServerBusy`](FailureKind::ServerBusy)`(`[`TryAgain`](BusyReason::TryAgain)`)`
    /// (a refusal until the cluster is whole again): both answered and
    /// certainly not applied, the connection stays, and the command may be
    /// sent again, to the node the redirect names or later.
    pub fn from_error_code(code: &str) -> FailureKind {
        let code = code.split_whitespace().next().unwrap_or("");
        if let Some(kind) = FailureKind::from_transport_code(code) {
            return kind;
        }
        match code {
            "LOADING" => FailureKind::ServerBusy(BusyReason::Loading),
            "BUSY" => FailureKind::ServerBusy(BusyReason::Busy),
            "MASTERDOWN" => FailureKind::ServerBusy(BusyReason::MasterDown),
            "READONLY" => FailureKind::ServerBusy(BusyReason::ReadOnly),
            "TRYAGAIN" | "CLUSTERDOWN" => FailureKind::ServerBusy(BusyReason::TryAgain),
            "MOVED" | "ASK" => FailureKind::Moved,
            "NOAUTH" | "WRONGPASS" => FailureKind::Auth,
            _ => FailureKind::Command,
        }
    }

    /// Classifies a transport error by its code, as POSIX names it and Node
    /// (`err.code`) and libuv spell it; `None` when `code` is not such a
    /// name (a Redis error code, or anything else).
    ///
    /// Why each answer:
    ///
    /// - [`Closed`](FailureKind::Closed): a connection that existed has
    ///   ended, by the peer or by the local stack. `ECONNRESET` (the peer
    ///   reset it), `EPIPE` (written after the peer closed), `ECONNABORTED`
    ///   (the local stack aborted it), `ENETRESET` (the network dropped it),
    ///   `ENOTCONN` and `ESHUTDOWN` (used after it ended), `EBADF` (its
    ///   descriptor is gone), `EOF` (libuv: end of stream), `ECANCELED`
    ///   (libuv cancels the requests still pending on a handle being closed:
    ///   the connection was closed under them), and Node's own
    ///   `ERR_SOCKET_CLOSED`, `ERR_SOCKET_CLOSED_BEFORE_CONNECTION`,
    ///   `ERR_STREAM_DESTROYED` and `ERR_STREAM_WRITE_AFTER_END` (a write to
    ///   a socket that has ended).
    /// - [`Timeout`](FailureKind::Timeout): `ETIMEDOUT`, a connect, or the
    ///   kernel's retransmissions or keepalive probes, gave up waiting (and
    ///   Node's `ERR_SOCKET_CONNECTION_TIMEOUT`, a connect that did); the
    ///   same answer native drivers give for `io::ErrorKind::TimedOut`. A
    ///   socket that fails this way is closed by its runtime, which the
    ///   driver reports as
    ///   [`Input::ConnectionLost`](crate::supervisor::Input::ConnectionLost).
    /// - [`Io`](FailureKind::Io): the transport could not carry bytes at all,
    ///   with no connection to speak of: nothing listening (`ECONNREFUSED`,
    ///   `ENOENT` for a Unix socket path), no route (`EHOSTUNREACH`,
    ///   `ENETUNREACH`, `EHOSTDOWN`, `ENETDOWN`), no address (`ENOTFOUND`
    ///   and the resolver's `EAI_*`, `EADDRNOTAVAIL`, `EADDRINUSE`), no local
    ///   resources (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`), refused by
    ///   policy (`EACCES`, `EPERM`); and every other errno-shaped name (`E`
    ///   and then capitals, digits and `_`): whatever it is, it came from the
    ///   transport, and the connection cannot be trusted.
    ///
    /// `ERR` and `EXECABORT` have the shape but are Redis codes: `None`, as
    /// for Node's other `ERR_*` codes (programming errors, not transport).
    pub fn from_transport_code(code: &str) -> Option<FailureKind> {
        match code {
            "ERR" | "EXECABORT" => None,
            "ECONNRESET" | "EPIPE" | "ECONNABORTED" | "ENETRESET" | "ENOTCONN" | "ESHUTDOWN"
            | "EBADF" | "EOF" | "ECANCELED" => Some(FailureKind::Closed),
            "ERR_SOCKET_CLOSED"
            | "ERR_SOCKET_CLOSED_BEFORE_CONNECTION"
            | "ERR_STREAM_DESTROYED"
            | "ERR_STREAM_WRITE_AFTER_END" => Some(FailureKind::Closed),
            "ETIMEDOUT" | "ERR_SOCKET_CONNECTION_TIMEOUT" => Some(FailureKind::Timeout),
            _ => {
                let errno_shaped = code.len() > 1
                    && code.starts_with('E')
                    && !code.starts_with("ERR_")
                    && code
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
                errno_shaped.then_some(FailureKind::Io)
            }
        }
    }

    /// Does this failure mean the connection it happened on must be replaced?
    ///
    /// A response timeout alone does not: a slow command is not a dead server,
    /// and the heartbeat decides about liveness. `READONLY` does: it means the
    /// server was demoted, and a new connection must find the current master.
    /// A lost authentication (`NOAUTH` after a server restart with a password)
    /// does too: the handshake on a new connection authenticates again.
    pub fn kills_connection(self) -> bool {
        match self {
            FailureKind::Io
            | FailureKind::Closed
            | FailureKind::Protocol
            | FailureKind::Auth
            | FailureKind::ServerBusy(BusyReason::ReadOnly) => true,
            FailureKind::Timeout
            | FailureKind::Command
            | FailureKind::ServerBusy(_)
            | FailureKind::Moved => false,
        }
    }

    /// Is this failure a reply from the server (an error reply: the server
    /// is alive and answering), rather than a failure to hear from it?
    pub fn is_reply(self) -> bool {
        matches!(
            self,
            FailureKind::Command | FailureKind::ServerBusy(_) | FailureKind::Moved
        )
    }

    /// What the failed command may have done, given how far it got.
    pub fn outcome(self, delivery: Delivery) -> Outcome {
        match self {
            // The server said no before running it.
            FailureKind::ServerBusy(_) | FailureKind::Auth | FailureKind::Moved => {
                Outcome::NotApplied
            }
            FailureKind::Command => Outcome::Rejected,
            FailureKind::Io
            | FailureKind::Closed
            | FailureKind::Timeout
            | FailureKind::Protocol => match delivery {
                Delivery::NotSent => Outcome::NotApplied,
                Delivery::MaybeSent | Delivery::Answered => Outcome::Unknown,
            },
        }
    }

    /// May a command that met this failure be sent again?
    ///
    /// Only when running it twice cannot differ from running it once: either
    /// it certainly was not applied, or it is idempotent (a read, or a write
    /// the caller declared idempotent). An `INCR` whose fate is unknown is
    /// never retried. An authentication failure is not retried either: the
    /// same credentials would be refused again.
    pub fn retry_safe(self, delivery: Delivery, idempotent: bool) -> bool {
        if self == FailureKind::Auth {
            return false;
        }
        match self.outcome(delivery) {
            Outcome::NotApplied => true,
            Outcome::Unknown => idempotent,
            Outcome::Rejected => false,
        }
    }

    /// A short stable name for logs, metrics and bindings (`io`,
    /// `server_busy:loading`, ...), spelled as in the serde form.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Io => "io",
            FailureKind::Closed => "closed",
            FailureKind::Timeout => "timeout",
            FailureKind::Auth => "auth",
            FailureKind::Protocol => "protocol",
            FailureKind::ServerBusy(BusyReason::Loading) => "server_busy:loading",
            FailureKind::ServerBusy(BusyReason::Busy) => "server_busy:busy",
            FailureKind::ServerBusy(BusyReason::MasterDown) => "server_busy:master_down",
            FailureKind::ServerBusy(BusyReason::ReadOnly) => "server_busy:read_only",
            FailureKind::ServerBusy(BusyReason::TryAgain) => "server_busy:try_again",
            FailureKind::Command => "command",
            FailureKind::Moved => "moved",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureKind::*;

    #[test]
    fn error_codes_are_classified() {
        assert_eq!(
            FailureKind::from_error_code("LOADING"),
            ServerBusy(BusyReason::Loading)
        );
        assert_eq!(
            FailureKind::from_error_code("READONLY"),
            ServerBusy(BusyReason::ReadOnly)
        );
        assert_eq!(
            FailureKind::from_error_code("MASTERDOWN"),
            ServerBusy(BusyReason::MasterDown)
        );
        assert_eq!(
            FailureKind::from_error_code("TRYAGAIN"),
            ServerBusy(BusyReason::TryAgain)
        );
        assert_eq!(
            FailureKind::from_error_code("BUSY"),
            ServerBusy(BusyReason::Busy)
        );
        assert_eq!(FailureKind::from_error_code("NOAUTH"), Auth);
        assert_eq!(FailureKind::from_error_code("WRONGPASS"), Auth);
        assert_eq!(FailureKind::from_error_code("WRONGTYPE"), Command);
        assert_eq!(FailureKind::from_error_code("ERR"), Command);
        assert_eq!(FailureKind::from_error_code(""), Command);
    }

    #[test]
    fn cluster_refusals_and_redirects_are_answered_not_applied() {
        assert_eq!(
            FailureKind::from_error_code("CLUSTERDOWN"),
            ServerBusy(BusyReason::TryAgain)
        );
        assert_eq!(FailureKind::from_error_code("MOVED"), Moved);
        assert_eq!(FailureKind::from_error_code("ASK"), Moved);
        for code in ["CLUSTERDOWN", "MOVED", "ASK"] {
            let kind = FailureKind::from_error_code(code);
            assert_eq!(kind.outcome(Delivery::Answered), Outcome::NotApplied);
            assert!(kind.retry_safe(Delivery::Answered, false), "{code}");
            assert!(!kind.kills_connection(), "{code}");
            assert!(kind.is_reply(), "{code}");
        }
        assert_eq!(
            FailureKind::from_error_code("MOVED 3999 127.0.0.1:6381"),
            Moved
        );
        // A command name, not a reply code.
        assert_eq!(FailureKind::from_error_code("ASKING"), Command);
    }

    #[test]
    fn a_whole_reply_message_is_read_by_its_first_word() {
        assert_eq!(
            FailureKind::from_error_code("LOADING Redis is loading the dataset in memory"),
            ServerBusy(BusyReason::Loading)
        );
        assert_eq!(
            FailureKind::from_error_code("WRONGPASS invalid username-password pair"),
            Auth
        );
        assert_eq!(FailureKind::from_error_code("ERR unknown command"), Command);
        assert_eq!(FailureKind::from_error_code("   "), Command);
    }

    #[test]
    fn transport_codes_are_classified() {
        let closed = [
            "ECONNRESET",
            "EPIPE",
            "ECONNABORTED",
            "ENETRESET",
            "ENOTCONN",
            "ESHUTDOWN",
            "EBADF",
            "EOF",
            "ECANCELED",
            "ERR_SOCKET_CLOSED",
            "ERR_STREAM_DESTROYED",
        ];
        let io = [
            "ECONNREFUSED",
            "ENOENT",
            "EHOSTUNREACH",
            "ENETUNREACH",
            "EHOSTDOWN",
            "ENETDOWN",
            "ENOTFOUND",
            "EAI_AGAIN",
            "EAI_NONAME",
            "EAI_FAIL",
            "EADDRNOTAVAIL",
            "EADDRINUSE",
            "EMFILE",
            "ENFILE",
            "ENOBUFS",
            "ENOMEM",
            "EACCES",
            "EPERM",
            // Not in the list, but errno-shaped: still the transport's.
            "EPROTO",
            "E2BIG",
        ];
        for code in closed {
            assert_eq!(
                FailureKind::from_transport_code(code),
                Some(Closed),
                "{code}"
            );
            assert_eq!(FailureKind::from_error_code(code), Closed, "{code}");
        }
        for code in io {
            assert_eq!(FailureKind::from_transport_code(code), Some(Io), "{code}");
            assert_eq!(FailureKind::from_error_code(code), Io, "{code}");
        }
        assert_eq!(FailureKind::from_transport_code("ETIMEDOUT"), Some(Timeout));
        assert_eq!(FailureKind::from_error_code("ETIMEDOUT"), Timeout);
        assert_eq!(
            FailureKind::from_error_code("ERR_SOCKET_CONNECTION_TIMEOUT"),
            Timeout
        );
        for kind in [Closed, Io] {
            assert!(kind.kills_connection());
            assert!(!kind.retry_safe(Delivery::MaybeSent, false));
        }
    }

    #[test]
    fn redis_codes_are_not_transport_codes() {
        for code in [
            "ERR",
            "EXECABORT",
            "LOADING",
            "READONLY",
            "MOVED",
            "WRONGTYPE",
            "ERR_INVALID_ARG_TYPE",
            "E",
            "Econnreset",
            "",
        ] {
            assert_eq!(FailureKind::from_transport_code(code), None, "{code:?}");
        }
        assert_eq!(FailureKind::from_error_code("EXECABORT"), Command);
        assert_eq!(
            FailureKind::from_error_code(
                "EXECABORT Transaction discarded because of previous errors."
            ),
            Command
        );
        assert_eq!(FailureKind::from_error_code("ERR"), Command);
    }

    #[test]
    fn a_write_of_unknown_fate_is_never_retried() {
        for kind in [Io, Closed, Timeout, Protocol] {
            assert!(!kind.retry_safe(Delivery::MaybeSent, false), "{kind}");
            assert!(kind.retry_safe(Delivery::MaybeSent, true), "{kind}");
            assert!(kind.retry_safe(Delivery::NotSent, false), "{kind}");
            assert_eq!(kind.outcome(Delivery::MaybeSent), Outcome::Unknown);
        }
    }

    #[test]
    fn busy_replies_mean_not_applied() {
        let k = ServerBusy(BusyReason::Loading);
        assert_eq!(k.outcome(Delivery::Answered), Outcome::NotApplied);
        assert!(k.retry_safe(Delivery::Answered, false));
        assert!(!k.kills_connection());
        assert!(ServerBusy(BusyReason::ReadOnly).kills_connection());
    }

    #[test]
    fn command_errors_and_auth_are_not_retried() {
        assert!(!Command.retry_safe(Delivery::Answered, true));
        assert_eq!(Command.outcome(Delivery::Answered), Outcome::Rejected);
        assert!(!Auth.retry_safe(Delivery::NotSent, true));
        assert!(!Command.kills_connection());
        assert!(!Timeout.kills_connection());
        assert!(Io.kills_connection() && Closed.kills_connection() && Protocol.kills_connection());
    }

    #[test]
    fn names_are_stable() {
        assert_eq!(
            ServerBusy(BusyReason::MasterDown).as_str(),
            "server_busy:master_down"
        );
        assert_eq!(alloc::format!("{Io}"), "io");
    }
}
