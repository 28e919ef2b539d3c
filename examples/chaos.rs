//! The chaos soak (`cargo xtask chaos [--seed N] [--duration 60s] [--faults N]`):
//! a seeded storm of real faults against a spawned redis-server while a
//! workload runs through relink, with the invariants checked from the
//! server's side at the end.
//!
//! - The server runs with AOF `appendfsync always` (a killed server keeps
//!   what it acknowledged) behind the test support's fault proxy.
//! - Workload, through relink: writers (`INCR` on counters, `SET` of unique
//!   keys, recording acknowledged / unknown / not applied), readers (`GET`
//!   of acknowledged keys), a Pub/Sub subscriber (gap markers counted), a
//!   state-sync `Publisher` on a topic with a tiny retention (so trims force
//!   full resyncs), two `Follower`s checked update by update, and a
//!   `SyncedMap`; a job queue (producers `LPUSH` uniquely numbered jobs,
//!   consumers take them with `BLPOP`, which relink runs on exclusive
//!   connections) and a counter incremented with `WATCH`/`MULTI`/`EXEC` on
//!   leased connections (`Client::exclusive`), retried on a nil `EXEC`; a
//!   cached reader: a client of its own with client-side caching on,
//!   `GET`ting the writers' counters.
//! - Faults, from a schedule that is a pure function of the seed (kinds,
//!   order, durations, gaps): kill -9 + restart, SIGSTOP/SIGCONT, graceful
//!   `SHUTDOWN` + restart, proxy cut / reset / blackhole / latency / drop
//!   replies / refuse, `CLIENT KILL` of relink's own connections (all, or by
//!   client name), and bursts of them back to back.
//! - At the end: every acknowledged SET present; each counter between its
//!   acknowledged increments and acknowledged + unknown; every follower saw
//!   every sequence number exactly once, in order, between resyncs, and its
//!   mirror equals the server's state; no job taken twice, none appeared
//!   whose push was refused, and every acknowledged job taken or still
//!   queued but for at most one per `BLPOP` of unknown outcome; the
//!   transaction counter between its acknowledged `EXEC`s and acknowledged +
//!   unknown (no lost update, none applied twice), and every `EXEC` run on
//!   the connection its `WATCH` was on (`CLIENT ID`); no stale read from the
//!   cache after a gap: a cached read started after the cached client's
//!   return (the `since` of its Ready health, read at its
//!   `Event::Reconnected`) gives each counter at least the newest value an
//!   `INCR` acknowledged before that return (counters only grow, so the
//!   server has at least that); health back to Ready
//!   after every fault; no panic; no task left after shutdown; peak RSS
//!   under a bound.
//!   Any violation makes the exit code non-zero.
//!
//! `--dry-run` prints the schedule only (same seed, same schedule). A log of
//! every step goes to `target/relink-chaos-seed<N>.log`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::AsyncCommands;
use relink::cache::CacheConfig;
use relink::core::backoff::{BackoffPolicy, Jitter, Strategy};
use relink::core::rng::SplitMix64;
use relink::core::supervisor::HeartbeatConfig;
use relink::core::sync::Epoch;
use relink::sync::{Change, Follower, Publisher, SyncEvent, SyncedMap, TopicOptions};
use relink::{Client, Config, Error, Event, Outcome, State};
use relink_examples::{parse_soak_args, Numbered};
use relink_testkit::{FaultProxy, RedisServer};

/// Writers, each with its own key space; they share `COUNTERS` counters.
const WRITERS: usize = 4;
const COUNTERS: usize = 4;
const READERS: usize = 2;
/// Pause between two iterations of a writer (INCR + SET), to keep the data
/// set (and so the AOF reload time after a kill) moderate over long runs.
const WRITER_PACE: Duration = Duration::from_millis(3);
/// The job queue: producers `LPUSH` jobs `<producer>:<n>`, consumers `BLPOP` them.
const PRODUCERS: usize = 2;
const CONSUMERS: usize = 3;
const JOBS: &str = "chaos:jobs";
/// Pause between two pushes of a producer: consumers keep up, so their
/// `BLPOP`s mostly block (the case that matters) rather than find a backlog.
const PRODUCER_PACE: Duration = Duration::from_millis(4);
/// A consumer's `BLPOP` timeout, in seconds: short, so consumers loop.
const BLPOP_TIMEOUT: f64 = 1.0;
/// Tasks incrementing one counter with `WATCH`/`MULTI`/`EXEC` on leases.
const TX_TASKS: usize = 3;
const TX_COUNTER: &str = "chaos:tx-counter";
/// Pause between two increments of a transaction task.
const TX_PACE: Duration = Duration::from_millis(2);
/// Nil `EXEC`s (lost races) one increment retries before it gives up.
const TX_ATTEMPTS: u32 = 1_000;
/// Every `TX_THINK_EVERY`th increment thinks for `TX_THINK` between its
/// `GET` and its `EXEC` (a slow computation), so faults land in between.
const TX_THINK_EVERY: u32 = 8;
const TX_THINK: Duration = Duration::from_millis(30);
const TOPIC: &str = "chaos";
const NEWS: &str = "chaos:news";
/// Log entries the topic keeps (approximately; the server runs with
/// `stream-node-max-entries 10`, so trimming is fine-grained).
const RETENTION: u64 = 20;
/// Peak RSS (VmHWM) allowed for this process.
const RSS_BOUND_MIB: u64 = 64;
/// How long every client may take to be Ready again after a fault is mended.
const READY_BOUND: Duration = Duration::from_secs(30);
/// How long the followers may take to catch up at the end.
const CATCH_UP_BOUND: Duration = Duration::from_secs(30);
/// How long a worker may take to stop once asked.
const STOP_BOUND: Duration = Duration::from_secs(20);
/// How long the tasks may take to end after the clients shut down.
const TASKS_BOUND: Duration = Duration::from_secs(10);
/// A Pub/Sub gap counts as marked when a gap marker arrived this close to it.
const MARKER_WINDOW: Duration = Duration::from_secs(3);
/// Schedule lines printed before the run.
const PREVIEW: usize = 12;
/// Violations kept verbatim (the rest are counted).
const KEEP: usize = 20;

/// The relink clients, by index; also their `CLIENT SETNAME`s.
const CLIENTS: [&str; 5] = [
    "chaos-work",
    "chaos-follow-a",
    "chaos-follow-b",
    "chaos-mirror",
    "chaos-cached",
];
const WORK: usize = 0;
/// The client with client-side caching on, for the cached reader alone.
const CACHED: usize = 4;
/// Acknowledged `INCR`s remembered per counter, with when (at the writers'
/// pace, seconds of them: far more than a return takes to be noted).
const ACK_LOG: usize = 4096;
/// The cached reader sleeps this long after each round of its counters.
const CACHED_PACE: Duration = Duration::from_millis(1);

static PANICS: AtomicU64 = AtomicU64::new(0);

// ---------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Args {
    seed: u64,
    duration: Duration,
    faults: Option<u64>,
    dry_run: bool,
    verbose: bool,
}

const USAGE: &str = "usage: chaos [--seed N] [--duration 60s] [--faults N] [--dry-run] [--verbose]
  --seed N        seed of the fault schedule (default: from the clock; printed)
  --duration D    how long to inject faults: 500ms, 30s, 10m, 1h (default 60s)
  --faults N      stop after N faults (default: no limit; the duration ends it)
  --dry-run       print the schedule (the first N faults, default 50) and exit
  --verbose       print every step, not only the log file";

