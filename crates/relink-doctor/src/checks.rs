//! The walk: the checks a Redis troubleshooting guide walks, in its order,
//! each printed as it is made. The connection is made exactly as relink's
//! client makes it (`Config::connection_info`, `connector::connect_multiplexed`),
//! and every failure is read by relink's own classifier
//! (`relink::classify::connect_cause`, `relink::diagnose::explain`): the
//! doctor adds the steps around the handshake and the words for a person,
//! never a second reading of errors.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{ConnectionAddr, ConnectionInfo, RedisConnectionInfo, RedisError};
use relink::classify::connect_cause;
use relink::connector::{connect_multiplexed, Connection, PushHandler};
use relink::core::BusyReason;
use relink::{Config, ConnectCause};
use tokio::time::timeout;

use crate::advice::{self, Target};
use crate::args::Options;
use crate::info::Info;
use crate::report::{Report, Verdict};

/// The slots of a Redis Cluster.
const CLUSTER_SLOTS: u64 = 16_384;
/// A median round trip from which the latency is worth a warning.
const SLOW_ROUND_TRIP: Duration = Duration::from_millis(100);

/// Runs every check for `opts` and prints the diagnosis; the exit code is
/// 0 when the server is usable, 1 when it is not, 2 for a bad URL.
pub async fn run(opts: &Options) -> ExitCode {
    let mut report = Report::new();
    let usable = match check_url(&mut report, opts) {
        Some(config) => match &opts.sentinel {
            Some(service) => via_sentinel(&mut report, &config, opts, service).await,
            None => direct(&mut report, &config, opts).await,
        },
        None => None,
    };
    let usable = usable.unwrap_or_else(|| Verdict::new("not usable", "see above"));
    report.finish(usable)
}

// ---- 1. the URL ---------------------------------------------------------------

fn check_url(report: &mut Report, opts: &Options) -> Option<Config> {
    match Config::new(&opts.url) {
        Ok(config) => {
            let config = config.with_connect_timeout(opts.timeout);
            report.ok("url", describe_url(&config));
            Some(config)
        }
        Err(relink::Error::TlsUnavailable { scheme, .. }) => {
            report.bad_input(
                "tls",
                format!("{scheme}:// is TLS, and this relink-doctor was built without TLS"),
                Verdict::new(
                    "this build of relink-doctor cannot check TLS URLs",
                    "build it with TLS: cargo install relink-doctor --features tls-rustls (in \
                     relink's repository: cargo run -p relink-doctor --features tls-rustls -- URL)",
                ),
            );
            None
        }
        Err(e) => {
            report.bad_input(
                "url",
                &e,
                Verdict::new(
                    "the URL is not valid, so nothing was checked",
                    "fix the URL: redis://[user[:password]@]host[:port][/db], rediss://... for \
                     TLS, redis+unix:///path?db=N (valkey:// and valkeys:// work too); \
                     percent-encode @ : / in a password",
                ),
            );
            None
        }
    }
}

fn describe_url(config: &Config) -> String {
    let info = config.connection_info();
    let settings = info.redis_settings();
    let mut text = format!("{} → {}", config.redacted_url(), describe_addr(info.addr()));
    let _ = write!(
        text,
        ", database {}, user {} {}, {}",
        config.database(),
        settings.username().unwrap_or("default"),
        if settings.password().is_some() {
            "with a password"
        } else {
            "without a password"
        },
        config.protocol().as_str().to_uppercase()
    );
    text
}

fn describe_addr(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(host, port) => format!("{host}:{port} over TCP"),
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure,
            ..
        } => format!(
            "{host}:{port} over TLS{}",
            if *insecure {
                " (certificate not verified)"
            } else {
                ""
            }
        ),
        ConnectionAddr::Unix(path) => format!("Unix socket {}", path.display()),
        other => other.to_string(),
    }
}

// ---- the two walks -----------------------------------------------------------

/// A server the URL names: reach it, then look at it.
async fn direct(report: &mut Report, config: &Config, opts: &Options) -> Option<Verdict> {
    let info = config.connection_info();
    let mut connection = reach(report, &info, config, opts, "").await?;
    let seen = inspect(report, &mut connection.conn, &info, config, opts, None).await?;
    let next = if seen.cluster {
        "none: connect with relink::ClusterClient (a ClusterConfig with this node's URL)".to_owned()
    } else {
        "none: relink::Client::new(Config::new(URL)?) connects as this doctor did".to_owned()
    };
    Some(Verdict::new(
        seen.summary(&describe_addr(info.addr())),
        next,
    ))
}

