//! Why a connection attempt failed, finely enough to tell the user what to
//! do about it, and with the evidence: the server's own words or the first
//! bytes that came back.
//!
//! [`FailureKind`] answers the resilience questions (does the connection
//! die, may the command be sent again). A failed *connection attempt* needs
//! one more: will trying again fix it by itself? A refused port will be
//! answered once the server is back; a wrong password, a web server on the
//! Redis port or a host name that does not exist will not. Those are
//! misconfigurations ([`ConnectCause::is_misconfiguration`]): the supervisor
//! retries them on a slow schedule of their own and flags them in its
//! health, and the per-call policy fails commands at once rather than
//! queueing them for a connection that will not come.
//!
//! Every driver classifies through [`ConnectCause::from_error`] (an error
//! code and its message: a server error reply, or a transport errno name)
//! so a wrong password reads the same in Rust, C and JavaScript. Two causes
//! only a driver can see, a TLS failure and a peer that does not speak
//! RESP, it names itself.

use core::fmt;

use crate::failure::{BusyReason, FailureKind};

/// Why a connection attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConnectCause {
    /// Nothing listens on the port (`ECONNREFUSED`): the server is down or
    /// restarting, or the port is wrong.
    Refused,
    /// The connect or the handshake got no answer within the connect timeout.
    Timeout,
    /// The host name does not resolve (`ENOTFOUND`, `EAI_NONAME`): a typo in
    /// the URL. A misconfiguration.
    UnknownHost,
    /// The resolver failed for now (`EAI_AGAIN`): DNS is down, try again.
    Dns,
    /// No route to the host (`EHOSTUNREACH`, `ENETUNREACH`).
    Unreachable,
    /// The TLS handshake failed: an untrusted certificate, a name that does
    /// not match, TLS spoken to a plain port or the other way round. A
    /// misconfiguration.
    Tls,
    /// The server refused the credentials (`WRONGPASS`, `NOAUTH`,
    /// `ERR invalid password`). A misconfiguration.
    Auth,
    /// The user may not run a command of the handshake (`NOPERM`). A
    /// misconfiguration.
    NoPerm,
    /// The server refuses clients by policy (`DENIED`: protected mode). A
    /// misconfiguration.
    Denied,
    /// The peer answered, but not in Redis's protocol (an HTTP server, an
    /// SSH daemon on the port). A misconfiguration.
    NotRedis,
    /// The server has `maxclients` connections already (`ERR max number of
    /// clients reached`): one must close first.
    ServerFull,
    /// The server refused for now: loading its dataset, running a long
    /// script, a replica without its master.
    ServerBusy(BusyReason),
    /// The server reached is not (yet) the one to use: Sentinel named a
    /// node that is not the master (a failover in progress, a stale view),
    /// or a redirect came back. Passes once the topology settles.
    NotMaster,
    /// A handshake command was rejected for a reason of the client's
    /// config (`SELECT` of a database the server does not have, `HELLO` on
    /// a server too old for RESP3): the same handshake fails the same way
    /// again. A misconfiguration.
    Rejected,
    /// The server answered the handshake with another error (`MISCONF` after
    /// a failed background save, an error of a proxy): a problem of the
    /// server's, or of the moment, not known to be the client's config.
    ServerError,
    /// The connection closed during the handshake.
    Closed,
    /// Another transport failure.
    Io,
    /// The bytes on the wire made no sense (but started like Redis's protocol).
    Protocol,
}

impl ConnectCause {
    /// Classifies a failed attempt from an error code and its message: a
    /// server error reply (`WRONGPASS invalid username-password pair`, code
    /// `WRONGPASS`) or a transport errno name (`ECONNREFUSED`, message
    /// anything). `message` may be the whole reply, the code included; it
    /// is read for the few causes Redis reports only in words under `ERR`.
    pub fn from_error(code: &str, message: &str) -> ConnectCause {
        let code = code.split_whitespace().next().unwrap_or("");
        match code {
            "ECONNREFUSED" | "ENOENT" => return ConnectCause::Refused,
            "ENOTFOUND" | "EAI_NONAME" | "EAI_NODATA" | "EAI_FAIL" => {
                return ConnectCause::UnknownHost
            }
            "EAI_AGAIN" => return ConnectCause::Dns,
            "EHOSTUNREACH" | "ENETUNREACH" | "EHOSTDOWN" | "ENETDOWN" => {
                return ConnectCause::Unreachable
            }
            "NOPERM" => return ConnectCause::NoPerm,
            "DENIED" => return ConnectCause::Denied,
            "NOPROTO" => return ConnectCause::Rejected,
            "ERR" => {
                let says = |words: &str| contains_ignore_case(message, words);
                return if says("max number of clients") {
                    ConnectCause::ServerFull
                } else if says("password") {
                    // Redis before 6: `ERR invalid password`, `ERR Client
                    // sent AUTH, but no password is set`.
                    ConnectCause::Auth
                } else if says("DB index") || says("unknown command 'HELLO'") {
                    // The client's own config: a database the server does
                    // not have, RESP3 asked of a server before 6.
                    ConnectCause::Rejected
                } else {
                    // No evidence that the client's config is at fault.
                    ConnectCause::ServerError
                };
            }
            _ => {}
        }
        ConnectCause::from_kind(FailureKind::from_error_code(code))
    }

