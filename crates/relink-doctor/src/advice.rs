//! What to do about a failed connection, per [`ConnectCause`]. The cause
//! itself always comes from relink (`relink::classify`, `relink::diagnose`):
//! this module only words the next step for a person at a terminal.

use relink::core::BusyReason;
use relink::ConnectCause;

/// Where the failed step was going: for naming it in the advice.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// `host:port`, or a Unix socket's path.
    pub addr: &'a str,
    /// The host name alone (the path for a Unix socket).
    pub host: &'a str,
    /// The user the handshake authenticates as.
    pub user: &'a str,
}

/// The finding line of a failed connection step: the cause in words, with
/// the evidence, phrased for the causes people meet most.
pub fn finding(cause: ConnectCause, evidence: &str, target: Target<'_>) -> String {
    let evidence = evidence.trim();
    match cause {
        // The core's words ("connection refused (nothing listening on the
        // port)") said once, with the address.
        ConnectCause::Refused => format!(
            "connection refused: nothing listens on {}: is the server running, is the port right?",
            target.addr
        ),
        ConnectCause::NotRedis if !evidence.is_empty() => format!(
            "{}: port open, but it answered `{evidence}`",
            cause.describe()
        ),
        ConnectCause::Auth if !evidence.is_empty() => format!(
            "{}: {evidence} (for user {})",
            cause.describe(),
            target.user
        ),
        _ if evidence.is_empty() => cause.describe().to_owned(),
        _ => format!("{}: {evidence}", cause.describe()),
    }
}

/// The diagnosis for a failed connection step: the finding, labelled a
/// misconfiguration (retrying will not fix it) or a server problem.
pub fn diagnosis(cause: ConnectCause, finding: &str) -> String {
    if cause.is_misconfiguration() {
        format!(
            "misconfiguration ({}; retrying will not fix it): {finding}",
            cause.as_str()
        )
    } else {
        format!(
            "not usable now ({}; a client would keep retrying): {finding}",
            cause.as_str()
        )
    }
}

/// The next step for a failed connection of `cause`.
pub fn next_step(cause: ConnectCause, target: Target<'_>) -> String {
    let Target { addr, host, user } = target;
    match cause {
        ConnectCause::Refused => format!(
            "start the server (or wait for its restart), or fix the port in the URL; on the \
             server's host, `ss -ltnp` shows what listens where; is {addr} its address?"
        ),
        ConnectCause::Timeout => format!(
            "nothing answered within the timeout: check firewalls and security groups between \
             here and {addr}, that the host is up, and that the server is not frozen (its log, \
             its CPU); a longer --timeout tells a slow server from a dead path"
        ),
        ConnectCause::UnknownHost => format!(
            "fix the host name in the URL: `{host}` does not resolve (a typo, a missing \
             /etc/hosts entry or DNS record)"
        ),
        ConnectCause::Dns => "the resolver failed for now: check DNS (/etc/resolv.conf, the \
                              resolver's health), then run the doctor again"
            .to_owned(),
        ConnectCause::Unreachable => format!(
            "no route to {host}: check the network, the VPN and the routes between here and it"
        ),
        ConnectCause::Tls => format!(
            "check the TLS setup: the server's certificate must be trusted here and name \
             `{host}`, and {addr} must speak TLS (a plain port wants redis://, a TLS port \
             rediss://)"
        ),
        ConnectCause::Auth => format!(
            "fix the credentials in the URL (redis://{user}:PASSWORD@...): the server refused \
             them for user {user}; on the server, ACL LIST shows the users and whether {user} is \
             on (a password with @, : or / must be percent-encoded)"
        ),
        ConnectCause::NoPerm => format!(
            "grant user {user} the commands of the handshake (HELLO, AUTH, CLIENT, SELECT, PING): \
             ACL SETUSER {user} +@connection, or connect as another user"
        ),
        ConnectCause::Denied => "the server is in protected mode: give it a password \
                                 (requirepass or an ACL user) and use it in the URL, or bind it \
                                 to this network explicitly (protected-mode no)"
            .to_owned(),
        ConnectCause::NotRedis => format!(
            "something other than Redis listens on {addr}: find the Redis port (6379 by \
             default; `ss -ltnp` on the server) or the service that took this one"
        ),
        ConnectCause::ServerFull => "the server has maxclients connections: find who holds \
                                     them (CLIENT LIST; a connection leak, an idle pool), close \
                                     idle ones (the timeout setting), or raise maxclients"
            .to_owned(),
        ConnectCause::ServerBusy(BusyReason::Loading) => "wait until the dataset is loaded \
                                                          (INFO persistence shows the progress); \
                                                          relink's Client queues commands \
                                                          meanwhile"
            .to_owned(),
        ConnectCause::ServerBusy(BusyReason::Busy) => "a script or function runs past \
                                                       busy-reply-threshold: wait, or stop it \
                                                       (SCRIPT KILL, FUNCTION KILL)"
            .to_owned(),
        ConnectCause::ServerBusy(BusyReason::MasterDown) => "the replica has lost its master: \
                                                             check the master and the link \
                                                             (INFO replication on both)"
            .to_owned(),
        ConnectCause::ServerBusy(BusyReason::ReadOnly) => "this is a read-only replica: point \
                                                           writers at the master"
            .to_owned(),
        ConnectCause::NotMaster => format!(
            "{addr} is not (yet) the master: a failover is under way or a view is stale; run \
             the doctor again in a few seconds, and if it persists compare what the sentinels \
             (SENTINEL MASTER) or the cluster (CLUSTER NODES) say"
        ),
        ConnectCause::Rejected => "the server rejected a command of the handshake: check the \
                                   database number in the URL (the server has `databases` of \
                                   them; a cluster has only 0) and the protocol (servers before \
                                   6 need ?protocol=resp2)"
            .to_owned(),
        ConnectCause::Closed => "the server closed the connection during the handshake: its \
                                 log says why (maxclients, protected mode, a TLS-only port, a \
                                 proxy in between)"
            .to_owned(),
        _ => format!("look at the evidence above and at the log of the server at {addr}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Target<'static> = Target {
        addr: "db:6379",
        host: "db",
        user: "default",
    };

    #[test]
    fn findings_quote_the_evidence() {
        assert_eq!(
            finding(ConnectCause::NotRedis, "HTTP/1.1 400 Bad Request", TARGET),
            "not a Redis server: port open, but it answered `HTTP/1.1 400 Bad Request`"
        );
        assert_eq!(
            finding(ConnectCause::Auth, "WRONGPASS invalid", TARGET),
            "authentication failed: WRONGPASS invalid (for user default)"
        );
        assert!(finding(ConnectCause::Refused, "", TARGET).contains("nothing listens on db:6379"));
        assert_eq!(
            finding(ConnectCause::Timeout, " ", TARGET),
            ConnectCause::Timeout.describe()
        );
    }

    #[test]
    fn misconfigurations_are_told_from_outages() {
        assert!(diagnosis(ConnectCause::Auth, "x").starts_with("misconfiguration"));
        assert!(diagnosis(ConnectCause::Refused, "x").starts_with("not usable now"));
        assert!(next_step(ConnectCause::UnknownHost, TARGET).contains("`db` does not resolve"));
    }
}
