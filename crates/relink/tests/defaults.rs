//! The defaults table a user reads (README.md and the crate docs' front
//! page) against the defaults `Config::new` really has: a default changed in
//! the code and not in the docs, or a table edited in one place only, fails
//! here with the row and the value to write.

use std::time::Duration;

use relink::config::{Jitter, OutagePolicy, Strategy};
use relink::core::backoff::BackoffPolicy;
use relink::core::supervisor::{REFUSED_DECAY, REFUSED_LATE_DECAY};
use relink::Config;

const HEADER: &str = "| setting | default | what it does |";

/// The table's lines, from its header to the last row.
fn table(text: &str, prefix: &str) -> Vec<String> {
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.strip_prefix(prefix).unwrap_or(l).trim_end().to_owned())
        .collect();
    let start = lines
        .iter()
        .position(|l| l == HEADER)
        .unwrap_or_else(|| panic!("no defaults table (`{HEADER}`)"));
    lines[start..]
        .iter()
        .take_while(|l| l.starts_with('|'))
        .cloned()
        .collect()
}

fn read(relative: &str) -> String {
    let path = format!("{}/{relative}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// `100 ms`, `5 s`: how the table writes a duration.
fn human(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// `1,024`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `exponential from 100 ms, ×2, at most 5 s, equal jitter` (and its limits
/// when `limits`).
fn backoff(policy: &BackoffPolicy, first: &str, limits: bool) -> String {
    let growth = match policy.strategy {
        Strategy::Exponential { multiplier } => format!("×{multiplier}"),
        other => panic!("the table describes an exponential backoff, not {other:?}"),
    };
    let jitter = match policy.jitter {
        Jitter::Equal => "equal jitter",
        other => panic!("the table describes equal jitter, not {other:?}"),
    };
    let mut text = format!(
        "{first} {}, {growth}, at most {}",
        human(policy.initial_delay),
        human(policy.max_delay)
    );
    if limits {
        text.push_str(&format!(", {jitter}"));
        assert!(
            policy.max_attempts.is_none() && policy.max_elapsed.is_none(),
            "the table says the default backoff has no limit"
        );
        text.push_str(", no limit");
    }
    text
}

/// Each row's setting and the text its default cell must start with.
fn expected() -> Vec<(&'static str, String)> {
    let config = Config::new("redis://127.0.0.1").expect("a plain URL is valid");
    let supervisor = config.supervisor_config();
    let heartbeat = supervisor.heartbeat;
    let call = config.call_policy();
    let (capacity, max_wait) = match config.outage() {
        OutagePolicy::Queue { capacity, max_wait } => (capacity, max_wait),
        other => panic!("the table describes a queue outage policy, not {other:?}"),
    };
    let exclusive = config.exclusive();
    let retry = config.retry();
    let deadline = config.deadline().expect("a default deadline");
    vec![
        (
            "`backoff`",
            backoff(&supervisor.backoff, "exponential from", true),
        ),
        (
            "`refused_max_delay`",
            format!(
                "{}, or 1/{REFUSED_DECAY} of the outage so far if longer, or its square over {}",
                human(supervisor.refused_max_delay),
                human(REFUSED_LATE_DECAY)
            ),
        ),
        (
            "`backoff_reset_after`",
            human(supervisor.backoff_reset_after),
        ),
        ("`connect_timeout`", human(supervisor.connect_timeout)),
        (
            "`heartbeat`",
            format!(
                "PING after {} of silence, dead after {} without an answer, {} misses allowed",
                human(heartbeat.interval),
                human(heartbeat.timeout),
                heartbeat.misses_allowed
            ),
        ),
        ("`response_timeout`", human(config.response_timeout())),
        ("`deadline`", format!("{} (`false`: none)", human(deadline))),
        (
            "`outage`",
            format!(
                "queue: {} calls, each waiting at most {}",
                thousands(capacity),
                human(max_wait)
            ),
        ),
        (
            "`exclusive`",
            format!(
                "{} connections, closed after {} unused",
                exclusive.max_connections,
                human(exclusive.idle_timeout)
            ),
        ),
        ("`retry.max_retries`", retry.max_retries.to_string()),
        (
            "`retry.budget`",
            format!(
                "{} tokens, {} refilled per success",
                retry.budget.max_tokens, retry.budget.token_ratio
            ),
        ),
        (
            "refusals (`LOADING`, `BUSY`, `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`)",
            backoff(
                &call.busy_backoff,
                "waited out within the outage wait, looking again after",
                false,
            ),
        ),
        (
            "redirects (`MOVED`, `ASK`)",
            format!("followed, at most {} per call", call.max_redirects),
        ),
        (
            "`tcp_keepalive`",
            human(config.tcp_keepalive().expect("keepalive on by default")),
        ),
        (
            "`tcp_nodelay`",
            match config.tcp_nodelay_setting() {
                // Left to the target: off on loopback, on elsewhere.
                None => {
                    let remote = Config::new("redis://10.0.0.5").expect("a remote URL");
                    let on = |c: &Config| if c.tcp_nodelay() { "on" } else { "off" };
                    format!(
                        "{} on loopback, {} otherwise",
                        on(&Config::new("redis://127.0.0.1").expect("a loopback URL")),
                        on(&remote)
                    )
                }
                Some(true) => "on".to_owned(),
                Some(false) => "off".to_owned(),
            },
        ),
    ]
}

#[test]
fn the_readme_defaults_table_is_config_news() {
    let rows = table(&read("../../README.md"), "");
    let mut expected = expected();
    assert_eq!(
        rows.len(),
        expected.len() + 2,
        "README's defaults table has {} rows; this test knows {}: check the new row here",
        rows.len().saturating_sub(2),
        expected.len()
    );
    for row in &rows[2..] {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
        let (setting, default) = (cells[0], cells[1]);
        let position = expected
            .iter()
            .position(|(name, _)| *name == setting)
            .unwrap_or_else(|| panic!("README's defaults table: unknown setting {setting}"));
        let (_, want) = expected.remove(position);
        assert!(
            default.starts_with(&want),
            "README's defaults table, {setting}: the default is `{want}`, the table says \
             `{default}`"
        );
    }
}

#[test]
fn the_crate_docs_show_the_readme_table() {
    let readme = table(&read("../../README.md"), "");
    let docs = table(&read("src/lib.rs"), "//! ");
    assert_eq!(
        docs, readme,
        "the defaults table in crates/relink/src/lib.rs differs from README.md's: copy it"
    );
}

#[test]
fn the_numbers_render_as_the_table_writes_them() {
    assert_eq!(human(Duration::from_millis(100)), "100 ms");
    assert_eq!(human(Duration::from_secs(5)), "5 s");
    assert_eq!(thousands(1024), "1,024");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(1_000_000), "1,000,000");
}