    /// Reads what a peer sent first (in answer to a `PING`, or unasked: a
    /// full server writes its refusal and closes): an error reply is
    /// classified by [`from_error`](Self::from_error); an answer in Redis's
    /// protocol says nothing against the peer (`None`); anything else is
    /// [`NotRedis`](ConnectCause::NotRedis). Nothing at all is `None`.
    pub fn from_first_bytes(bytes: &[u8]) -> Option<ConnectCause> {
        let (&first, rest) = bytes.split_first()?;
        match first {
            b'-' => {
                let line = rest
                    .split(|&b| b == b'\r' || b == b'\n')
                    .next()
                    .unwrap_or(rest);
                let line = core::str::from_utf8(line).ok()?;
                let code = line.split_whitespace().next().unwrap_or("");
                Some(ConnectCause::from_error(code, line))
            }
            // The other RESP2 and RESP3 type bytes.
            b'+' | b':' | b'$' | b'*' | b'%' | b'~' | b'>' | b'_' | b',' | b'#' | b'(' | b'='
            | b'!' | b'|' => None,
            _ => Some(ConnectCause::NotRedis),
        }
    }

    /// Reads what came back on a plain (non-TLS) connection to a port that
    /// the URL says speaks TLS, asked `PING` after the TLS handshake got
    /// nowhere: an answer in Redis's protocol (`+PONG`, `-NOAUTH ...`)
    /// means a plain Redis listens there, so TLS was asked of a plain port:
    /// [`Tls`](ConnectCause::Tls), a misconfiguration. Anything else (a TLS
    /// server's alert, nothing) says nothing (`None`).
    pub fn from_plain_answer_on_tls_port(bytes: &[u8]) -> Option<ConnectCause> {
        match bytes.first()? {
            b'+' | b'-' | b':' | b'$' | b'*' | b'%' | b'_' => Some(ConnectCause::Tls),
            _ => None,
        }
    }

    /// The cause for a driver that only knows the [`FailureKind`].
    pub fn from_kind(kind: FailureKind) -> ConnectCause {
        match kind {
            FailureKind::Io => ConnectCause::Io,
            FailureKind::Closed => ConnectCause::Closed,
            FailureKind::Timeout => ConnectCause::Timeout,
            FailureKind::Auth => ConnectCause::Auth,
            FailureKind::Protocol => ConnectCause::Protocol,
            FailureKind::ServerBusy(reason) => ConnectCause::ServerBusy(reason),
            FailureKind::Moved => ConnectCause::NotMaster,
            // The server's verdict, but no evidence that the client's config
            // is at fault: a misconfiguration is only ever named on
            // evidence, since it fails callers at once.
            FailureKind::Command => ConnectCause::ServerError,
        }
    }

    /// The [`FailureKind`] this cause is, for the resilience questions.
    pub fn kind(self) -> FailureKind {
        match self {
            ConnectCause::Refused
            | ConnectCause::UnknownHost
            | ConnectCause::Dns
            | ConnectCause::Unreachable
            | ConnectCause::Tls
            | ConnectCause::Io => FailureKind::Io,
            ConnectCause::Timeout => FailureKind::Timeout,
            ConnectCause::Auth | ConnectCause::NoPerm | ConnectCause::Denied => FailureKind::Auth,
            ConnectCause::NotRedis | ConnectCause::Protocol => FailureKind::Protocol,
            ConnectCause::ServerFull | ConnectCause::Closed => FailureKind::Closed,
            ConnectCause::ServerBusy(reason) => FailureKind::ServerBusy(reason),
            ConnectCause::NotMaster => FailureKind::Moved,
            ConnectCause::Rejected | ConnectCause::ServerError => FailureKind::Command,
        }
    }