/// A sentinel the URL names: ask it for the master of `service`, reach the
/// master with the URL's credentials and database, check that it is one.
async fn via_sentinel(
    report: &mut Report,
    config: &Config,
    opts: &Options,
    service: &str,
) -> Option<Verdict> {
    let base = config.connection_info();
    // The URL's credentials and database are the master's (as in relink's
    // Config); the sentinel is asked without them.
    let sentinel_settings =
        RedisConnectionInfo::default().set_protocol(base.redis_settings().protocol());
    let sentinel_info = base.clone().set_redis_settings(sentinel_settings);
    let mut sentinel = reach(report, &sentinel_info, config, opts, "sentinel").await?;
    let (host, port) = master_of(report, &mut sentinel.conn, opts, service).await?;
    let master_addr = relink::connector::same_transport_at(base.addr(), host, port);
    let info = base.set_addr(master_addr);
    let mut connection = reach(report, &info, config, opts, "master").await?;
    let seen = inspect(
        report,
        &mut connection.conn,
        &info,
        config,
        opts,
        Some(service),
    )
    .await?;
    let next = format!(
        "none: relink::Client with a Config that has a [sentinel] section (service `{service}`, \
         this sentinel among its nodes) follows the master through failovers"
    );
    Some(Verdict::new(
        seen.summary(&format!("{} (via Sentinel)", describe_addr(info.addr()))),
        next,
    ))
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME`, and the sentinel's flags for it.
async fn master_of(
    report: &mut Report,
    conn: &mut MultiplexedConnection,
    opts: &Options,
    service: &str,
) -> Option<(String, u16)> {
    let asked = timeout(
        opts.timeout,
        redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(service)
            .query_async::<Option<(String, u16)>>(conn),
    )
    .await;
    let fail_next = "point the URL at a sentinel (port 26379 by default), or drop --sentinel \
                     to check a data server";
    match asked {
        Err(_) => {
            report.fail(
                "sentinel",
                format!("no reply within {}", human(opts.timeout)),
                Verdict::new("the sentinel does not answer", fail_next),
            );
            None
        }
        Ok(Err(err)) => {
            let finding = format!("SENTINEL GET-MASTER-ADDR-BY-NAME refused: {}", words(&err));
            report.fail(
                "sentinel",
                &finding,
                Verdict::new(
                    format!("the URL's server does not answer as a Sentinel: {finding}"),
                    fail_next,
                ),
            );
            None
        }
        Ok(Ok(None)) => {
            let names = monitored(conn, opts).await;
            let known = if names.is_empty() {
                "it monitors none".to_owned()
            } else {
                format!("it monitors: {}", names.join(", "))
            };
            report.fail(
                "sentinel",
                format!("no master named `{service}`; {known}"),
                Verdict::new(
                    format!("the sentinel monitors no master named `{service}` ({known})"),
                    "fix the service name (--sentinel NAME here, the [sentinel] service in \
                     relink's Config): SENTINEL MASTERS lists them",
                ),
            );
            None
        }
        Ok(Ok(Some((host, port)))) => {
            let state = timeout(
                opts.timeout,
                redis::cmd("SENTINEL")
                    .arg("MASTER")
                    .arg(service)
                    .query_async::<std::collections::HashMap<String, String>>(conn),
            )
            .await;
            let fields = match state {
                Ok(Ok(fields)) => fields,
                _ => Default::default(),
            };
            let flags = fields.get("flags").map_or("unknown", String::as_str);
            let finding =
                format!(
                "`{service}` is at {host}:{port} (flags {flags}, {} other sentinels, quorum {})",
                fields.get("num-other-sentinels").map_or("?", String::as_str),
                fields.get("quorum").map_or("?", String::as_str),
            );
            if flags.split(',').any(|f| f == "s_down" || f == "o_down") {
                report.warn(
                    "sentinel",
                    format!("{finding}: the sentinels see it down"),
                    "a failover may be under way: run the doctor again in a few seconds; the \
                     sentinels' logs say more",
                );
            } else {
                report.ok("sentinel", finding);
            }
            Some((host, port))
        }
    }
}

/// The names a sentinel monitors (`SENTINEL MASTERS`); empty when it will not say.
async fn monitored(conn: &mut MultiplexedConnection, opts: &Options) -> Vec<String> {
    let masters = timeout(
        opts.timeout,
        redis::cmd("SENTINEL")
            .arg("MASTERS")
            .query_async::<Vec<std::collections::HashMap<String, String>>>(conn),
    )
    .await;
    match masters {
        Ok(Ok(masters)) => masters
            .into_iter()
            .filter_map(|mut m| m.remove("name"))
            .collect(),
        _ => Vec::new(),
    }
}

// ---- 2-5. reaching a server ----------------------------------------------------

/// Who a connection step is for, named in the advice.
struct Endpoint {
    addr: String,
    host: String,
    user: String,
}

impl Endpoint {
    fn of(info: &ConnectionInfo) -> Endpoint {
        let (addr, host) = match info.addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                (format!("{host}:{port}"), host.clone())
            }
            ConnectionAddr::Unix(path) => (path.display().to_string(), path.display().to_string()),
            other => (other.to_string(), other.to_string()),
        };
        let user = info
            .redis_settings()
            .username()
            .unwrap_or("default")
            .to_owned();
        Endpoint { addr, host, user }
    }

    fn target(&self) -> Target<'_> {
        Target {
            addr: &self.addr,
            host: &self.host,
            user: &self.user,
        }
    }

    /// The verdict of a connection step that failed of `cause`.
    fn verdict(&self, cause: ConnectCause, finding: &str) -> Verdict {
        Verdict::new(
            advice::diagnosis(cause, finding),
            advice::next_step(cause, self.target()),
        )
    }
}

/// `check`, or `check (scope)` when a walk reaches more than one server.
fn named(check: &str, scope: &str) -> String {
    if scope.is_empty() {
        check.to_owned()
    } else {
        format!("{check} ({scope})")
    }
}

/// Name resolution, TCP (or the Unix socket), TLS and the handshake: the
/// connection, or `None` after a failure was reported.
async fn reach(
    report: &mut Report,
    info: &ConnectionInfo,
    config: &Config,
    opts: &Options,
    scope: &str,
) -> Option<Connection> {
    let endpoint = Endpoint::of(info);
    match info.addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            let addrs = resolve(report, host, *port, &endpoint, opts, scope).await?;
            tcp(report, &addrs, &endpoint, opts, scope).await?;
        }
        #[cfg(unix)]
        ConnectionAddr::Unix(path) => {
            let started = Instant::now();
            let connected = timeout(opts.timeout, tokio::net::UnixStream::connect(path)).await;
            let check = named("socket", scope);
            transport_result(report, &check, connected, started, &endpoint, opts)?;
        }
        _ => {}
    }
    handshake(report, info, config, &endpoint, opts, scope).await
}

/// Check 2: Name resolution: the addresses, deduplicated, in the resolver's order.
async fn resolve(
    report: &mut Report,
    host: &str,
    port: u16,
    endpoint: &Endpoint,
    opts: &Options,
    scope: &str,
) -> Option<Vec<SocketAddr>> {
    let check = named("resolve", scope);
    let looked_up = timeout(opts.timeout, tokio::net::lookup_host((host, port))).await;
    let failed = |report: &mut Report, cause: ConnectCause, evidence: &str| {
        let finding = advice::finding(cause, evidence, endpoint.target());
        report.fail(&check, &finding, endpoint.verdict(cause, &finding));
        None
    };
    match looked_up {
        Err(_) => failed(
            report,
            ConnectCause::Dns,
            &format!("no answer from the resolver within {}", human(opts.timeout)),
        ),
        Ok(Err(e)) => {
            let text = e.to_string();
            failed(report, connect_cause(&RedisError::from(e)), &text)
        }
        Ok(Ok(found)) => {
            let mut addrs: Vec<SocketAddr> = Vec::new();
            for addr in found {
                if !addrs.contains(&addr) {
                    addrs.push(addr);
                }
            }
            if addrs.is_empty() {
                return failed(report, ConnectCause::UnknownHost, "no addresses");
            }
            let list = addrs
                .iter()
                .map(|a| a.ip().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            if host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() {
                report.ok(&check, format!("{host} is an address: nothing to resolve"));
            } else {
                report.ok(&check, format!("{host} is {list}"));
            }
            Some(addrs)
        }
    }
}

/// Check 3: TCP: the first address that accepts, with the time it took.
async fn tcp(
    report: &mut Report,
    addrs: &[SocketAddr],
    endpoint: &Endpoint,
    opts: &Options,
    scope: &str,
) -> Option<()> {
    let check = named("tcp", scope);
    let mut first_failure = None;
    for addr in addrs {
        let started = Instant::now();
        match timeout(opts.timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_stream)) => {
                let others = match addrs.len() {
                    1 => String::new(),
                    n => format!(" (of {n} addresses)"),
                };
                report.ok(
                    &check,
                    format!(
                        "connected to {addr} in {}{others}",
                        human(started.elapsed())
                    ),
                );
                return Some(());
            }
            outcome => {
                first_failure.get_or_insert(outcome.map(|r| r.map(drop)));
            }
        }
    }
    let outcome = first_failure.unwrap_or(Ok(Ok(())));
    transport_result(report, &check, outcome, Instant::now(), endpoint, opts)
}

/// Reports a transport connect's outcome (TCP or a Unix socket).
fn transport_result<T>(
    report: &mut Report,
    check: &str,
    outcome: Result<std::io::Result<T>, tokio::time::error::Elapsed>,
    started: Instant,
    endpoint: &Endpoint,
    opts: &Options,
) -> Option<()> {
    let (cause, evidence) = match outcome {
        Ok(Ok(_)) => {
            report.ok(
                check,
                format!(
                    "{} accepts connections ({})",
                    endpoint.addr,
                    human(started.elapsed())
                ),
            );
            return Some(());
        }
        Ok(Err(e)) => {
            let text = e.to_string();
            (connect_cause(&RedisError::from(e)), text)
        }
        Err(_) => (
            ConnectCause::Timeout,
            format!("no answer within {}", human(opts.timeout)),
        ),
    };
    let finding = advice::finding(cause, &evidence, endpoint.target());
    report.fail(check, &finding, endpoint.verdict(cause, &finding));
    None
}

/// Check 4-5: TLS and the handshake, made by relink's own connector; a failure is
/// explained by relink's diagnose module (which asks the server again when
/// redis-rs dropped its words).
async fn handshake(
    report: &mut Report,
    info: &ConnectionInfo,
    config: &Config,
    endpoint: &Endpoint,
    opts: &Options,
    scope: &str,
) -> Option<Connection> {
    let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
    let started = Instant::now();
    let push: PushHandler = Arc::new(|_| {});
    let attempt = async {
        let client = redis::Client::open(info.clone())?;
        connect_multiplexed(&client, config, push).await
    };
    let (cause, evidence) = match timeout(opts.timeout, attempt).await {
        Ok(Ok(connection)) => {
            let took = human(started.elapsed());
            if let ConnectionAddr::TcpTls { insecure, .. } = info.addr() {
                if *insecure {
                    report.warn(
                        &named("tls", scope),
                        "encrypted, but the certificate is not verified (insecure)",
                        "trust the server's certificate here and drop `#insecure` from the URL: \
                         unverified TLS does not stop a man in the middle",
                    );
                } else {
                    report.ok(
                        &named("tls", scope),
                        format!("certificate verified for {}", endpoint.host),
                    );
                }
            }
            report.ok(
                &named("handshake", scope),
                format!("done in {took}: {}", handshake_words(info, config)),
            );
            return Some(connection);
        }
        Ok(Err(err)) => {
            let found = relink::diagnose::explain(info, &err, opts.timeout).await;
            (found.cause, found.evidence)
        }
        Err(_) => (
            ConnectCause::Timeout,
            format!("no reply to the handshake within {}", human(opts.timeout)),
        ),
    };
    let check = if tls && cause == ConnectCause::Tls {
        "tls"
    } else {
        "handshake"
    };
    let finding = advice::finding(cause, &evidence, endpoint.target());
    report.fail(
        &named(check, scope),
        &finding,
        endpoint.verdict(cause, &finding),
    );
    None
}