fn parse_args() -> Result<Args, String> {
    let (mut faults, mut dry_run, mut verbose) = (None, false, false);
    let soak = parse_soak_args(Duration::from_secs(60), |arg, value| {
        match arg {
            "--faults" => {
                let v = value()?;
                faults = Some(v.parse().map_err(|_| format!("bad fault count `{v}`"))?);
            }
            "--dry-run" => dry_run = true,
            "--verbose" | "-v" => verbose = true,
            "-h" | "--help" => return Err(String::new()),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(Args {
        seed: soak.seed,
        duration: soak.duration,
        faults,
        dry_run,
        verbose,
    })
}

// ---------------------------------------------------------------------------
// The schedule: a pure function of the seed
// ---------------------------------------------------------------------------

/// One fault, with its parameters (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SIGKILL, down for `down`, restart (same port, same AOF).
    Kill { down: u64 },
    /// SIGSTOP for `hold`, then SIGCONT.
    Pause { hold: u64 },
    /// The `SHUTDOWN` command, down for `down`, restart.
    Shutdown { down: u64 },
    /// Every proxied connection closed with FIN.
    Cut,
    /// Every proxied connection closed with RST.
    Reset,
    /// No byte flows either way for `hold` (held bytes flow after).
    Blackhole { hold: u64 },
    /// Each chunk held `delay` each way, for `hold`.
    Latency { delay: u64, hold: u64 },
    /// Commands reach the server, replies are discarded, for `hold`; then the
    /// connections are cut (a real link never loses bytes mid-stream).
    DropReplies { hold: u64 },
    /// New connections refused and current ones cut, for `hold`.
    Refuse { hold: u64 },
    /// `CLIENT KILL TYPE normal SKIPME yes` and `TYPE pubsub`: every client.
    KillClients,
    /// `CLIENT KILL ID` of the connections named `CLIENTS[i]`.
    KillNamed(usize),
}

/// The summary row of the outages of bursts (after the kinds).
const BURST: usize = KINDS.len();

fn row_name(row: usize) -> &'static str {
    KINDS
        .get(row)
        .copied()
        .unwrap_or("burst (of the kinds above)")
}

const KINDS: [&str; 11] = [
    "kill -9 + restart",
    "SIGSTOP / SIGCONT",
    "SHUTDOWN + restart",
    "proxy cut (FIN)",
    "proxy reset (RST)",
    "proxy blackhole",
    "proxy latency",
    "proxy drop replies",
    "proxy refuse",
    "CLIENT KILL (all)",
    "CLIENT KILL (by name)",
];

impl Fault {
    fn kind(&self) -> usize {
        match self {
            Fault::Kill { .. } => 0,
            Fault::Pause { .. } => 1,
            Fault::Shutdown { .. } => 2,
            Fault::Cut => 3,
            Fault::Reset => 4,
            Fault::Blackhole { .. } => 5,
            Fault::Latency { .. } => 6,
            Fault::DropReplies { .. } => 7,
            Fault::Refuse { .. } => 8,
            Fault::KillClients => 9,
            Fault::KillNamed(_) => 10,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Fault::Kill { down } => write!(f, "kill -9, restart after {down} ms"),
            Fault::Pause { hold } => write!(f, "SIGSTOP for {hold} ms"),
            Fault::Shutdown { down } => write!(f, "SHUTDOWN, restart after {down} ms"),
            Fault::Cut => write!(f, "proxy cut (FIN)"),
            Fault::Reset => write!(f, "proxy reset (RST)"),
            Fault::Blackhole { hold } => write!(f, "blackhole for {hold} ms"),
            Fault::Latency { delay, hold } => write!(f, "+{delay} ms latency for {hold} ms"),
            Fault::DropReplies { hold } => write!(f, "drop replies for {hold} ms, then cut"),
            Fault::Refuse { hold } => write!(f, "refuse connections for {hold} ms"),
            Fault::KillClients => write!(f, "CLIENT KILL TYPE normal|pubsub SKIPME yes"),
            Fault::KillNamed(i) => write!(f, "CLIENT KILL ID <{}>", CLIENTS[i]),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    One(Fault),
    /// Faults back to back, with no wait for recovery in between.
    Burst(Vec<Fault>),
    /// Not a fault: the topic is deleted, so followers resync to a new epoch.
    TopicReset,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Planned {
    step: Step,
    /// Quiet time after the step has recovered.
    gap: u64,
}

impl fmt::Display for Planned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.step {
            Step::One(fault) => write!(f, "{fault}")?,
            Step::Burst(faults) => {
                write!(f, "burst of {}: ", faults.len())?;
                for (i, fault) in faults.iter().enumerate() {
                    write!(f, "{}{fault}", if i > 0 { "; " } else { "" })?;
                }
            }
            Step::TopicReset => write!(f, "topic reset (not a fault)")?,
        }
        write!(f, " | gap {} ms", self.gap)
    }
}

/// The fault schedule: the same seed gives the same steps, whatever the
/// timing of the run (nothing else draws from this generator).
#[derive(Debug, Clone)]
struct Schedule {
    rng: SplitMix64,
}

impl Schedule {
    fn new(seed: u64) -> Schedule {
        Schedule {
            rng: SplitMix64::new(seed),
        }
    }

    fn r(&mut self, lo: u64, hi: u64) -> u64 {
        self.rng.range_inclusive(lo, hi)
    }

    fn next_step(&mut self) -> Planned {
        let roll = self.r(0, 99);
        let step = if roll < 2 {
            Step::TopicReset
        } else if roll < 24 {
            let n = self.r(3, 6);
            Step::Burst((0..n).map(|_| self.fault(true)).collect())
        } else {
            Step::One(self.fault(false))
        };
        let gap = if self.r(0, 24) == 0 {
            self.r(800, 2000)
        } else {
            self.r(20, 150)
        };
        Planned { step, gap }
    }

    fn fault(&mut self, burst: bool) -> Fault {
        // (weight, kind); shorter holds inside bursts.
        const WEIGHTS: [u64; 11] = [11, 10, 6, 10, 10, 10, 7, 7, 7, 8, 8];
        let total: u64 = WEIGHTS.iter().sum();
        let mut pick = self.r(0, total - 1);
        let mut kind = 0;
        for (i, w) in WEIGHTS.iter().enumerate() {
            if pick < *w {
                kind = i;
                break;
            }
            pick -= w;
        }
        let (down_hi, hold_lo, hold_hi) = if burst {
            (100, 30, 300)
        } else {
            (400, 80, 700)
        };
        match kind {
            0 => Fault::Kill {
                down: self.r(0, down_hi),
            },
            1 => Fault::Pause {
                hold: self.r(hold_lo, hold_hi),
            },
            2 => Fault::Shutdown {
                down: self.r(0, down_hi),
            },
            3 => Fault::Cut,
            4 => Fault::Reset,
            5 => Fault::Blackhole {
                hold: self.r(hold_lo, hold_hi),
            },
            6 => Fault::Latency {
                delay: self.r(5, 120),
                hold: self.r(hold_lo * 3, hold_hi + 500),
            },
            7 => Fault::DropReplies {
                hold: self.r(hold_lo * 2, hold_hi + 200),
            },
            8 => Fault::Refuse {
                hold: self.r(hold_lo / 2, hold_hi / 2),
            },
            9 => Fault::KillClients,
            _ => Fault::KillNamed(self.r(0, CLIENTS.len() as u64 - 1) as usize),
        }
    }
}

// ---------------------------------------------------------------------------
// The lab: the server, the proxy, and how faults are made (blocking calls)
// ---------------------------------------------------------------------------

struct Lab {
    server: Mutex<RedisServer>,
    proxy: FaultProxy,
    /// For CLIENT KILL, SHUTDOWN and the final checks: straight to the server.
    direct: redis::Client,
}

impl Lab {
    fn server(&self) -> MutexGuard<'_, RedisServer> {
        self.server.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn connection(&self) -> Result<redis::Connection, String> {
        let timeout = Duration::from_secs(5);
        let con = self
            .direct
            .get_connection_with_timeout(timeout)
            .map_err(|e| format!("direct connection: {e}"))?;
        con.set_read_timeout(Some(timeout))
            .and_then(|()| con.set_write_timeout(Some(timeout)))
            .map_err(|e| format!("direct connection: {e}"))?;
        Ok(con)
    }

    /// Breaks something and mends it; returns when the fault is over (the
    /// server up, the proxy passing), not when relink has recovered.
    fn inject(&self, fault: Fault) -> Result<(), String> {
        let ms = Duration::from_millis;
        match fault {
            Fault::Kill { down } => {
                let mut s = self.server();
                s.kill();
                std::thread::sleep(ms(down));
                s.restart();
            }
            Fault::Pause { hold } => {
                let mut s = self.server();
                s.pause();
                std::thread::sleep(ms(hold));
                s.resume();
            }
            Fault::Shutdown { down } => {
                let mut s = self.server();
                let mut con = self.connection()?;
                // The server closes the connection as it goes: no reply.
                let _ = redis::cmd("SHUTDOWN").query::<redis::Value>(&mut con);
                let deadline = Instant::now() + Duration::from_secs(10);
                while s.is_running() && Instant::now() < deadline {
                    std::thread::sleep(ms(5));
                }
                if s.is_running() {
                    return Err("SHUTDOWN did not stop the server within 10 s".into());
                }
                std::thread::sleep(ms(down));
                s.restart();
            }
            Fault::Cut => self.proxy.cut(),
            Fault::Reset => self.proxy.reset(),
            Fault::Blackhole { hold } => {
                self.proxy.blackhole();
                std::thread::sleep(ms(hold));
                self.proxy.pass();
            }
            Fault::Latency { delay, hold } => {
                self.proxy.delay(ms(delay));
                std::thread::sleep(ms(hold));
                self.proxy.pass();
            }
            Fault::DropReplies { hold } => {
                self.proxy.drop_replies();
                std::thread::sleep(ms(hold));
                self.proxy.cut();
                self.proxy.pass();
            }
            Fault::Refuse { hold } => {
                self.proxy.refuse();
                std::thread::sleep(ms(hold));
                self.proxy.pass();
            }
            Fault::KillClients => {
                let mut con = self.connection()?;
                for kind in ["normal", "pubsub"] {
                    redis::cmd("CLIENT")
                        .arg("KILL")
                        .arg("TYPE")
                        .arg(kind)
                        .arg("SKIPME")
                        .arg("yes")
                        .query::<i64>(&mut con)
                        .map_err(|e| format!("CLIENT KILL TYPE {kind}: {e}"))?;
                }
            }
            Fault::KillNamed(i) => {
                let mut con = self.connection()?;
                let list: String = redis::cmd("CLIENT")
                    .arg("LIST")
                    .query(&mut con)
                    .map_err(|e| format!("CLIENT LIST: {e}"))?;
                for id in client_ids(&list, CLIENTS[i]) {
                    // 0 when it went away meanwhile: fine.
                    let _ = redis::cmd("CLIENT")
                        .arg("KILL")
                        .arg("ID")
                        .arg(id)
                        .query::<i64>(&mut con);
                }
            }
        }
        Ok(())
    }
}

/// The ids of the connections called `name` in a `CLIENT LIST` reply.
fn client_ids(list: &str, name: &str) -> Vec<u64> {
    list.lines()
        .filter_map(|line| {
            let mut id = None;
            let mut named = false;
            for field in line.split(' ') {
                if let Some(v) = field.strip_prefix("id=") {
                    id = v.parse().ok();
                } else if let Some(v) = field.strip_prefix("name=") {
                    named = v == name;
                }
            }
            id.filter(|_| named)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Bookkeeping shared by the tasks
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    incr_acked: [AtomicU64; COUNTERS],
    incr_unknown: [AtomicU64; COUNTERS],
    incr_not_applied: AtomicU64,
    incr_rejected: AtomicU64,
    set_acked: AtomicU64,
    set_unknown: AtomicU64,
    set_not_applied: AtomicU64,
    set_rejected: AtomicU64,
    get_ok: AtomicU64,
    get_failed: AtomicU64,
    stale: AtomicU64,
    /// The cached reader's `GET`s: answered, failed, started after a
    /// return of the cached client (so checked), and stale after a gap.
    cached_ok: AtomicU64,
    cached_failed: AtomicU64,
    cached_checked: AtomicU64,
    cached_stale: AtomicU64,
    pub_acked: AtomicU64,
    pub_failed: AtomicU64,
    news_sent: AtomicU64,
    news_failed: AtomicU64,
    push_acked: AtomicU64,
    push_unknown: AtomicU64,
    push_not_applied: AtomicU64,
    push_rejected: AtomicU64,
    pop_taken: AtomicU64,
    pop_empty: AtomicU64,
    pop_unknown: AtomicU64,
    pop_not_applied: AtomicU64,
    pop_rejected: AtomicU64,
    tx_acked: AtomicU64,
    tx_unknown: AtomicU64,
    tx_not_applied: AtomicU64,
    tx_rejected: AtomicU64,
    /// Nil `EXEC`s: another transaction changed the counter first; retried.
    tx_conflicts: AtomicU64,
    /// `WATCH` + `GET` failed: nothing written; the increment starts over.
    tx_read_failed: AtomicU64,
    /// Leases refused (no exclusive connection in time).
    tx_no_lease: AtomicU64,
    /// Increments given up after `TX_ATTEMPTS` nil `EXEC`s.
    tx_gave_up: AtomicU64,
    /// Calls refused with `ConnectionReplaced`: the lease's connection was
    /// made again after its `WATCH`, which the server forgot.
    tx_replaced: AtomicU64,
    /// `EXEC`s checked to have run on the connection of their `WATCH`
    /// (`CLIENT ID` read with each), and those that did not.
    tx_same_connection: AtomicU64,
    tx_remade: AtomicU64,
}

fn add(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Violations found while running, with where in the schedule they happened.
#[derive(Default)]
struct Violations {
    kept: Mutex<Vec<String>>,
    total: AtomicU64,
}

impl Violations {
    fn push(&self, what: String) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() < KEEP {
            kept.push(what);
        }
    }
}

/// One lost connection of one client.
#[derive(Debug, Clone)]
struct OutageRec {
    client: usize,
    /// The fault (index, kind) active when it was lost; None: spontaneous.
    fault: Option<(u64, usize)>,
    detection: Option<Duration>,
    downtime: Option<Duration>,
}

#[derive(Default)]
struct Tracker {
    /// The fault being injected or recovered from: (index, kind, injected at).
    active: Mutex<Option<(u64, usize, Instant)>>,
    outages: Mutex<Vec<OutageRec>>,
    reconnects: [AtomicU64; CLIENTS.len()],
    gave_up: AtomicU64,
}

impl Tracker {
    fn active(&self) -> Option<(u64, usize, Instant)> {
        *self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_active(&self, value: Option<(u64, usize, Instant)>) {
        *self.active.lock().unwrap_or_else(|p| p.into_inner()) = value;
    }

    /// "during fault #12 (kind)" or "outside any fault", for evidence.
    fn whereabouts(&self) -> String {
        match self.active() {
            Some((i, row, _)) => format!("during fault #{i} ({})", row_name(row)),
            None => "outside any fault".into(),
        }
    }
}

async fn watch_events(
    mut events: futures_util::stream::BoxStream<'static, Event>,
    client: usize,
    tracker: Arc<Tracker>,
) {
    // Ends when the client has shut down.
    while let Some(event) = events.next().await {
        match event {
            Event::Disconnected { .. } => {
                let now = Instant::now();
                let active = tracker.active();
                tracker
                    .outages
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(OutageRec {
                        client,
                        fault: active.map(|(i, kind, _)| (i, kind)),
                        detection: active.map(|(_, _, at)| now.saturating_duration_since(at)),
                        downtime: None,
                    });
            }
            Event::Reconnected { downtime, .. } => {
                add(&tracker.reconnects[client]);
                let mut outages = tracker.outages.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(o) = outages
                    .iter_mut()
                    .rev()
                    .find(|o| o.client == client && o.downtime.is_none())
                {
                    o.downtime = Some(downtime);
                }
            }
            Event::GaveUp { .. } => add(&tracker.gave_up),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// Workload
// ---------------------------------------------------------------------------

struct Shared {
    tally: Tally,
    /// Per writer, the `i` of every acknowledged `SET chaos:key:<w>:<i> <i>`.
    acked: Vec<Mutex<Vec<u32>>>,
    /// Per producer, what became of the push of job `<p>:<n>`, at index n - 1.
    pushed: Vec<Mutex<Vec<Push>>>,
    /// Every job a consumer's `BLPOP` returned: (producer, n).
    taken: Mutex<Vec<(usize, u32)>>,
    stop: AtomicBool,
    violations: Violations,
    tracker: Arc<Tracker>,
    not_applied_why: Mutex<BTreeMap<String, u64>>,
    /// Per counter, its latest acknowledged `INCR`s.
    incr_log: Vec<Mutex<AckLog>>,
    /// The cached client's returns, oldest first.
    returns: Mutex<Vec<Return>>,
}

/// A counter's latest acknowledged values, with when each was known
/// acknowledged (at or after the reply). Values only grow: `INCR`.
#[derive(Default)]
struct AckLog {
    acks: VecDeque<(Instant, i64)>,
}

impl AckLog {
    fn push(&mut self, value: i64) {
        if self.acks.len() == ACK_LOG {
            self.acks.pop_front();
        }
        self.acks.push_back((Instant::now(), value));
    }

    /// The newest value acknowledged before `at`: 0 when none was, or when
    /// it is no longer known (a floor that checks nothing).
    fn before(&self, at: Instant) -> i64 {
        match self.acks.iter().rev().find(|(known, _)| *known < at) {
            Some(&(_, value)) => value,
            None => 0,
        }
    }
}

/// A return of the cached client after a gap: from `back` on, a cached
/// read of counter `c` gives at least `floor[c]`.
struct Return {
    back: Instant,
    floor: [i64; COUNTERS],
}

/// Why writes were refused unapplied (e.g. `-LOADING` after a restart).
fn note_not_applied(shared: &Shared, e: &redis::RedisError) {
    let why = match Error::from_redis(e) {
        Some(Error::NotApplied { kind, .. }) => kind.to_string(),
        Some(other) => format!("{other}")
            .split([':', '('])
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
        None => "other".into(),
    };
    *shared
        .not_applied_why
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(why)
        .or_default() += 1;
}

fn key(writer: usize, i: u32) -> String {
    format!("chaos:key:{writer}:{i}")
}

async fn writer(mut client: Client, id: usize, shared: Arc<Shared>) {
    let counter = id % COUNTERS;
    let counter_key = counter_key(counter);
    let t = &shared.tally;
    let mut i: u32 = 0;
    while !shared.stop.load(Ordering::Relaxed) && i < u32::MAX {
        i += 1;
        match client.incr::<_, _, i64>(&counter_key, 1).await {
            Ok(value) => {
                add(&t.incr_acked[counter]);
                shared.incr_log[counter]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(value);
            }
            Err(e) => {
                match Error::outcome_of(&e) {
                    Outcome::Unknown => add(&t.incr_unknown[counter]),
                    Outcome::NotApplied => {
                        add(&t.incr_not_applied);
                        note_not_applied(&shared, &e);
                    }
                    _ => add(&t.incr_rejected),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        // A SET of a unique key is idempotent: declared so, relink may retry it.
        match client.idempotent().set::<_, _, ()>(key(id, i), i).await {
            Ok(()) => {
                add(&t.set_acked);
                shared.acked[id]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(i);
            }
            Err(e) => match Error::outcome_of(&e) {
                Outcome::Unknown => add(&t.set_unknown),
                Outcome::NotApplied => {
                    add(&t.set_not_applied);
                    note_not_applied(&shared, &e);
                }
                _ => add(&t.set_rejected),
            },
        }
        tokio::time::sleep(WRITER_PACE).await;
    }
}

async fn reader(mut client: Client, id: u64, seed: u64, shared: Arc<Shared>) {
    let mut rng = SplitMix64::new(seed ^ 0x5EAD_0000 ^ id);
    let t = &shared.tally;
    while !shared.stop.load(Ordering::Relaxed) {
        let w = rng.range_inclusive(0, WRITERS as u64 - 1) as usize;
        let probe = {
            let acked = shared.acked[w].lock().unwrap_or_else(|p| p.into_inner());
            if acked.is_empty() {
                None
            } else {
                Some(acked[rng.range_inclusive(0, acked.len() as u64 - 1) as usize])
            }
        };
        let Some(i) = probe else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        match client.get::<_, Option<u32>>(key(w, i)).await {
            Ok(value) => {
                add(&t.get_ok);
                if value != Some(i) {
                    add(&t.stale);
                    shared.violations.push(format!(
                        "stale read: GET {} gave {value:?} after SET {i} was acknowledged ({})",
                        key(w, i),
                        shared.tracker.whereabouts()
                    ));
                }
            }
            Err(_) => {
                add(&t.get_failed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn counter_key(counter: usize) -> String {
    format!("chaos:counter:{counter}")
}

/// Notes each return of the cached client after a gap: the moment its
/// connection was Ready again (its health's `since`, which is no later than
/// the first read the new connection can carry) and, per counter, the
/// newest value acknowledged before it. Ends when the client shuts down.
async fn cache_returns(
    mut events: futures_util::stream::BoxStream<'static, Event>,
    client: Client,
    shared: Arc<Shared>,
) {
    while let Some(event) = events.next().await {
        if !matches!(event, Event::Reconnected { .. }) {
            continue;
        }
        let health = client.health().borrow().clone();
        // Lost again already: that gap's own return is noted at its event.
        if health.state != State::Ready {
            continue;
        }
        let back = health.since;
        let mut returns = shared.returns.lock().unwrap_or_else(|p| p.into_inner());
        if returns.last().is_some_and(|r| r.back >= back) {
            continue; // this connection's return is noted
        }
        let floor = std::array::from_fn(|c| {
            shared.incr_log[c]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .before(back)
        });
        returns.push(Return { back, floor });
    }
}

/// `GET`s the writers' counters through the cached client, round after
/// round; a read started after a return must give at least the floor of
/// the latest return before it.
async fn cached_reader(mut client: Client, shared: Arc<Shared>) {
    let t = &shared.tally;
    while !shared.stop.load(Ordering::Relaxed) {
        for c in 0..COUNTERS {
            let hits = client.stats().cache.map_or(0, |s| s.hits);
            let started = Instant::now();
            let value = match client.get::<_, Option<i64>>(counter_key(c)).await {
                Ok(value) => value.unwrap_or(0),
                Err(_) => {
                    add(&t.cached_failed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            add(&t.cached_ok);
            let after = {
                let returns = shared.returns.lock().unwrap_or_else(|p| p.into_inner());
                returns
                    .iter()
                    .rev()
                    .find(|r| r.back <= started)
                    .map(|r| (r.floor[c], started - r.back, returns.len()))
            };
            let Some((floor, since_return, nth)) = after else {
                continue;
            };
            add(&t.cached_checked);
            if value < floor {
                add(&t.cached_stale);
                let hit = client.stats().cache.map_or(0, |s| s.hits) > hits;
                shared.violations.push(format!(
                    "stale cached read: GET {} gave {value} ({}), started {} ms after return #{nth} \
                     of {}, before which {floor} was acknowledged ({})",
                    counter_key(c),
                    if hit { "from memory" } else { "from the server" },
                    since_return.as_millis(),
                    CLIENTS[CACHED],
                    shared.tracker.whereabouts()
                ));
            }
        }
        tokio::time::sleep(CACHED_PACE).await;
    }
}

/// Publishes to the topic: sets, deletes and messages, with bursts that
/// outrun the tiny retention.
async fn topic_publisher(publisher: Publisher, shared: Arc<Shared>) {
    let t = &shared.tally;
    let mut i: u64 = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        i += 1;
        let burst = if i % 400 == 0 { 60 } else { 1 };
        let ops = (0..burst).map(|j| {
            let n = i * 100 + j;
            let publisher = &publisher;
            async move {
                let k = format!("item:{}", n % 40);
                if n % 7 == 3 {
                    publisher.delete(k.as_bytes()).await
                } else if n % 11 == 5 {
                    publisher.publish(n.to_string().as_bytes()).await
                } else {
                    publisher.set(k.as_bytes(), n.to_string().as_bytes()).await
                }
            }
        });
        for result in futures_util::future::join_all(ops).await {
            match result {
                Ok(_) => add(&t.pub_acked),
                Err(_) => add(&t.pub_failed),
            }
        }
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
}

async fn news_publisher(mut client: Client, shared: Arc<Shared>) {
    let mut n: u64 = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        match client.publish::<_, _, i64>(NEWS, n).await {
            Ok(_) => add(&shared.tally.news_sent),
            Err(_) => add(&shared.tally.news_failed),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn news_subscriber(mut sub: relink::Subscription, seen: Arc<Mutex<Numbered>>) {
    // Ends when the client shuts down (the subscription stream ends).
    while let Some(item) = sub.next().await {
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(&item);
    }
}

// ---------------------------------------------------------------------------
// The job queue (LPUSH / BLPOP) and the transaction counter (WATCH/MULTI/EXEC)
// ---------------------------------------------------------------------------

/// What became of one `LPUSH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Push {
    Acked,
    /// It may or may not be in the list.
    Unknown,
    /// Not applied, or rejected by the server: it must not be in the list.
    Refused,
}

fn job(producer: usize, n: u32) -> String {
    format!("{producer}:{n}")
}

fn parse_job(job: &str) -> Option<(usize, u32)> {
    let (p, n) = job.split_once(':')?;
    Some((p.parse().ok()?, n.parse().ok()?))
}

async fn producer(mut client: Client, p: usize, shared: Arc<Shared>) {
    let t = &shared.tally;
    let mut n: u32 = 0;
    while !shared.stop.load(Ordering::Relaxed) && n < u32::MAX {
        n += 1;
        let push = match client.lpush::<_, _, i64>(JOBS, job(p, n)).await {
            Ok(_) => {
                add(&t.push_acked);
                Push::Acked
            }
            Err(e) => {
                let outcome = Error::outcome_of(&e);
                add(match outcome {
                    Outcome::Unknown => &t.push_unknown,
                    Outcome::NotApplied => &t.push_not_applied,
                    _ => &t.push_rejected,
                });
                tokio::time::sleep(Duration::from_millis(10)).await;
                if outcome == Outcome::Unknown {
                    Push::Unknown
                } else {
                    Push::Refused
                }
            }
        };
        shared.pushed[p]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(push);
        tokio::time::sleep(PRODUCER_PACE).await;
    }
}

/// Takes jobs with `BLPOP` on the workload client (relink runs each on an
/// exclusive connection), recording every job it gets.
async fn consumer(mut client: Client, shared: Arc<Shared>) {
    let t = &shared.tally;
    // Bounded: each BLPOP ends by its timeout plus the response timeout.
    for _ in 0..u32::MAX {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        match client
            .blpop::<_, Option<(String, String)>>(JOBS, BLPOP_TIMEOUT)
            .await
        {
            Ok(Some((_, job))) => {
                add(&t.pop_taken);
                match parse_job(&job) {
                    Some(j) => shared
                        .taken
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(j),
                    None => shared.violations.push(format!(
                        "BLPOP returned `{job}`, not a job ({})",
                        shared.tracker.whereabouts()
                    )),
                }
            }
            Ok(None) => add(&t.pop_empty),
            Err(e) => {
                match Error::outcome_of(&e) {
                    Outcome::Unknown => add(&t.pop_unknown),
                    Outcome::NotApplied => add(&t.pop_not_applied),
                    _ => add(&t.pop_rejected),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Counts a call refused because the lease's connection was made again
/// since its `WATCH` (the server forgot it).
fn replaced(e: &redis::RedisError, t: &Tally) {
    if matches!(Error::from_redis(e), Some(Error::ConnectionReplaced)) {
        add(&t.tx_replaced);
    }
}

/// What one increment came to.
enum Tx {
    /// `EXEC` answered: the counter was incremented once.
    Applied,
    /// `EXEC` sent, no answer: it may have been applied.
    Unknown,
    /// Nothing written: no lease, the read failed, `EXEC` not applied or
    /// rejected, or every attempt lost its race.
    Not,
}

/// Increments the counter with optimistic transactions on leased connections.
async fn incrementer(client: Client, shared: Arc<Shared>) {
    let t = &shared.tally;
    for i in 0..u32::MAX {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let think = (i % TX_THINK_EVERY == 0).then_some(TX_THINK);
        match increment(&client, &shared, think).await {
            Tx::Applied => add(&t.tx_acked),
            Tx::Unknown => add(&t.tx_unknown),
            Tx::Not => tokio::time::sleep(Duration::from_millis(10)).await,
        }
        tokio::time::sleep(TX_PACE).await;
    }
}

/// One increment on one lease: `WATCH` and `GET` the counter, (`think`),
/// then `MULTI`/`SET n+1`/`EXEC`, again while `EXEC` answers nil (bounded).
/// `CLIENT ID` is read with the `WATCH` and inside the transaction, to tell
/// an `EXEC` that ran on another connection than its `WATCH`.
async fn increment(client: &Client, shared: &Shared, think: Option<Duration>) -> Tx {
    let t = &shared.tally;
    let mut lease = match client.exclusive().await {
        Ok(lease) => lease,
        Err(_) => {
            add(&t.tx_no_lease);
            return Tx::Not;
        }
    };
    for _ in 0..TX_ATTEMPTS {
        // As the documentation shows it: WATCH, then GET (a read, which
        // relink may retry), then the transaction.
        let read = async {
            let (id,): (i64,) = redis::pipe()
                .cmd("CLIENT")
                .arg("ID")
                .cmd("WATCH")
                .arg(TX_COUNTER)
                .ignore()
                .query_async(&mut lease)
                .await?;
            let value: Option<i64> = lease.get(TX_COUNTER).await?;
            Ok::<_, redis::RedisError>((id, value))
        };
        let (watched_on, value) = match read.await {
            Ok(read) => read,
            Err(e) => {
                replaced(&e, t);
                add(&t.tx_read_failed);
                return Tx::Not;
            }
        };
        if let Some(think) = think {
            tokio::time::sleep(think).await;
        }
        let exec: redis::RedisResult<Option<(i64,)>> = redis::pipe()
            .atomic()
            .set(TX_COUNTER, value.unwrap_or(0) + 1)
            .ignore()
            .cmd("CLIENT")
            .arg("ID")
            .query_async(&mut lease)
            .await;
        match exec {
            Ok(Some((ran_on,))) => {
                if ran_on == watched_on {
                    add(&t.tx_same_connection);
                } else {
                    add(&t.tx_remade);
                    shared.violations.push(format!(
                        "EXEC ran on connection {ran_on}, its WATCH on {watched_on}: unguarded ({})",
                        shared.tracker.whereabouts()
                    ));
                }
                return Tx::Applied;
            }
            Ok(None) => add(&t.tx_conflicts),
            Err(e) => {
                replaced(&e, t);
                return match Error::outcome_of(&e) {
                    Outcome::Unknown => Tx::Unknown,
                    Outcome::NotApplied => {
                        add(&t.tx_not_applied);
                        Tx::Not
                    }
                    _ => {
                        add(&t.tx_rejected);
                        Tx::Not
                    }
                };
            }
        }
    }
    add(&t.tx_gave_up);
    Tx::Not
}

// ---------------------------------------------------------------------------
// Followers, checked event by event
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct FollowCheck {
    epoch: Option<Epoch>,
    seq: u64,
    mirror: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Set by a Resynced event: the snapshot that must come next.
    expect_snapshot: Option<(Option<Epoch>, u64)>,
    updates: u64,
    snapshots: u64,
    resyncs: BTreeMap<&'static str, u64>,
    errors: u64,
    violations: u64,
}

impl FollowCheck {
    fn apply(&mut self, name: &str, item: Result<SyncEvent, Error>, shared: &Shared) {
        let bad = |what: String| {
            shared
                .violations
                .push(format!("{name}: {what} ({})", shared.tracker.whereabouts()));
            1
        };
        let event = match item {
            Ok(event) => event,
            Err(_) => {
                self.errors += 1;
                return;
            }
        };
        match event {
            SyncEvent::Resynced { reason, from, to } => {
                *self.resyncs.entry(reason.as_str()).or_default() += 1;
                if self.expect_snapshot.is_some() {
                    self.violations += bad("two resyncs without a snapshot between".into());
                }
                if from.epoch() != self.epoch || from.seq() != self.seq {
                    self.violations += bad(format!(
                        "resync ({reason}) from seq {} but the follower delivered up to seq {}",
                        from.seq(),
                        self.seq
                    ));
                }
                self.expect_snapshot = Some((to.epoch(), to.seq()));
            }
            SyncEvent::Snapshot {
                epoch,
                seq,
                entries,
            } => {
                match self.expect_snapshot.take() {
                    Some((e, s)) if e == Some(epoch) && s == seq => {}
                    other => {
                        self.violations += bad(format!(
                            "snapshot at {epoch}/{seq} not announced by a resync (expected {other:?})"
                        ));
                    }
                }
                self.snapshots += 1;
                self.mirror = entries.into_iter().collect();
                self.epoch = Some(epoch);
                self.seq = seq;
            }
            SyncEvent::Update { epoch, seq, change } => {
                if self.expect_snapshot.is_some() {
                    self.violations +=
                        bad(format!("update {seq} between a resync and its snapshot"));
                }
                if self.epoch != Some(epoch) {
                    self.violations += bad(format!(
                        "update {epoch}/{seq} while at epoch {:?}, with no resync",
                        self.epoch
                    ));
                } else if seq <= self.seq {
                    self.violations += bad(format!("update {seq} again (already at {})", self.seq));
                } else if seq != self.seq + 1 {
                    self.violations += bad(format!(
                        "updates {}..={} skipped (got {seq}) with no resync",
                        self.seq + 1,
                        seq - 1
                    ));
                }
                self.updates += 1;
                self.epoch = Some(epoch);
                self.seq = seq;
                match change {
                    Change::Set { key, value } => {
                        self.mirror.insert(key, value);
                    }
                    Change::Delete { key } => {
                        self.mirror.remove(&key);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

async fn follow(
    mut follower: Follower,
    name: &'static str,
    check: Arc<Mutex<FollowCheck>>,
    shared: Arc<Shared>,
) {
    // Ends when the follower's client shuts down.
    while let Some(item) = follower.next_event().await {
        check
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .apply(name, item, &shared);
    }
}

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

fn config(url: &str, name: &str, seed: u64) -> Config {
    Config::new(url)
        .expect("loopback url")
        .with_client_name(name)
        .with_seed(seed)
        .with_heartbeat(HeartbeatConfig {
            interval: Duration::from_millis(250),
            timeout: Duration::from_millis(250),
            misses_allowed: 0,
        })
        .with_connect_timeout(Duration::from_secs(1))
        .with_backoff_reset_after(Duration::from_secs(2))
        .with_backoff(
            BackoffPolicy::default()
                .strategy(Strategy::Exponential { multiplier: 2.0 })
                .initial_delay(Duration::from_millis(25))
                .max_delay(Duration::from_millis(500))
                .jitter(Jitter::Equal),
        )
}

fn topic_options() -> TopicOptions {
    // A short block: a blocked XREAD holds the connection's heartbeat PINGs.
    TopicOptions::default()
        .with_retention(RETENTION)
        .with_batch(200)
        .with_block(Duration::from_millis(100))
}

struct Log {
    file: Option<std::io::BufWriter<std::fs::File>>,
    path: PathBuf,
    verbose: bool,
    started: Instant,
}

impl Log {
    fn open(seed: u64, verbose: bool) -> Log {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(|p| p.join("target"))
            .unwrap_or_else(std::env::temp_dir);
        let path = dir.join(format!("relink-chaos-seed{seed}.log"));
        let file = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::File::create(&path))
            .ok()
            .map(std::io::BufWriter::new);
        Log {
            file,
            path,
            verbose,
            started: Instant::now(),
        }
    }

    fn line(&mut self, text: &str) {
        let line = format!("[{:>7.2}s] {text}", self.started.elapsed().as_secs_f64());
        if self.verbose {
            println!("{line}");
        }
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "{line}");
        }
    }

    fn flush(&mut self) {
        if let Some(f) = &mut self.file {
            let _ = f.flush();
        }
    }
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("chaos: {why}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    if args.dry_run {
        let mut schedule = Schedule::new(args.seed);
        let mut faults = 0;
        let want = args.faults.unwrap_or(50);
        println!("seed {}: the schedule's first {want} faults", args.seed);
        let mut step = 0;
        while faults < want {
            let planned = schedule.next_step();
            step += 1;
            faults += match &planned.step {
                Step::One(_) => 1,
                Step::Burst(v) => v.len() as u64,
                Step::TopicReset => 0,
            };
            println!("  step {step:>4}: {planned}");
        }
        return;
    }
    let code = run(args).await;
    std::process::exit(code);
}

async fn run(args: Args) -> i32 {
    let baseline_tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let seed = args.seed;
    let mut log = Log::open(seed, args.verbose);
    println!(
        "relink chaos soak: seed {seed}, faults for {:?}{}",
        args.duration,
        args.faults.map_or(String::new(), |n| format!(
            " or {n} faults, whichever first"
        ))
    );
    println!(
        "replay: cargo xtask chaos --seed {seed} --duration {}s{}",
        args.duration.as_secs().max(1),
        args.faults
            .map_or(String::new(), |n| format!(" --faults {n}"))
    );
    println!("schedule (first {PREVIEW} steps; `--dry-run` prints more):");
    let mut preview = Schedule::new(seed);
    for i in 1..=PREVIEW {
        println!("  step {i:>3}: {}", preview.next_step());
    }

    let server = RedisServer::builder()
        .appendonly(true)
        .args(["--stream-node-max-entries", "10"])
        .start();
    let proxy = FaultProxy::start(server.addr());
    let url = proxy.url();
    println!(
        "redis-server pid {} on {} (appendfsync always), through a fault proxy on {}; log: {}",
        server.pid(),
        server.addr(),
        proxy.addr(),
        log.path.display()
    );
    let lab = Arc::new(Lab {
        direct: server.client(),
        server: Mutex::new(server),
        proxy,
    });

    let tracker = Arc::new(Tracker::default());
    let shared = Arc::new(Shared {
        tally: Tally::default(),
        acked: (0..WRITERS).map(|_| Mutex::default()).collect(),
        pushed: (0..PRODUCERS).map(|_| Mutex::default()).collect(),
        taken: Mutex::default(),
        stop: AtomicBool::new(false),
        violations: Violations::default(),
        tracker: Arc::clone(&tracker),
        not_applied_why: Mutex::default(),
        incr_log: (0..COUNTERS).map(|_| Mutex::default()).collect(),
        returns: Mutex::default(),
    });

    let clients: Vec<Client> = CLIENTS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let config = config(&url, name, seed.wrapping_add(i as u64));
            let cache = (i == CACHED).then(CacheConfig::default);
            Client::new(config.with_cache(cache)).expect("valid config")
        })
        .collect();
    let mut watchers = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        watchers.push(tokio::spawn(watch_events(
            c.events(),
            i,
            Arc::clone(&tracker),
        )));
    }
    watchers.push(tokio::spawn(cache_returns(
        clients[CACHED].events(),
        clients[CACHED].clone(),
        Arc::clone(&shared),
    )));
    for (i, c) in clients.iter().enumerate() {
        if let Err(e) = c.wait_ready(Duration::from_secs(20)).await {
            eprintln!("{} could not connect: {e}", CLIENTS[i]);
            return 1;
        }
    }
    let work = clients[WORK].clone();

    // State sync: the publisher on the workload client, two followers checked
    // event by event and a SyncedMap, each on a client of its own.
    let publisher = Publisher::new(&work, TOPIC, topic_options()).expect("topic");
    if let Err(e) = publisher.set(b"item:0", b"0").await {
        eprintln!("first publish failed: {e}");
        return 1;
    }
    let checks: Vec<Arc<Mutex<FollowCheck>>> = (0..2).map(|_| Arc::default()).collect();
    let mut consumers = Vec::new();
    for (k, check) in checks.iter().enumerate() {
        let follower = Follower::follow(clients[1 + k].clone(), TOPIC, None, topic_options())
            .expect("follower");
        consumers.push(tokio::spawn(follow(
            follower,
            CLIENTS[1 + k],
            Arc::clone(check),
            Arc::clone(&shared),
        )));
    }
    let mirror = SyncedMap::new(clients[3].clone(), TOPIC, topic_options()).expect("mirror");

    let news = Arc::new(Mutex::new(Numbered::default()));
    let sub = match work.subscribe(&[NEWS]).await {
        Ok(sub) => sub,
        Err(e) => {
            eprintln!("subscribe failed: {e}");
            return 1;
        }
    };
    consumers.push(tokio::spawn(news_subscriber(sub, Arc::clone(&news))));

    let mut workers = Vec::new();
    for w in 0..WRITERS {
        workers.push(tokio::spawn(writer(work.clone(), w, Arc::clone(&shared))));
    }
    for r in 0..READERS {
        workers.push(tokio::spawn(reader(
            work.clone(),
            r as u64,
            seed,
            Arc::clone(&shared),
        )));
    }
    workers.push(tokio::spawn(topic_publisher(
        publisher.clone(),
        Arc::clone(&shared),
    )));
    workers.push(tokio::spawn(news_publisher(
        work.clone(),
        Arc::clone(&shared),
    )));
    for p in 0..PRODUCERS {
        workers.push(tokio::spawn(producer(work.clone(), p, Arc::clone(&shared))));
    }
    for _ in 0..CONSUMERS {
        workers.push(tokio::spawn(consumer(work.clone(), Arc::clone(&shared))));
    }
    for _ in 0..TX_TASKS {
        workers.push(tokio::spawn(incrementer(work.clone(), Arc::clone(&shared))));
    }
    workers.push(tokio::spawn(cached_reader(
        clients[CACHED].clone(),
        Arc::clone(&shared),
    )));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The storm.
    let started = Instant::now();
    let max_faults = args.faults.unwrap_or(u64::MAX);
    let mut schedule = Schedule::new(seed);
    let mut by_kind = [0u64; KINDS.len()];
    let mut alone = [0u64; KINDS.len()];
    let mut in_bursts = 0u64;
    let (mut injected, mut steps, mut bursts, mut resets) = (0u64, 0u64, 0u64, 0u64);
    let mut recoveries: Vec<Duration> = Vec::new();
    let mut not_recovered = 0u64;
    let mut harness_failure: Option<String> = None;
    let mut next_progress = Duration::from_secs(10);
    println!("\nstorm: {:?} of faults ...", args.duration);
    // Bounded by the duration and the fault count.
    while started.elapsed() < args.duration && injected < max_faults {
        let planned = schedule.next_step();
        steps += 1;
        log.line(&format!("step {steps}: {planned}"));
        let faults: Vec<Fault> = match &planned.step {
            Step::One(f) => vec![*f],
            Step::Burst(v) => {
                bursts += 1;
                v.clone()
            }
            Step::TopicReset => {
                resets += 1;
                if let Err(e) = publisher.reset().await {
                    log.line(&format!("  topic reset failed: {e}"));
                }
                Vec::new()
            }
        };
        let is_fault_step = !faults.is_empty();
        let in_burst = faults.len() > 1;
        for fault in faults {
            if injected >= max_faults {
                break;
            }
            injected += 1;
            by_kind[fault.kind()] += 1;
            // Outages in a burst are the burst's: which of its faults broke
            // the connection is not knowable from outside.
            let row = if in_burst {
                in_bursts += 1;
                BURST
            } else {
                alone[fault.kind()] += 1;
                fault.kind()
            };
            tracker.set_active(Some((injected, row, Instant::now())));
            let lab = Arc::clone(&lab);
            let result = tokio::task::spawn_blocking(move || lab.inject(fault)).await;
            let failure = match result {
                Ok(Ok(())) => None,
                Ok(Err(why)) => Some(why),
                Err(e) => Some(format!("the fault panicked: {e}")),
            };
            if let Some(why) = failure {
                let what = format!("fault #{injected} ({fault}) could not be made: {why}");
                log.line(&what);
                harness_failure = Some(what);
                break;
            }
        }
        if harness_failure.is_some() {
            break;
        }
        if is_fault_step {
            let mended = Instant::now();
            // Let relink see what happened before asking whether it is Ready.
            tokio::time::sleep(Duration::from_millis(30)).await;
            match wait_all_ready(&clients, READY_BOUND).await {
                Ok(()) => {
                    recoveries.push(mended.elapsed());
                    log.line(&format!(
                        "  faults so far {injected}; all clients Ready {} ms after the mend",
                        mended.elapsed().as_millis()
                    ));
                }
                Err(states) => {
                    not_recovered += 1;
                    let what = format!(
                        "not Ready {} ms after fault #{injected} was mended (step {steps}: {planned}): {states}",
                        mended.elapsed().as_millis()
                    );
                    log.line(&what);
                    shared.violations.push(what);
                }
            }
            tracker.set_active(None);
        }
        if started.elapsed() >= next_progress {
            next_progress += Duration::from_secs(10);
            let stats = work.stats();
            println!(
                "  [{:>5.0}s] faults {injected:>5} | outages {:>5} | ok {:>8} | unknown {:>5} | not sent {:>6} | not applied {:>6} | followers at seq {} / {} | jobs taken {} | EXECs {} | violations {}",
                started.elapsed().as_secs_f64(),
                tracker.outages.lock().unwrap_or_else(|p| p.into_inner()).len(),
                stats.succeeded,
                stats.unknown,
                stats.not_sent,
                stats.not_applied,
                checks[0].lock().unwrap_or_else(|p| p.into_inner()).seq,
                checks[1].lock().unwrap_or_else(|p| p.into_inner()).seq,
                get(&shared.tally.pop_taken),
                get(&shared.tally.tx_acked),
                get(&shared.violations.total),
            );
        }
        tokio::time::sleep(Duration::from_millis(planned.gap)).await;
    }
    let storm = started.elapsed();
    log.line(&format!("storm over: {injected} faults in {steps} steps"));
    println!(
        "storm over: {injected} faults in {steps} steps, {:.1} s",
        storm.as_secs_f64()
    );

    // Calm: everything back, the workload runs a little, then stops.
    let final_ready = wait_all_ready(&clients, READY_BOUND).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    shared.stop.store(true, Ordering::Relaxed);
    let mut stuck_workers = 0;
    let mut worker_panics = 0;
    for w in workers {
        match tokio::time::timeout(STOP_BOUND, w).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => worker_panics += 1,
            Err(_) => stuck_workers += 1,
        }
    }

    // Server-side checks, with a plain connection.
    let server_view = {
        let lab = Arc::clone(&lab);
        let acked: Vec<Vec<u32>> = shared
            .acked
            .iter()
            .map(|a| a.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect();
        let pushed: Vec<Vec<Push>> = shared
            .pushed
            .iter()
            .map(|a| a.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect();
        let taken = shared
            .taken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        tokio::task::spawn_blocking(move || read_server(&lab, &acked, &pushed, &taken))
            .await
            .map_err(|e| format!("panicked: {e}"))
            .and_then(|r| r)
    };
    let view = match server_view {
        Ok(view) => view,
        Err(why) => {
            println!("could not read the server's state: {why}");
            return 1;
        }
    };

    // The followers catch up, then must equal the server.
    let caught_up = Instant::now() + CATCH_UP_BOUND;
    // Bounded by CATCH_UP_BOUND.
    loop {
        let at = |c: &Arc<Mutex<FollowCheck>>| {
            let c = c.lock().unwrap_or_else(|p| p.into_inner());
            (c.epoch, c.seq)
        };
        let want = (Some(view.epoch), view.watermark);
        let mv = mirror.version();
        let done = checks.iter().all(|c| at(c) == want) && (mv.epoch(), mv.seq()) == want;
        if done || Instant::now() >= caught_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let follower_results: Vec<(bool, String)> = checks
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let c = c.lock().unwrap_or_else(|p| p.into_inner());
            let same =
                c.epoch == Some(view.epoch) && c.seq == view.watermark && c.mirror == view.state;
            (
                same && c.violations == 0,
                format!(
                    "{}: {} updates, {} snapshots, {} order violations, at {}/{} ({} keys), {}",
                    CLIENTS[1 + k],
                    c.updates,
                    c.snapshots,
                    c.violations,
                    c.epoch.map_or("-".into(), |e| e.to_string()),
                    c.seq,
                    c.mirror.len(),
                    if same {
                        "equal to the server"
                    } else {
                        "DIFFERENT from the server"
                    }
                ),
            )
        })
        .collect();
    let mirror_same = {
        let v = mirror.version();
        let entries: BTreeMap<Vec<u8>, Vec<u8>> = mirror.entries().into_iter().collect();
        v.epoch() == Some(view.epoch) && v.seq() == view.watermark && entries == view.state
    };
    let (mirror_updates, mirror_resyncs, _) = mirror.counts();

    // Pub/Sub: every hole in the numbering lies next to a gap marker.
    let news = {
        let n = news.lock().unwrap_or_else(|p| p.into_inner());
        let unmarked = n.unmarked_holes(MARKER_WINDOW);
        let missing = n.missing();
        (
            n.received,
            n.markers,
            n.lagged,
            n.disorder(),
            n.holes.len(),
            missing,
            unmarked,
        )
    };

    let final_state = clients[WORK].health().borrow().state;
    let stats: Vec<relink::Stats> = clients.iter().map(Client::stats).collect();
    let cache = stats[CACHED].cache.unwrap_or_default();
    let returns = shared
        .returns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .len();
    let losses = stats[WORK].subscriber_losses;

    // Shutdown: every task must end.
    for c in &clients {
        c.shutdown().await;
    }
    drop(mirror);
    drop(publisher);
    drop(work);
    drop(clients);
    let mut consumer_panics = 0;
    let mut stuck_consumers = 0;
    for t in consumers.into_iter().chain(watchers) {
        match tokio::time::timeout(TASKS_BOUND, t).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => consumer_panics += 1,
            Err(_) => stuck_consumers += 1,
        }
    }
    let metrics = tokio::runtime::Handle::current().metrics();
    let tasks_deadline = Instant::now() + TASKS_BOUND;
    // Bounded by TASKS_BOUND.
    while metrics.num_alive_tasks() > baseline_tasks && Instant::now() < tasks_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let alive_tasks = metrics.num_alive_tasks();
    let peak_rss_kib = peak_rss_kib();
    let outages = tracker
        .outages
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for o in &outages {
        log.line(&format!(
            "outage of {}: {}, detected after {:?}, down {:?}",
            CLIENTS[o.client],
            o.fault
                .map_or("outside any fault".to_string(), |(i, k)| format!(
                    "fault #{i} ({})",
                    row_name(k)
                )),
            o.detection,
            o.downtime
        ));
    }
    for v in shared
        .violations
        .kept
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        log.line(&format!("violation: {v}"));
    }
    log.flush();

    // Summary.
    let t = &shared.tally;
    println!("\n=== chaos summary: seed {seed} ===");
    println!(
        "{injected} faults in {steps} steps ({bursts} bursts, {resets} topic resets) over {:.1} s; {} outages across {} clients ({} outside any fault)",
        storm.as_secs_f64(),
        outages.len(),
        CLIENTS.len(),
        outages.iter().filter(|o| o.fault.is_none()).count(),
    );
    println!(
        "\n  {:<28} {:>6} {:>6} {:>8} {:>21} {:>21}",
        "fault", "total", "alone", "outages", "detected p50/p99/max", "downtime p50/p99/max"
    );
    for k in 0..=BURST {
        let mine: Vec<&OutageRec> = outages
            .iter()
            .filter(|o| o.fault.map(|f| f.1) == Some(k))
            .collect();
        let det: Vec<Duration> = mine.iter().filter_map(|o| o.detection).collect();
        let down: Vec<Duration> = mine.iter().filter_map(|o| o.downtime).collect();
        let (total, single) = match k {
            BURST => (in_bursts, in_bursts),
            _ => (by_kind[k], alone[k]),
        };
        println!(
            "  {:<28} {:>6} {:>6} {:>8} {:>21} {:>21}",
            row_name(k),
            total,
            single,
            mine.len(),
            pcts(&det),
            pcts(&down)
        );
    }
    let all_det: Vec<Duration> = outages.iter().filter_map(|o| o.detection).collect();
    let all_down: Vec<Duration> = outages.iter().filter_map(|o| o.downtime).collect();
    println!(
        "  {:<28} {:>6} {:>6} {:>8} {:>21} {:>21}",
        "all",
        injected,
        "",
        outages.len(),
        pcts(&all_det),
        pcts(&all_down)
    );
    println!(
        "  total: faults of the kind, bursts included; alone: outside bursts, whose outages the row shows"
    );
    println!(
        "  detected: from the fault's start to relink declaring a connection lost; downtime: lost to Ready again"
    );
    println!(
        "  recovery (fault mended -> all {} clients Ready): p50/p90/p99/max {} (n={})",
        CLIENTS.len(),
        pcts4(&recoveries),
        recoveries.len()
    );

    let incr_acked: u64 = t.incr_acked.iter().map(get).sum();
    let incr_unknown: u64 = t.incr_unknown.iter().map(get).sum();
    println!("\nops by outcome:");
    println!(
        "  INCR     acknowledged {incr_acked:>9}  unknown {incr_unknown:>6}  not applied {:>7}  rejected {}",
        get(&t.incr_not_applied),
        get(&t.incr_rejected)
    );
    println!(
        "  SET      acknowledged {:>9}  unknown {:>6}  not applied {:>7}  rejected {}",
        get(&t.set_acked),
        get(&t.set_unknown),
        get(&t.set_not_applied),
        get(&t.set_rejected)
    );
    let why: Vec<String> = shared
        .not_applied_why
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!("  (INCR/SET not applied, by cause: {})", why.join(", "));
    println!(
        "  LPUSH    acknowledged {:>9}  unknown {:>6}  not applied {:>7}  rejected {}",
        get(&t.push_acked),
        get(&t.push_unknown),
        get(&t.push_not_applied),
        get(&t.push_rejected)
    );
    println!(
        "  BLPOP    took a job   {:>9}  unknown {:>6}  not applied {:>7}  rejected {}  timed out empty {}",
        get(&t.pop_taken),
        get(&t.pop_unknown),
        get(&t.pop_not_applied),
        get(&t.pop_rejected),
        get(&t.pop_empty)
    );
    println!(
        "  EXEC     acknowledged {:>9}  unknown {:>6}  not applied {:>7}  rejected {}  nil (retried) {}  WATCH+GET failed {}  no lease {}  gave up {}",
        get(&t.tx_acked),
        get(&t.tx_unknown),
        get(&t.tx_not_applied),
        get(&t.tx_rejected),
        get(&t.tx_conflicts),
        get(&t.tx_read_failed),
        get(&t.tx_no_lease),
        get(&t.tx_gave_up)
    );
    println!(
        "  GET      checked      {:>9}  failed  {:>6}  stale {}",
        get(&t.get_ok),
        get(&t.get_failed),
        get(&t.stale)
    );
    println!(
        "  GET (cached) answered {:>9}  failed  {:>6}  after a return {}  stale {}  (cache: {} hits, {} misses, {} invalidations, {} gap flushes; {returns} returns noted)",
        get(&t.cached_ok),
        get(&t.cached_failed),
        get(&t.cached_checked),
        get(&t.cached_stale),
        cache.hits,
        cache.misses,
        cache.invalidations,
        cache.gap_flushes
    );
    println!(
        "  topic    published    {:>9}  failed  {:>6}",
        get(&t.pub_acked),
        get(&t.pub_failed)
    );
    println!(
        "  pub/sub  published    {:>9}  failed  {:>6}  received {}  missing {} in {} holes  gap markers {} (subscriber connection lost {})  lagged {}",
        get(&t.news_sent),
        get(&t.news_failed),
        news.0,
        news.5,
        news.4,
        news.1,
        losses,
        news.2
    );
    for (i, s) in stats.iter().enumerate() {
        println!(
            "  client {:<15} succeeded {:>9}  retried {:>5}  not sent {:>6}  not applied {:>4}  unknown {:>5}  rejected {}",
            CLIENTS[i], s.succeeded, s.retried, s.not_sent, s.not_applied, s.unknown, s.rejected
        );
    }
    println!("\nresyncs by reason:");
    for (k, c) in checks.iter().enumerate() {
        let c = c.lock().unwrap_or_else(|p| p.into_inner());
        let reasons: Vec<String> = c.resyncs.iter().map(|(r, n)| format!("{r} {n}")).collect();
        println!(
            "  {:<15} {}  ({} updates applied, {} errors yielded)",
            CLIENTS[1 + k],
            reasons.join(", "),
            c.updates,
            c.errors
        );
    }
    println!(
        "  {:<15} {mirror_resyncs} resyncs, {mirror_updates} updates (SyncedMap)",
        CLIENTS[3]
    );

    println!("\ninvariants (checked on the server):");
    let mut ok = true;
    ok &= check(
        view.missing.is_empty(),
        &format!(
            "every acknowledged SET is on the server ({} keys, {} missing{})",
            view.checked_keys,
            view.missing.len(),
            view.missing
                .first()
                .map_or(String::new(), |m| format!(", e.g. {m}"))
        ),
    );
    for c in 0..COUNTERS {
        let acked = get(&t.incr_acked[c]);
        let unknown = get(&t.incr_unknown[c]);
        let value = view.counters[c];
        ok &= check(
            value >= acked && value <= acked + unknown,
            &format!(
                "counter {c}: {acked} acknowledged <= {value} <= {acked} + {unknown} unknown (none lost, none applied twice)"
            ),
        );
    }
    let books = &view.queue;
    let pop_unknown = get(&t.pop_unknown);
    ok &= check(
        books.unaccounted <= pop_unknown,
        &format!(
            "job queue: every acknowledged job taken or still queued but {} <= {pop_unknown} BLPOPs of unknown outcome ({} acknowledged; {} taken, {} queued)",
            books.unaccounted, books.acked, books.taken, books.left
        ),
    );
    ok &= check(
        books.twice == 0,
        &format!(
            "job queue: no job taken twice ({} seen more than once)",
            books.twice
        ),
    );
    ok &= check(
        books.refused_seen == 0,
        &format!(
            "job queue: no job whose push was refused ({}); {} of {} pushes of unknown outcome were applied",
            books.refused_seen, books.unknown_applied, books.unknown
        ),
    );
    if books.unaccounted > pop_unknown || books.twice > 0 || books.refused_seen > 0 {
        for example in &books.examples {
            println!("    - {example}");
        }
    }
    let (tx_acked, tx_unknown, tx_value) = (get(&t.tx_acked), get(&t.tx_unknown), view.tx_counter);
    ok &= check(
        tx_acked <= tx_value && tx_value <= tx_acked + tx_unknown,
        &format!(
            "WATCH/MULTI/EXEC counter: {tx_acked} acknowledged <= {tx_value} <= {tx_acked} + {tx_unknown} unknown (no lost update, none applied twice; {} nil EXECs retried)",
            get(&t.tx_conflicts),
        ),
    );
    ok &= check(
        get(&t.tx_remade) == 0,
        &format!(
            "every EXEC ran on its WATCH's connection ({} checked, {} not; {} calls refused as their connection was replaced)",
            get(&t.tx_same_connection),
            get(&t.tx_remade),
            get(&t.tx_replaced)
        ),
    );
    ok &= check(
        get(&t.stale) == 0,
        &format!(
            "reads see acknowledged writes ({} reads, {} stale)",
            get(&t.get_ok),
            get(&t.stale)
        ),
    );
    ok &= check(
        get(&t.cached_stale) == 0 && cache.hits > 0,
        &format!(
            "no stale cached read after a gap: every cached GET started after a return gave at least what was acknowledged before it ({} checked after {returns} returns, {} stale; {} answered from memory)",
            get(&t.cached_checked),
            get(&t.cached_stale),
            cache.hits
        ),
    );
    for (pass, what) in &follower_results {
        ok &= check(
            *pass,
            &format!("every seq exactly once, in order, between resyncs; mirror equals the server at {}/{}: {what}",
                view.epoch, view.watermark),
        );
    }
    ok &= check(
        mirror_same,
        &format!(
            "the SyncedMap equals the server's state ({} keys at seq {})",
            view.state.len(),
            view.watermark
        ),
    );
    ok &= check(
        news.3 == 0 && news.6 == 0,
        &format!(
            "pub/sub: no message twice or out of order ({}), every hole next to a gap marker ({} of {} unmarked)",
            news.3, news.6, news.4
        ),
    );
    // Subscriptions have a connection of their own: its losses, not the
    // command connection's, are the gaps (one may be unmended at the end;
    // a marker can be dropped for a consumer that lagged).
    ok &= check(
        (news.1 == losses || news.1 + 1 == losses) || (news.2 > 0 && news.1 <= losses),
        &format!(
            "pub/sub: one gap marker per loss of the subscriber connection ({} markers, {losses} losses)",
            news.1
        ),
    );
    ok &= check(
        not_recovered == 0 && final_ready.is_ok() && final_state == State::Ready,
        &format!(
            "health back to Ready after every fault ({} of {} steps not recovered within {READY_BOUND:?}; final: {final_state})",
            not_recovered,
            recoveries.len() as u64 + not_recovered
        ),
    );
    let open = outages.iter().filter(|o| o.downtime.is_none()).count();
    ok &= check(
        open == 0,
        &format!(
            "every lost connection came back ({} lost, {open} not back)",
            outages.len()
        ),
    );
    ok &= check(
        get(&tracker.gave_up) == 0,
        &format!("no client gave up reconnecting ({})", get(&tracker.gave_up)),
    );
    ok &= check(
        harness_failure.is_none(),
        &format!(
            "every scheduled fault was made ({})",
            harness_failure.as_deref().unwrap_or("all")
        ),
    );
    let panics = PANICS.load(Ordering::SeqCst);
    ok &= check(
        panics == 0 && worker_panics == 0 && consumer_panics == 0,
        &format!("no panic ({panics} panics)"),
    );
    ok &= check(
        stuck_workers == 0 && stuck_consumers == 0 && alive_tasks <= baseline_tasks,
        &format!(
            "no task left after shutdown ({alive_tasks} alive, baseline {baseline_tasks}; {stuck_workers} workers and {stuck_consumers} consumers did not end)"
        ),
    );
    ok &= check(
        peak_rss_kib.is_some_and(|k| k <= RSS_BOUND_MIB * 1024),
        &format!(
            "peak RSS {} MiB <= {RSS_BOUND_MIB} MiB (VmHWM)",
            peak_rss_kib.map_or("?".into(), |k| (k / 1024).to_string())
        ),
    );
    let total = get(&shared.violations.total);
    ok &= check(
        total == 0,
        &format!("no violation seen while running ({total})"),
    );
    let kept = shared
        .violations
        .kept
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for v in &kept {
        println!("    - {v}");
    }
    drop(lab); // reaps the server and stops the proxy
    if ok {
        println!(
            "\nall invariants hold (seed {seed}; log {})",
            log.path.display()
        );
        0
    } else {
        println!(
            "\nINVARIANT VIOLATED (seed {seed}; replay with the same seed; every step is in {})",
            log.path.display()
        );
        1
    }
}

fn check(pass: bool, what: &str) -> bool {
    println!("  {} {what}", if pass { "PASS" } else { "FAIL" });
    pass
}

/// Waits until every client is Ready at the same time (a client seen Ready
/// may lose its connection while another is waited for); on timeout, the
/// states of those that are not.
async fn wait_all_ready(clients: &[Client], bound: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + bound;
    // Bounded by the deadline.
    loop {
        for c in clients {
            let mut health = c.health();
            let _ = tokio::time::timeout_at(deadline, health.wait_for(|h| h.state == State::Ready))
                .await;
        }
        let not_ready: Vec<String> = clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let h = c.health().borrow().clone();
                (h.state != State::Ready).then(|| {
                    format!(
                        "{} is {} (attempt {}, last failure {:?})",
                        CLIENTS[i], h.state, h.attempt, h.last_failure
                    )
                })
            })
            .collect();
        if not_ready.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(not_ready.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What the server holds at the end.
struct ServerView {
    counters: Vec<u64>,
    checked_keys: u64,
    missing: Vec<String>,
    epoch: Epoch,
    watermark: u64,
    state: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The jobs: pushed, taken and still queued.
    queue: QueueBooks,
    tx_counter: u64,
}

fn read_server(
    lab: &Lab,
    acked: &[Vec<u32>],
    pushed: &[Vec<Push>],
    taken: &[(usize, u32)],
) -> Result<ServerView, String> {
    let mut con = lab.connection()?;
    let e = |e: redis::RedisError| e.to_string();
    let mut counters = Vec::new();
    for c in 0..COUNTERS {
        let v: Option<u64> = redis::cmd("GET")
            .arg(format!("chaos:counter:{c}"))
            .query(&mut con)
            .map_err(e)?;
        counters.push(v.unwrap_or(0));
    }
    let mut missing = Vec::new();
    let mut checked_keys = 0;
    for (w, list) in acked.iter().enumerate() {
        for chunk in list.chunks(1000) {
            let names: Vec<String> = chunk.iter().map(|&i| key(w, i)).collect();
            let values: Vec<Option<u32>> =
                redis::cmd("MGET").arg(&names).query(&mut con).map_err(e)?;
            for ((name, &i), value) in names.iter().zip(chunk).zip(values) {
                checked_keys += 1;
                if value != Some(i) && missing.len() < KEEP {
                    missing.push(format!("{name} = {value:?}, acknowledged {i}"));
                }
            }
        }
    }
    let meta: (Option<u64>, Option<u64>) = redis::cmd("HMGET")
        .arg(format!("relink:{{{TOPIC}}}:meta"))
        .arg("epoch")
        .arg("seq")
        .query(&mut con)
        .map_err(e)?;
    let state: BTreeMap<Vec<u8>, Vec<u8>> = redis::cmd("HGETALL")
        .arg(format!("relink:{{{TOPIC}}}:state"))
        .query(&mut con)
        .map_err(e)?;
    // Nothing else runs now: what is queued is what no consumer took.
    let jobs_left: Vec<String> = redis::cmd("LRANGE")
        .arg(JOBS)
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .map_err(e)?;
    let tx_counter: Option<u64> = redis::cmd("GET")
        .arg(TX_COUNTER)
        .query(&mut con)
        .map_err(e)?;
    Ok(ServerView {
        counters,
        checked_keys,
        missing,
        epoch: Epoch(meta.0.ok_or("the topic has no epoch")?),
        watermark: meta.1.unwrap_or(0),
        state,
        queue: queue_books(pushed, taken, &jobs_left),
        tx_counter: tx_counter.unwrap_or(0),
    })
}

/// The job queue's books: every push's fate against what the consumers
/// took and what is still queued.
#[derive(Debug, Default)]
struct QueueBooks {
    acked: u64,
    taken: u64,
    left: u64,
    /// Acknowledged pushes neither taken nor queued.
    unaccounted: u64,
    /// Jobs seen more than once (taken twice, taken and queued, queued twice).
    twice: u64,
    /// Jobs seen whose push was refused (or never made), or not jobs at all.
    refused_seen: u64,
    /// Pushes of unknown outcome, and how many of them were applied.
    unknown: u64,
    unknown_applied: u64,
    /// First examples of each kind of problem.
    examples: Vec<String>,
}

fn queue_books(pushed: &[Vec<Push>], taken: &[(usize, u32)], left: &[String]) -> QueueBooks {
    let mut books = QueueBooks {
        taken: taken.len() as u64,
        left: left.len() as u64,
        ..QueueBooks::default()
    };
    let mut seen: Vec<Vec<u32>> = pushed.iter().map(|p| vec![0; p.len()]).collect();
    let note = |books: &mut QueueBooks, what: String| {
        if books.examples.len() < 5 {
            books.examples.push(what);
        }
    };
    let all = taken
        .iter()
        .map(|&(p, n)| (Some((p, n)), job(p, n), "taken"))
        .chain(left.iter().map(|j| (parse_job(j), j.clone(), "queued")));
    for (j, name, how) in all {
        let slot = j.and_then(|(p, n)| seen.get_mut(p)?.get_mut(n.checked_sub(1)? as usize));
        match slot {
            Some(count) => *count += 1,
            None => {
                books.refused_seen += 1;
                note(&mut books, format!("{how} `{name}`: no such push"));
            }
        }
    }
    for (p, fates) in pushed.iter().enumerate() {
        for (i, fate) in fates.iter().enumerate() {
            let count = seen[p][i];
            let name = job(p, i as u32 + 1);
            if count > 1 {
                books.twice += 1;
                note(&mut books, format!("job {name} seen {count} times"));
            }
            match fate {
                Push::Acked => {
                    books.acked += 1;
                    if count == 0 {
                        books.unaccounted += 1;
                        note(
                            &mut books,
                            format!("acknowledged job {name} neither taken nor queued"),
                        );
                    }
                }
                Push::Unknown => {
                    books.unknown += 1;
                    books.unknown_applied += u64::from(count > 0);
                }
                Push::Refused => {
                    if count > 0 {
                        books.refused_seen += 1;
                        note(&mut books, format!("job {name} seen, its push refused"));
                    }
                }
            }
        }
    }
    books
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn pcts(values: &[Duration]) -> String {
    if values.is_empty() {
        return "-".into();
    }
    let mut v = values.to_vec();
    v.sort();
    format!(
        "{}/{}/{} ms",
        percentile(&v, 0.5).as_millis(),
        percentile(&v, 0.99).as_millis(),
        v[v.len() - 1].as_millis()
    )
}

fn pcts4(values: &[Duration]) -> String {
    if values.is_empty() {
        return "-".into();
    }
    let mut v = values.to_vec();
    v.sort();
    format!(
        "{}/{}/{}/{} ms",
        percentile(&v, 0.5).as_millis(),
        percentile(&v, 0.9).as_millis(),
        percentile(&v, 0.99).as_millis(),
        v[v.len() - 1].as_millis()
    )
}