    /// Will trying again fix it by itself? `false` for a cause only a change
    /// of configuration (or of the server's) fixes: credentials, ACL
    /// permissions, protected mode, a peer that is not Redis, TLS, a host
    /// name that does not exist, a rejected handshake.
    pub fn is_misconfiguration(self) -> bool {
        matches!(
            self,
            ConnectCause::UnknownHost
                | ConnectCause::Tls
                | ConnectCause::Auth
                | ConnectCause::NoPerm
                | ConnectCause::Denied
                | ConnectCause::NotRedis
                | ConnectCause::Rejected
        )
    }

    /// A short stable name for logs, metrics and bindings (`refused`,
    /// `auth`, `server_busy:loading`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectCause::Refused => "refused",
            ConnectCause::Timeout => "timeout",
            ConnectCause::UnknownHost => "unknown_host",
            ConnectCause::Dns => "dns",
            ConnectCause::Unreachable => "unreachable",
            ConnectCause::Tls => "tls",
            ConnectCause::Auth => "auth",
            ConnectCause::NoPerm => "no_perm",
            ConnectCause::Denied => "denied",
            ConnectCause::NotRedis => "not_redis",
            ConnectCause::ServerFull => "server_full",
            ConnectCause::ServerBusy(BusyReason::Loading) => "server_busy:loading",
            ConnectCause::ServerBusy(BusyReason::Busy) => "server_busy:busy",
            ConnectCause::ServerBusy(BusyReason::MasterDown) => "server_busy:master_down",
            ConnectCause::ServerBusy(BusyReason::ReadOnly) => "server_busy:read_only",
            ConnectCause::ServerBusy(BusyReason::TryAgain) => "server_busy:try_again",
            ConnectCause::NotMaster => "not_master",
            ConnectCause::ServerError => "server_error",
            ConnectCause::Rejected => "rejected",
            ConnectCause::Closed => "closed",
            ConnectCause::Io => "io",
            ConnectCause::Protocol => "protocol",
        }
    }

    /// Every cause, in a fixed order (the C binding's codes are positions
    /// in it, from 1: append, never reorder).
    pub const ALL: [ConnectCause; 22] = [
        ConnectCause::Refused,
        ConnectCause::Timeout,
        ConnectCause::UnknownHost,
        ConnectCause::Dns,
        ConnectCause::Unreachable,
        ConnectCause::Tls,
        ConnectCause::Auth,
        ConnectCause::NoPerm,
        ConnectCause::Denied,
        ConnectCause::NotRedis,
        ConnectCause::ServerFull,
        ConnectCause::ServerBusy(BusyReason::Loading),
        ConnectCause::ServerBusy(BusyReason::Busy),
        ConnectCause::ServerBusy(BusyReason::MasterDown),
        ConnectCause::ServerBusy(BusyReason::ReadOnly),
        ConnectCause::ServerBusy(BusyReason::TryAgain),
        ConnectCause::Rejected,
        ConnectCause::Closed,
        ConnectCause::Io,
        ConnectCause::Protocol,
        ConnectCause::NotMaster,
        ConnectCause::ServerError,
    ];

    /// The cause named by [`as_str`](Self::as_str), for bindings that pass
    /// it as a string.
    pub fn parse(name: &str) -> Option<ConnectCause> {
        ConnectCause::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// What it means, in words for an error message: "authentication
    /// failed", "not a Redis server", ...
    pub fn describe(self) -> &'static str {
        match self {
            ConnectCause::Refused => "connection refused (nothing listening on the port)",
            ConnectCause::Timeout => "no answer within the connect timeout",
            ConnectCause::UnknownHost => "unknown host (the name does not resolve)",
            ConnectCause::Dns => "name resolution failed for now",
            ConnectCause::Unreachable => "host unreachable",
            ConnectCause::Tls => "TLS handshake failed",
            ConnectCause::Auth => "authentication failed",
            ConnectCause::NoPerm => "the user lacks a permission the handshake needs",
            ConnectCause::Denied => "the server refuses clients (protected mode)",
            ConnectCause::NotRedis => "not a Redis server",
            ConnectCause::ServerFull => "the server has reached maxclients",
            ConnectCause::ServerBusy(BusyReason::Loading) => "the server is loading its dataset",
            ConnectCause::ServerBusy(BusyReason::Busy) => "the server is busy running a script",
            ConnectCause::ServerBusy(BusyReason::MasterDown) => "the replica has lost its master",
            ConnectCause::ServerBusy(BusyReason::ReadOnly) => "the server is a read-only replica",
            ConnectCause::ServerBusy(BusyReason::TryAgain) => "the server asked to try again",
            ConnectCause::NotMaster => "not the master (a failover may be in progress)",
            ConnectCause::ServerError => "the server answered the handshake with an error",
            ConnectCause::Rejected => "the server rejected the handshake",
            ConnectCause::Closed => "the connection closed during the handshake",
            ConnectCause::Io => "connection failed",
            ConnectCause::Protocol => "protocol error",
        }
    }
}