fn handshake_words(info: &ConnectionInfo, config: &Config) -> String {
    let settings = info.redis_settings();
    let user = settings.username().unwrap_or("default");
    let auth = if settings.password().is_some() {
        "authenticated"
    } else {
        "no password"
    };
    format!(
        "{}, user {user} ({auth}), database {}",
        config.protocol().as_str().to_uppercase(),
        settings.db()
    )
}

// ---- 6-9. looking at a server ------------------------------------------------

/// What the inspection saw, for the diagnosis of a usable server.
#[derive(Debug, Default)]
struct Seen {
    server: Option<String>,
    role: Option<String>,
    median: Option<Duration>,
    cluster: bool,
}

impl Seen {
    fn summary(&self, at: &str) -> String {
        let mut text = format!(
            "usable: {} {} at {at}",
            self.server.as_deref().unwrap_or("a server"),
            self.role.as_deref().unwrap_or("")
        )
        .replace("  ", " ");
        if let Some(median) = self.median {
            let _ = write!(text, ", round trip {}", human(median));
        }
        text
    }
}

/// PING and latency, loading, server, role, clients, cluster. `Some` when
/// nothing failed (warnings allowed); `sentinel_service` is set when the
/// server is the master a sentinel named (it must be a master).
async fn inspect(
    report: &mut Report,
    conn: &mut MultiplexedConnection,
    info: &ConnectionInfo,
    config: &Config,
    opts: &Options,
    sentinel_service: Option<&str>,
) -> Option<Seen> {
    let endpoint = Endpoint::of(info);
    let mut seen = Seen {
        median: ping(report, conn, &endpoint, opts).await,
        ..Seen::default()
    };
    let text = timeout(opts.timeout, redis::cmd("INFO").query_async::<String>(conn)).await;
    let server_info = match text {
        Ok(Ok(text)) => Info::parse(&text),
        Ok(Err(err)) => {
            report.warn(
                "info",
                format!(
                    "INFO refused: {}; loading, role and clients not checked",
                    words(&err)
                ),
                format!(
                    "grant user {} INFO (ACL SETUSER {} +info) to let the doctor see the \
                     server's state",
                    endpoint.user, endpoint.user
                ),
            );
            return (!report.failed()).then_some(seen);
        }
        Err(_) => {
            let finding = format!("no reply to INFO within {}", human(opts.timeout));
            report.fail(
                "info",
                &finding,
                endpoint.verdict(ConnectCause::Timeout, &finding),
            );
            return None;
        }
    };
    loading(report, &server_info, &endpoint);
    seen.server = server_info.server();
    let mode = server_info.get("redis_mode").unwrap_or("standalone");
    let uptime = server_info
        .count("uptime_in_seconds")
        .map(|s| format!(", up {}", human_secs(s)))
        .unwrap_or_default();
    report.ok(
        "server",
        format!(
            "{} ({mode}){uptime}",
            seen.server.as_deref().unwrap_or("unknown server")
        ),
    );
    if mode == "sentinel" {
        let names = monitored(conn, opts).await;
        let service = names.first().map_or("SERVICE", String::as_str);
        report.fail(
            "role",
            format!(
                "a Sentinel, not a data server; it monitors: {}",
                if names.is_empty() {
                    "nothing".to_owned()
                } else {
                    names.join(", ")
                }
            ),
            Verdict::new(
                "the URL names a Sentinel, which holds no data",
                format!(
                    "check the master it names: relink-doctor --sentinel {service} {}; in \
                     relink, give the Config a [sentinel] section (Config::with_sentinel)",
                    config.redacted_url()
                ),
            ),
        );
        return None;
    }
    seen.role = role(report, &server_info, sentinel_service);
    clients(report, conn, &server_info, opts).await;
    seen.cluster = server_info.flag("cluster_enabled");
    if opts.cluster || seen.cluster {
        cluster(report, conn, &server_info, opts).await;
    }
    (!report.failed()).then_some(seen)
}

