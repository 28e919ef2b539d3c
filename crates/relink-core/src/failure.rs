//! One classification of what can go wrong talking to Redis, and the questions
//! every driver asks about it: does it kill the connection, and may the command
//! that met it be tried again?
//!
//! This module knows nothing of any client library's error type; each driver
//! maps its own errors onto [`FailureKind`] in exactly one place, and server
//! error replies are classified here by their code ([`FailureKind::from_error_code`])
//! so every binding reads `-LOADING` the same way.

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
    /// Classifies a server error reply by its code: the first word of the
    /// message (`LOADING Redis is loading...` → `LOADING`).
    pub fn from_error_code(code: &str) -> FailureKind {
        match code {
            "LOADING" => FailureKind::ServerBusy(BusyReason::Loading),
            "BUSY" => FailureKind::ServerBusy(BusyReason::Busy),
            "MASTERDOWN" => FailureKind::ServerBusy(BusyReason::MasterDown),
            "READONLY" => FailureKind::ServerBusy(BusyReason::ReadOnly),
            "TRYAGAIN" => FailureKind::ServerBusy(BusyReason::TryAgain),
            "NOAUTH" | "WRONGPASS" => FailureKind::Auth,
            _ => FailureKind::Command,
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
            FailureKind::Timeout | FailureKind::Command | FailureKind::ServerBusy(_) => false,
        }
    }

    /// What the failed command may have done, given how far it got.
    pub fn outcome(self, delivery: Delivery) -> Outcome {
        match self {
            // The server said no before running it.
            FailureKind::ServerBusy(_) | FailureKind::Auth => Outcome::NotApplied,
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