impl fmt::Display for ConnectCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// A short text that goes with a failure as its evidence: the server's own
/// words (`WRONGPASS invalid username-password pair`) or the first bytes a
/// peer sent back (`HTTP/1.1 400 Bad Request`). Held inline (at most
/// [`Evidence::CAPACITY`] bytes, cut at a character boundary) so that
/// inputs, events and health snapshots stay `Copy` and allocation-free.
///
/// The core never sees a secret: the driver hands over text it has
/// already redacted.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Evidence {
    len: u8,
    bytes: [u8; Evidence::CAPACITY],
}

impl Evidence {
    /// The most bytes kept; longer text is cut, ending in `…`.
    pub const CAPACITY: usize = 120;

    /// No evidence.
    pub const EMPTY: Evidence = Evidence {
        len: 0,
        bytes: [0; Evidence::CAPACITY],
    };

    /// Keeps the start of `text` (trimmed; control characters shown as
    /// spaces, so the first bytes of a binary answer cannot mangle a log
    /// line), cut to [`CAPACITY`](Self::CAPACITY) bytes.
    pub fn new(text: &str) -> Evidence {
        const ELLIPSIS: &str = "…";
        let text = text.trim();
        let mut evidence = Evidence::EMPTY;
        let mut len = 0;
        let fits = text.len() <= Evidence::CAPACITY;
        let room = if fits {
            Evidence::CAPACITY
        } else {
            Evidence::CAPACITY - ELLIPSIS.len()
        };
        for ch in text.chars() {
            let ch = if ch.is_control() { ' ' } else { ch };
            let n = ch.len_utf8();
            if len + n > room {
                break;
            }
            ch.encode_utf8(&mut evidence.bytes[len..len + n]);
            len += n;
        }
        if !fits {
            evidence.bytes[len..len + ELLIPSIS.len()].copy_from_slice(ELLIPSIS.as_bytes());
            len += ELLIPSIS.len();
        }
        evidence.len = len as u8;
        evidence
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ever filled from whole `char`s by `new`.
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }

    /// No text at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for Evidence {
    fn default() -> Self {
        Evidence::EMPTY
    }
}

impl fmt::Debug for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Evidence {
    fn from(text: &str) -> Self {
        Evidence::new(text)
    }
}