/// Check 6: PING, `opts.samples` times: the round trip's min, median and max.
async fn ping(
    report: &mut Report,
    conn: &mut MultiplexedConnection,
    endpoint: &Endpoint,
    opts: &Options,
) -> Option<Duration> {
    let mut samples = Vec::new();
    for _ in 0..opts.samples {
        let started = Instant::now();
        let reply = timeout(opts.timeout, redis::cmd("PING").query_async::<String>(conn)).await;
        let (cause, evidence) = match reply {
            Ok(Ok(_pong)) => {
                samples.push(started.elapsed());
                continue;
            }
            Ok(Err(err)) => (connect_cause(&err), words(&err)),
            Err(_) => (
                ConnectCause::Timeout,
                format!("no PONG within {}", human(opts.timeout)),
            ),
        };
        let finding = advice::finding(cause, &evidence, endpoint.target());
        report.fail("ping", &finding, endpoint.verdict(cause, &finding));
        return None;
    }
    samples.sort();
    let (min, median, max) = (
        samples[0],
        samples[samples.len() / 2],
        samples[samples.len() - 1],
    );
    let finding = format!(
        "PONG; round trip min {}, median {}, max {} ({} samples)",
        human(min),
        human(median),
        human(max),
        samples.len()
    );
    if median >= SLOW_ROUND_TRIP {
        report.warn(
            "ping",
            format!("{finding}: slow"),
            "a slow round trip: a distant server, a saturated network, or a busy server \
             (SLOWLOG GET and LATENCY DOCTOR on the server)",
        );
    } else {
        report.ok("ping", finding);
    }
    Some(median)
}

