//! relink's runnable examples live beside this file: `basic.rs` (the README's
//! example), `outage_tour.rs` (what `cargo xtask demo` runs), the soaks
//! (`chaos.rs`, `cluster_chaos.rs`, `sentinel_chaos.rs`) and the benchmark.
//! What the soaks share is here.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use relink::PubSubItem;

/// What a subscriber to numbered messages (`1`, `2`, ... as payloads) saw.
/// The soaks' Pub/Sub invariant: every message that never came lies in a
/// hole next to a gap marker, and (where the channel cannot repeat one)
/// nothing came twice.
#[derive(Debug, Default)]
pub struct Numbered {
    /// Messages received.
    pub received: u64,
    /// `Restored` markers.
    pub markers: u64,
    /// Messages dropped for a slow consumer (`Lagged`).
    pub lagged: u64,
    /// Holes in the numbering as they were seen: when, first and last
    /// number missing then (some may have come later, out of order).
    pub holes: Vec<(Instant, u64, u64)>,
    /// When each marker came.
    pub marker_times: Vec<Instant>,
    /// Messages that came a second time: when, and the number.
    pub duplicates: Vec<(Instant, u64)>,
    /// Messages that came after a higher number (the first time).
    pub late: u64,
    seen: BTreeSet<u64>,
    last: u64,
}

impl Numbered {
    /// Takes the next item of the subscription.
    pub fn observe(&mut self, item: &PubSubItem) {
        let now = Instant::now();
        match item {
            PubSubItem::Message { payload, .. } => {
                self.received += 1;
                let n: u64 = std::str::from_utf8(payload)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                if !self.seen.insert(n) {
                    self.duplicates.push((now, n));
                } else if n < self.last {
                    self.late += 1;
                } else {
                    if n > self.last + 1 {
                        self.holes.push((now, self.last + 1, n - 1));
                    }
                    self.last = n;
                }
            }
            PubSubItem::Restored { .. } => {
                self.markers += 1;
                self.marker_times.push(now);
            }
            PubSubItem::Lagged { missed } => self.lagged += missed,
            _ => {}
        }
    }

    /// The highest number heard.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Messages that came twice or out of order.
    pub fn disorder(&self) -> u64 {
        self.duplicates.len() as u64 + self.late
    }

    /// Messages up to the highest heard that never came.
    pub fn missing(&self) -> u64 {
        self.holes
            .iter()
            .map(|&(_, first, last)| {
                (first..=last).filter(|n| !self.seen.contains(n)).count() as u64
            })
            .sum()
    }

    /// Holes with a message that never came and no marker within `window`.
    pub fn unmarked_holes(&self, window: Duration) -> usize {
        self.holes
            .iter()
            .filter(|&&(at, first, last)| {
                (first..=last).any(|n| !self.seen.contains(&n)) && !self.near_marker(at, window)
            })
            .count()
    }

    /// Duplicates with no marker within `window` before them.
    pub fn unmarked_duplicates(&self, window: Duration) -> usize {
        self.duplicates
            .iter()
            .filter(|(at, _)| {
                !self
                    .marker_times
                    .iter()
                    .any(|m| m <= at && at.saturating_duration_since(*m) <= window)
            })
            .count()
    }

    fn near_marker(&self, at: Instant, window: Duration) -> bool {
        self.marker_times.iter().any(|m| {
            m.saturating_duration_since(at) <= window && at.saturating_duration_since(*m) <= window
        })
    }
}

/// A soak's `--duration`: `500ms`, `30s` (or `30`), `10m`, `1h`; positive.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num.parse().map_err(|_| format!("bad duration `{text}`"))?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n * 1000,
        "m" | "min" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return Err(format!("bad duration `{text}` (use ms, s, m or h)")),
    };
    if ms == 0 {
        return Err("the duration must be positive".into());
    }
    Ok(Duration::from_millis(ms))
}

/// The arguments of the smaller soaks: `[--seed N] [--duration D]`.
#[derive(Debug, Clone, Copy)]
pub struct SoakArgs {
    /// Seed of the fault schedule (default: from the clock; the soak prints it).
    pub seed: u64,
    /// How long to inject faults.
    pub duration: Duration,
}

/// Reads `--seed N` and `--duration D` from the command line (by default
/// the seed comes from the clock and the duration is `duration`), handing
/// any other argument to `other` with a way to take the value after it;
/// `other` answers false for an argument it does not know.
pub fn parse_soak_args(
    duration: Duration,
    mut other: impl FnMut(&str, &mut dyn FnMut() -> Result<String, String>) -> Result<bool, String>,
) -> Result<SoakArgs, String> {
    let mut args = SoakArgs {
        seed: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        duration,
    };
    let mut it = std::env::args().skip(1);
    // Bounded by the argument list.
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--seed" => {
                let v = value()?;
                args.seed = v.parse().map_err(|_| format!("bad seed `{v}`"))?;
            }
            "--duration" => args.duration = parse_duration(&value()?)?,
            unknown => {
                if !other(unknown, &mut value)? {
                    return Err(format!("unknown argument `{unknown}`"));
                }
            }
        }
    }
    Ok(args)
}

/// The start of a soak that takes only `[--seed N] [--duration D]` (`name`:
/// `cluster-chaos`, ...): its arguments (on a bad one, the usage and exit
/// code 2), panics counted from here on, the seed announced.
pub fn begin_soak(name: &str, duration: Duration) -> (SoakArgs, Arc<AtomicU64>) {
    let args = match parse_soak_args(duration, |_, _| Ok(false)) {
        Ok(args) => args,
        Err(why) => {
            eprintln!("{name}: {why}\nusage: {name} [--seed N] [--duration {duration:?}]");
            std::process::exit(2);
        }
    };
    let panics = count_panics();
    println!(
        "{}: seed {} for {:?} (replay with --seed {})",
        name.replace('-', " "),
        args.seed,
        args.duration,
        args.seed
    );
    (args, panics)
}

/// Counts the panics of every thread from now on (a panicking task does
/// not stop a soak, but fails it), keeping the default report.
pub fn count_panics() -> Arc<AtomicU64> {
    let panics = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&panics);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        counter.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    panics
}

/// Runs a blocking call (process control, a bounded wait of the test
/// support) without stalling the runtime's other tasks.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Prints a soak's verdict and returns its exit code: 0 when `violations`
/// is empty, else 1 after listing them. Stop the spawned processes first:
/// `std::process::exit` runs no destructor.
pub fn verdict(soak: &str, seed: u64, violations: &[String]) -> i32 {
    if violations.is_empty() {
        println!("{soak}: every invariant held (seed {seed})");
        return 0;
    }
    println!("\nINVARIANT VIOLATED (seed {seed}; replay with the same seed):");
    for v in violations {
        println!("  {v}");
    }
    1
}