impl serde::Serialize for Evidence {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Evidence {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Evidence;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Evidence, E> {
                Ok(Evidence::new(v))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// One failed connection attempt: its number, its cause and the evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct AttemptFailure {
    /// The attempt number within the outage, from 1.
    pub attempt: u32,
    /// Why it failed.
    pub cause: ConnectCause,
    /// The server's words or the peer's first bytes, redacted; may be empty.
    #[serde(default)]
    pub evidence: Evidence,
}

impl AttemptFailure {
    /// Attempt `attempt` failed of `cause`, with `evidence`.
    pub fn new(attempt: u32, cause: ConnectCause, evidence: Evidence) -> AttemptFailure {
        AttemptFailure {
            attempt,
            cause,
            evidence,
        }
    }
}

impl fmt::Display for AttemptFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cause.describe())?;
        if !self.evidence.is_empty() {
            write!(f, ": {}", self.evidence)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnectCause::*;

    #[test]
    fn a_plain_redis_on_a_tls_port_is_a_tls_misconfiguration() {
        for answer in [&b"+PONG\r\n"[..], b"-NOAUTH Authentication required.\r\n"] {
            assert_eq!(
                ConnectCause::from_plain_answer_on_tls_port(answer),
                Some(ConnectCause::Tls)
            );
        }
        // A TLS server's alert record, or nothing: no evidence.
        assert_eq!(
            ConnectCause::from_plain_answer_on_tls_port(b"\x15\x03\x03"),
            None
        );
        assert_eq!(ConnectCause::from_plain_answer_on_tls_port(b""), None);
    }

    #[test]
    fn causes_are_read_from_codes_and_words() {
        let table = [
            ("ECONNREFUSED", "", Refused),
            ("ENOTFOUND", "", UnknownHost),
            ("EAI_AGAIN", "", Dns),
            ("EHOSTUNREACH", "", Unreachable),
            ("ETIMEDOUT", "", Timeout),
            ("ECONNRESET", "", Closed),
            ("EMFILE", "", Io),
            (
                "WRONGPASS",
                "WRONGPASS invalid username-password pair",
                Auth,
            ),
            ("NOAUTH", "NOAUTH Authentication required.", Auth),
            ("ERR", "ERR invalid password", Auth),
            ("ERR", "ERR max number of clients reached", ServerFull),
            ("ERR", "ERR DB index is out of range", Rejected),
            ("ERR", "ERR unknown command 'HELLO', with args", Rejected),
            ("NOPROTO", "NOPROTO unsupported protocol version", Rejected),
            (
                "MISCONF",
                "MISCONF Redis is configured to save RDB snapshots",
                ServerError,
            ),
            ("ERR", "ERR Redis is busy running a script", ServerError),
            ("WRONGTYPE", "WRONGTYPE whatever", ServerError),
            ("NOPERM", "NOPERM this user has no permissions", NoPerm),
            (
                "DENIED",
                "DENIED Redis is running in protected mode",
                Denied,
            ),
            (
                "LOADING",
                "LOADING Redis is loading",
                ServerBusy(BusyReason::Loading),
            ),
            ("BUSY", "BUSY Redis is busy", ServerBusy(BusyReason::Busy)),
        ];
        for (code, message, cause) in table {
            assert_eq!(ConnectCause::from_error(code, message), cause, "{code}");
        }
    }

    #[test]
    fn first_bytes_tell_a_redis_server_from_anything_else() {
        let table: [(&[u8], Option<ConnectCause>); 6] = [
            (b"HTTP/1.1 400 Bad Request\r\n", Some(NotRedis)),
            (b"SSH-2.0-OpenSSH_9.2\r\n", Some(NotRedis)),
            (b"-ERR max number of clients reached\r\n", Some(ServerFull)),
            (b"-WRONGPASS invalid username-password pair\r\n", Some(Auth)),
            (b"+PONG\r\n", None),
            (b"", None),
        ];
        for (bytes, cause) in table {
            assert_eq!(ConnectCause::from_first_bytes(bytes), cause, "{bytes:?}");
        }
    }

    #[test]
    fn misconfigurations_are_the_causes_retrying_cannot_fix() {
        for cause in [Auth, NoPerm, Denied, NotRedis, Tls, UnknownHost, Rejected] {
            assert!(cause.is_misconfiguration(), "{cause}");
        }
        for cause in [
            Refused,
            Timeout,
            Dns,
            ServerFull,
            Closed,
            Io,
            Protocol,
            NotMaster,
            ServerError,
        ] {
            assert!(!cause.is_misconfiguration(), "{cause}");
        }
        assert!(!ServerBusy(BusyReason::Loading).is_misconfiguration());
    }

    #[test]
    fn names_round_trip() {
        for cause in [
            Refused,
            NotRedis,
            ServerBusy(BusyReason::MasterDown),
            Protocol,
        ] {
            assert_eq!(ConnectCause::parse(cause.as_str()), Some(cause));
            let json = serde_json::to_string(&cause).unwrap();
            assert_eq!(serde_json::from_str::<ConnectCause>(&json).unwrap(), cause);
        }
        assert_eq!(ConnectCause::parse("nonsense"), None);
    }

    #[test]
    fn evidence_is_cut_at_a_character_boundary() {
        let long = "é".repeat(200);
        let e = Evidence::new(&long);
        assert!(e.as_str().len() <= Evidence::CAPACITY);
        assert!(e.as_str().ends_with('…'));
        assert_eq!(
            Evidence::new("  HTTP/1.1 400\r\nServer: x ").as_str(),
            "HTTP/1.1 400  Server: x"
        );
        assert!(Evidence::new("").is_empty());
        let json = serde_json::to_string(&Evidence::new("WRONGPASS x")).unwrap();
        assert_eq!(json, "\"WRONGPASS x\"");
    }
}