/// Check 7: Loading: `INFO persistence`'s `loading`, with its progress.
fn loading(report: &mut Report, info: &Info, endpoint: &Endpoint) {
    if !info.flag("loading") {
        report.ok("loading", "no: the dataset is in memory");
        return;
    }
    let percent = info.number("loading_loaded_perc").unwrap_or(0.0);
    let left = info
        .count("loading_eta_seconds")
        .map(|s| format!(", about {} left", human_secs(s)))
        .unwrap_or_default();
    let finding = format!("loading, {percent:.0} %{left}");
    let cause = ConnectCause::ServerBusy(BusyReason::Loading);
    report.refine(
        "loading",
        &finding,
        Verdict::new(
            format!(
                "not usable yet: the server is {finding}; it answers commands with -LOADING \
                 until its dataset is in memory"
            ),
            advice::next_step(cause, endpoint.target()),
        ),
    );
}

/// Check 8: Role and replication; the role's name for the summary.
fn role(report: &mut Report, info: &Info, sentinel_service: Option<&str>) -> Option<String> {
    match info.get("role")? {
        "master" => {
            report.ok(
                "role",
                format!(
                    "master, {} connected replicas",
                    info.get("connected_slaves").unwrap_or("?")
                ),
            );
            Some("master".into())
        }
        "slave" => {
            let master = format!(
                "{}:{}",
                info.get("master_host").unwrap_or("?"),
                info.get("master_port").unwrap_or("?")
            );
            let link = info.get("master_link_status").unwrap_or("unknown");
            if let Some(service) = sentinel_service {
                report.fail(
                    "role",
                    format!("a replica of {master}, not a master"),
                    Verdict::new(
                        format!(
                            "the sentinels name a replica as the master of `{service}`: a \
                             failover is under way, or their view is stale"
                        ),
                        format!(
                            "run the doctor again in a few seconds; if it persists, compare \
                             SENTINEL MASTER {service} on each sentinel and read their logs"
                        ),
                    ),
                );
            } else if link == "up" {
                report.warn(
                    "role",
                    format!(
                        "replica of {master}, link up: reads work, writes are refused (READONLY)"
                    ),
                    format!("point writers at the master {master}; reads from here are fine"),
                );
            } else {
                let since = info
                    .count("master_link_down_since_seconds")
                    .map(|s| format!(" for {}", human_secs(s)))
                    .unwrap_or_default();
                report.warn(
                    "role",
                    format!(
                        "replica of {master}, link {link}{since}: reads may be stale, writes are \
                         refused"
                    ),
                    format!(
                        "check the master {master} and the replication link (INFO replication on \
                         both, the replica's log)"
                    ),
                );
            }
            Some("replica".into())
        }
        other => {
            report.ok("role", other);
            Some(other.to_owned())
        }
    }
}

/// Check 8: Clients: connected against `maxclients` (`CONFIG GET`, which an ACL
/// may refuse: then the limit is unknown, not a failure).
async fn clients(
    report: &mut Report,
    conn: &mut MultiplexedConnection,
    info: &Info,
    opts: &Options,
) {
    let Some(connected) = info.count("connected_clients") else {
        return;
    };
    let blocked = info
        .count("blocked_clients")
        .filter(|&n| n > 0)
        .map(|n| format!(", {n} blocked"))
        .unwrap_or_default();
    let asked = timeout(
        opts.timeout,
        redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxclients")
            .query_async::<std::collections::HashMap<String, String>>(conn),
    )
    .await;
    let limit = match asked {
        Ok(Ok(fields)) => fields
            .get("maxclients")
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| "no maxclients in the reply".to_owned()),
        Ok(Err(err)) => Err(format!("CONFIG GET refused: {}", words(&err))),
        Err(_) => Err(format!(
            "no reply to CONFIG GET within {}",
            human(opts.timeout)
        )),
    };
    match limit {
        Ok(max) if connected.saturating_mul(10) >= max.saturating_mul(9) => report.warn(
            "clients",
            format!("{connected} connected of maxclients {max}{blocked}: nearly full"),
            "find who holds the connections (CLIENT LIST: a leak, an oversized pool), close \
             idle ones (the timeout setting), or raise maxclients",
        ),
        Ok(max) => report.ok(
            "clients",
            format!("{connected} connected of maxclients {max}{blocked}"),
        ),
        Err(why) => report.ok(
            "clients",
            format!("{connected} connected{blocked}; maxclients unknown ({why})"),
        ),
    }
}

/// Check 9: Cluster: `CLUSTER INFO`'s state, slots and nodes.
async fn cluster(
    report: &mut Report,
    conn: &mut MultiplexedConnection,
    info: &Info,
    opts: &Options,
) {
    if !info.flag("cluster_enabled") {
        report.fail(
            "cluster",
            "--cluster given, but the server is not in cluster mode (cluster_enabled:0)",
            Verdict::new(
                "the URL names a standalone server, not a cluster node",
                "use relink::Client for a standalone server, or point the URL at a node of \
                 the cluster",
            ),
        );
        return;
    }
    let asked = timeout(
        opts.timeout,
        redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async::<String>(conn),
    )
    .await;
    let state = match asked {
        Ok(Ok(text)) => Info::parse(&text),
        Ok(Err(err)) => {
            report.warn(
                "cluster",
                format!("CLUSTER INFO refused: {}", words(&err)),
                "grant the user CLUSTER INFO to let the doctor see the cluster's state",
            );
            return;
        }
        Err(_) => {
            report.warn(
                "cluster",
                format!("no reply to CLUSTER INFO within {}", human(opts.timeout)),
                "the node is slow to answer: check its log and CPU",
            );
            return;
        }
    };
    let field = |name: &str| state.get(name).unwrap_or("?").to_owned();
    let slots_ok = state.count("cluster_slots_ok").unwrap_or(0);
    let finding = format!(
        "state {}, {}/{CLUSTER_SLOTS} slots assigned, {slots_ok} ok ({} pfail, {} fail), {} \
         known nodes, {} masters with slots",
        field("cluster_state"),
        field("cluster_slots_assigned"),
        field("cluster_slots_pfail"),
        field("cluster_slots_fail"),
        field("cluster_known_nodes"),
        field("cluster_size"),
    );
    if state.get("cluster_state") != Some("ok") {
        report.fail(
            "cluster",
            &finding,
            Verdict::new(
                format!("the cluster is down and refuses commands (CLUSTERDOWN): {finding}"),
                "CLUSTER NODES shows the failing nodes and the unassigned slots: bring the \
                 nodes back, fail over, or assign the slots (redis-cli --cluster fix)",
            ),
        );
    } else if slots_ok < CLUSTER_SLOTS {
        report.warn(
            "cluster",
            finding,
            "some slots are not served: CLUSTER NODES shows which nodes fail",
        );
    } else {
        report.ok("cluster", finding);
    }
}

/// The server's words for an error reply (`LOADING Redis is loading ...`),
/// else redis-rs's text.
fn words(err: &RedisError) -> String {
    relink::classify::server_words(err).unwrap_or_else(|| err.to_string())
}

/// A duration for people: `0.12 ms`, `12.3 ms`, `1.25 s`, `3 min 20 s`.
fn human(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else if d.as_secs() < 60 {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        human_secs(d.as_secs())
    }
}

/// Whole seconds for people: `42 s`, `3 min 20 s`, `5 h 2 min`, `3 d 4 h`.
fn human_secs(s: u64) -> String {
    match s {
        0..60 => format!("{s} s"),
        60..3_600 => format!("{} min {} s", s / 60, s % 60),
        3_600..86_400 => format!("{} h {} min", s / 3_600, s % 3_600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3_600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_micros(120)), "0.12 ms");
        assert_eq!(human(Duration::from_micros(12_345)), "12.3 ms");
        assert_eq!(human(Duration::from_millis(1_250)), "1.25 s");
        assert_eq!(human(Duration::from_secs(200)), "3 min 20 s");
        assert_eq!(human_secs(0), "0 s");
        assert_eq!(human_secs(18_120), "5 h 2 min");
        assert_eq!(human_secs(273_600), "3 d 4 h");
    }
}
