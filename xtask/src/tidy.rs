//! `cargo xtask tidy`: the check that keeps every decision in relink-core
//! (rust-analyzer's tidy, in spirit). Plain Rust that reads source files and
//! fails with a message saying what to do instead. Knows nothing of what
//! the code does beyond the patterns below.
//!
//! Each rule is a row of [`RULES`]: an id, a one-line reason (printed with
//! every violation: where the decision belongs), where it applies, the files
//! it exempts, and a matcher over one line of code. Lines are read with
//! comments removed and the contents of string and char literals blanked
//! (so a doc example or a message that *mentions* `tokio::time::sleep(` is
//! not a violation); the string literals are kept aside for the rule that
//! looks for Redis error codes. Code in `#[cfg(test)]` items and `#[test]`
//! functions is exempt from the driver rules.
//!
//! The driver rules (in `crates/relink/src`, `crates/relink-ffi/src` and
//! `crates/relink-wasm/src`):
//!
//! - `sleep`: `tokio::time::sleep(`, `std::thread::sleep(` (or importing
//!   either), and `sleep_until(` / `timeout_at(` with a deadline made on the
//!   spot (`Instant::now()`, `now() +`, a `Duration::`): a driver waits only
//!   until a deadline the core handed out.
//! - `literal-duration`: `Duration::from_millis(<literal>)` (and `from_secs`,
//!   `from_micros`, `from_nanos`, `from_secs_f64`, `from_secs_f32`,
//!   `Duration::new`). **Config defaults are allowed in
//!   `crates/relink/src/config.rs`, and in `impl Default for …` blocks**:
//!   config.rs is where the user's knobs and their defaults and bounds live,
//!   and a `Default` impl is a default the user sees and can override (an
//!   options struct's). A literal anywhere else, a `const` included, is a
//!   policy nobody can see or change.
//! - `error-kind`: `ErrorKind::` (io's or redis-rs's), `.is_timeout()`,
//!   `.is_connection_dropped()`, `.is_connection_refusal()`,
//!   `.is_io_error()`, `.is_unrecoverable_error()`, `.retry_method()`,
//!   `.raw_os_error()` outside `crates/relink/src/classify.rs`. This rule
//!   and the two error-code rules also cover `crates/relink-doctor/src`:
//!   the doctor reads failures through relink's classifier, never its own.
//! - `error-code`: `.code()` *inspected* (on a line that also compares,
//!   matches or classifies: `==`, `!=`, `match`, `matches!`, `if let`,
//!   `is_some`, `is_none`, `starts_with`, `contains(`, `from_error_code(`)
//!   outside `classify.rs`. Reading a code to print it is conversion, not a
//!   decision, and is not flagged.
//! - `error-code-literal`: a string literal whose first word is a Redis
//!   error code (`"LOADING"`, `"READONLY"`, `"MOVED"`, ...; see
//!   [`REDIS_ERROR_CODES`]) outside `classify.rs`, except as a command name
//!   (`cmd("READONLY")`, `.arg("...")`). `"ERR"` is not in the list: it is
//!   every reply's default, and means nothing to decide on.
//! - `liveness`: a heartbeat-miss count kept by a driver (`misses += 1`, an
//!   identifier with `miss` and `heartbeat`/`ping`/`pong`/`probe` being
//!   incremented), or a reply age computed by one (`last_reply`,
//!   `last_pong`, `last_activity`, ... with `.elapsed()`, `duration_since(`,
//!   `saturating_since(`, `saturating_sub(`, `checked_sub(` or ` - `).
//!
//! Everywhere (`crates/*/src`, and for `#[ignore]` also the tests,
//! benches, `examples/` and `xtask/src`):
//!
//! - `todo`: `todo!`, `unimplemented!`, `dbg!` in library code.
//! - `panic` (in the published libraries, outside tests): `.unwrap()`,
//!   `.expect(`, `panic!(`, `unreachable!(`: no panic is reachable from a
//!   user's call.
//! - `ignore`: `#[ignore]` tests.
//!
//! In the npm package's driver (`bindings/js`: [`JS_DRIVER`], its tests
//! excluded), the same promises for JavaScript ([`check_js_source`]):
//!
//! - `js-timer`: `setTimeout(`/`setInterval(` with a literal delay: waits
//!   are deadlines the engine handed out.
//! - `js-error-code`: an error code or error class named in the driver (a
//!   string literal that is a Redis error code, a Node errno name such as
//!   `'ECONNRESET'`, or a node-redis error class; `instanceof` such a class;
//!   `.code`/`.name` compared): errors are read by relink-wasm's
//!   `classify.rs`.
//! - `js-liveness`: a miss count kept in JavaScript (`misses += 1`,
//!   `missed++`): liveness is the Supervisor's verdict.
//!
//! And one rule about the build, `core-deps`: `cargo tree -p relink-core -e
//! normal --prefix none` may list only [`CORE_DEPENDENCIES`] (serde,
//! thiserror and their proc-macro dependencies): no runtime, socket, clock
//! or random source in the core.
//!
//! **The allow-list**, `xtask/tidy-allow.txt`, names violations that exist
//! today and are being removed (`path rule`, one per line, `#` comments). An
//! allowed violation is still printed, marked as allowed; an entry that no
//! longer matches any violation fails the check, so the list can only
//! shrink.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use crate::{cargo, header, project_root, Failure, Result};

/// Where the allow-list lives, relative to the workspace root.
pub const ALLOW_LIST: &str = "xtask/tidy-allow.txt";

/// The drivers: they execute the core's decisions and make none.
/// The published libraries: what a user's call runs.
const LIBRARIES: &[&str] = &[
    "crates/relink-core/src",
    "crates/relink/src",
    "crates/relink-ffi/src",
    "crates/relink-wasm/src",
];

const DRIVERS: &[&str] = &[
    "crates/relink/src",
    "crates/relink-ffi/src",
    "crates/relink-wasm/src",
];

/// Where errors are read only through the classifier: the drivers, and
/// relink-doctor, which must say what the client says (no second copy).
const CLASSIFIER_USERS: &[&str] = &[
    "crates/relink/src",
    "crates/relink-ffi/src",
    "crates/relink-wasm/src",
    "crates/relink-doctor/src",
];

/// The one classifier of the native driver.
const CLASSIFIER: &str = "crates/relink/src/classify.rs";

/// Where the native driver's config defaults live.
const CONFIG: &str = "crates/relink/src/config.rs";

/// One rule: a matcher over lines, and what to tell whoever breaks it.
#[derive(Debug)]
pub struct Rule {
    /// The name used in the allow-list and in messages.
    pub id: &'static str,
    /// Printed with every violation: what to do instead.
    pub reason: &'static str,
    /// Path patterns the rule applies to (`*` matches one path segment; a
    /// pattern matches everything under it).
    pub scope: &'static [&'static str],
    /// Files the rule does not apply to.
    pub exempt: &'static [&'static str],
    /// Does the rule apply inside `#[cfg(test)]` items and `#[test]` functions too?
    pub in_tests: bool,
    /// Does the rule apply inside `impl Default for …` blocks too?
    pub in_defaults: bool,
    /// Says what on the line breaks the rule, if anything does.
    pub check: fn(&Line) -> Option<String>,
}

/// The rules over source lines; `core-deps` is [`check_core_dependencies`].
pub const RULES: &[Rule] = &[
    Rule {
        id: "sleep",
        reason: "a driver waits only until a deadline the core handed out \
                 (Output::Timeout, a call Decision): ask relink_core when to act",
        scope: DRIVERS,
        exempt: &[],
        in_tests: false,
        in_defaults: true,
        check: sleep,
    },
    Rule {
        id: "literal-duration",
        reason: "a delay is policy: take it from the Config (defaults live in \
                 crates/relink/src/config.rs) or from a deadline relink_core handed out",
        scope: DRIVERS,
        exempt: &[CONFIG],
        in_tests: false,
        in_defaults: false,
        check: literal_duration,
    },
    Rule {
        id: "error-kind",
        reason: "classify in crates/relink/src/classify.rs (or relink_core::failure) \
                 and ask the core",
        scope: CLASSIFIER_USERS,
        exempt: &[CLASSIFIER],
        in_tests: false,
        in_defaults: true,
        check: error_kind,
    },
    Rule {
        id: "error-code",
        reason: "classify in crates/relink/src/classify.rs (or relink_core::failure) \
                 and ask the core",
        scope: CLASSIFIER_USERS,
        exempt: &[CLASSIFIER],
        in_tests: false,
        in_defaults: true,
        check: error_code,
    },
    Rule {
        id: "error-code-literal",
        reason: "classify in crates/relink/src/classify.rs (or relink_core::failure) \
                 and ask the core",
        scope: CLASSIFIER_USERS,
        exempt: &[CLASSIFIER],
        in_tests: false,
        in_defaults: true,
        check: error_code_literal,
    },
    Rule {
        id: "liveness",
        reason: "liveness is the core's verdict: feed Input::Activity / Pong / PingFailed \
                 and let relink_core::supervisor count misses and declare a connection dead",
        scope: DRIVERS,
        exempt: &[],
        in_tests: false,
        in_defaults: true,
        check: liveness,
    },
    Rule {
        id: "panic",
        reason: "no panic reachable from a user's call: return an error (a poisoned \
                 lock: `unwrap_or_else(PoisonError::into_inner)`)",
        scope: LIBRARIES,
        exempt: &[],
        in_tests: false,
        in_defaults: false,
        check: panics,
    },
    Rule {
        id: "todo",
        reason: "no todo!/unimplemented!/dbg! in library code: finish it, return an error, \
                 or use tracing",
        scope: &["crates/*/src"],
        exempt: &[],
        in_tests: true,
        in_defaults: true,
        check: todo,
    },
    Rule {
        id: "ignore",
        reason: "no #[ignore]d tests: assert today's behaviour with a FIXME, or move slow \
                 checks to cargo xtask bench/chaos",
        scope: &[
            "crates/*/src",
            "crates/*/tests",
            "crates/*/benches",
            "examples",
            "xtask/src",
        ],
        exempt: &[],
        in_tests: true,
        in_defaults: true,
        check: ignore,
    },
];

/// The `core-deps` rule's id and reason.
pub const CORE_DEPS: &str = "core-deps";
const CORE_DEPS_REASON: &str = "relink-core depends on no runtime, socket, clock or random \
                                source (DESIGN.md: dependency rules): keep such crates in the drivers";
/// The file a `core-deps` violation is reported against.
const CORE_MANIFEST: &str = "crates/relink-core/Cargo.toml";

/// The crates `cargo tree -p relink-core -e normal` may list: relink-core,
/// serde and thiserror, and the proc-macro crates their derives need.
pub const CORE_DEPENDENCIES: &[&str] = &[
    "relink-core",
    "serde",
    "serde_core",
    "serde_derive",
    "thiserror",
    "thiserror-impl",
    "proc-macro2",
    "quote",
    "syn",
    "unicode-ident",
];

/// Redis error codes a driver must not decide on by itself.
pub const REDIS_ERROR_CODES: &[&str] = &[
    "ASK",
    "BUSY",
    "BUSYGROUP",
    "BUSYKEY",
    "CLUSTERDOWN",
    "CROSSSLOT",
    "EXECABORT",
    "LOADING",
    "MASTERDOWN",
    "MISCONF",
    "MOVED",
    "NOAUTH",
    "NOPERM",
    "NOREPLICAS",
    "NOSCRIPT",
    "OOM",
    "READONLY",
    "TRYAGAIN",
    "UNBLOCKED",
    "WRONGPASS",
    "WRONGTYPE",
];

// ---------------------------------------------------------------------------
// The matchers

/// One line of a source file, as the rules see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Line {
    /// 1-based.
    pub number: usize,
    /// The code: comments removed, literal contents blanked (quotes kept).
    pub code: String,
    /// The string literals that start on this line.
    pub literals: Vec<Literal>,
    /// Inside a `#[cfg(test)]` item or a `#[test]` function.
    pub in_test: bool,
    /// Inside an `impl Default for …` block.
    pub in_default: bool,
}

/// A string literal: its contents, and where its opening quote is in [`Line::code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal {
    pub text: String,
    pub at: usize,
}

fn sleep(line: &Line) -> Option<String> {
    let code = line.code.as_str();
    for needle in ["time::sleep(", "thread::sleep("] {
        if code.contains(needle) {
            return Some(format!("`{needle}`"));
        }
    }
    for call in ["sleep_until(", "timeout_at("] {
        if let Some(i) = code.find(call) {
            let args = &code[i + call.len()..];
            if ["Instant::now()", "now() +", "now()+", "Duration::"]
                .iter()
                .any(|made_here| args.contains(made_here))
            {
                return Some(format!("`{call}` a deadline made here"));
            }
        }
    }
    let imports_sleep = code.trim_start().starts_with("use ")
        && (code.contains("tokio::time") || code.contains("std::thread"))
        && identifiers(code).any(|id| id == "sleep");
    imports_sleep.then(|| "imports `sleep`".to_owned())
}

fn literal_duration(line: &Line) -> Option<String> {
    const CONSTRUCTORS: &[&str] = &[
        "from_millis(",
        "from_secs(",
        "from_micros(",
        "from_nanos(",
        "from_secs_f64(",
        "from_secs_f32(",
        "new(",
    ];
    let code = line.code.as_str();
    let mut rest = code;
    while let Some(i) = rest.find("Duration::") {
        rest = &rest[i + "Duration::".len()..];
        for constructor in CONSTRUCTORS {
            if let Some(args) = rest.strip_prefix(constructor) {
                if args.trim_start().starts_with(|c: char| c.is_ascii_digit()) {
                    let shown: String = args.chars().take_while(|&c| c != ')').collect();
                    return Some(format!("`Duration::{constructor}{shown})`"));
                }
            }
        }
    }
    None
}

fn error_kind(line: &Line) -> Option<String> {
    const NEEDLES: &[&str] = &[
        "ErrorKind::",
        ".is_timeout()",
        ".is_connection_dropped()",
        ".is_connection_refusal()",
        ".is_io_error()",
        ".is_unrecoverable_error()",
        ".retry_method()",
        ".raw_os_error()",
    ];
    NEEDLES
        .iter()
        .find(|n| line.code.contains(**n))
        .map(|n| format!("`{n}`"))
}

fn error_code(line: &Line) -> Option<String> {
    const INSPECTED: &[&str] = &[
        "==",
        "!=",
        "match ",
        "matches!",
        "if let",
        "is_some",
        "is_none",
        "starts_with",
        "contains(",
        "from_error_code(",
    ];
    let code = line.code.as_str();
    if !code.contains(".code()") {
        return None;
    }
    INSPECTED
        .iter()
        .find(|m| code.contains(**m))
        .map(|m| format!("`.code()` inspected (`{}`)", m.trim()))
}

fn error_code_literal(line: &Line) -> Option<String> {
    line.literals.iter().find_map(|lit| {
        let word = lit.text.split_whitespace().next()?;
        if !REDIS_ERROR_CODES.contains(&word) {
            return None;
        }
        let before = line.code[..lit.at].trim_end();
        let a_command = before.ends_with("cmd(") || before.ends_with(".arg(");
        (!a_command).then(|| format!("the Redis error code \"{word}\""))
    })
}

fn liveness(line: &Line) -> Option<String> {
    const INCREMENTS: &[&str] = &[
        "+=",
        "+ 1",
        "saturating_add(",
        "checked_add(",
        "wrapping_add(",
        "fetch_add(",
    ];
    const PROBES: &[&str] = &["heartbeat", "ping", "pong", "probe"];
    const LAST_HEARD: &[&str] = &[
        "last_reply",
        "last_pong",
        "last_ping",
        "last_rx",
        "last_activity",
        "last_seen",
        "last_heard",
        "last_heartbeat",
    ];
    const AGES: &[&str] = &[
        ".elapsed()",
        "duration_since(",
        "saturating_since(",
        "saturating_sub(",
        "checked_sub(",
        " - ",
    ];
    let code = line.code.as_str();
    let lower = |id: &str| id.to_ascii_lowercase();
    if INCREMENTS.iter().any(|i| code.contains(i)) {
        if let Some(id) = identifiers(code).map(lower).find(|id| {
            id.contains("miss") && (id == "misses" || PROBES.iter().any(|p| id.contains(p)))
        }) {
            return Some(format!("counts heartbeat misses (`{id}`)"));
        }
    }
    if AGES.iter().any(|a| code.contains(a)) {
        if let Some(id) = identifiers(code)
            .map(lower)
            .find(|id| LAST_HEARD.iter().any(|l| id.contains(l)))
        {
            return Some(format!("judges the age of `{id}`"));
        }
    }
    None
}

fn todo(line: &Line) -> Option<String> {
    ["todo!", "unimplemented!", "dbg!"]
        .iter()
        .find(|m| {
            line.code
                .match_indices(**m)
                .any(|(i, _)| !preceded_by_identifier(&line.code, i))
        })
        .map(|m| format!("`{m}`"))
}

fn panics(line: &Line) -> Option<String> {
    [".unwrap()", ".expect(", "panic!(", "unreachable!("]
        .iter()
        .find(|m| {
            line.code
                .match_indices(**m)
                .any(|(i, _)| m.starts_with('.') || !preceded_by_identifier(&line.code, i))
        })
        .map(|m| format!("`{m}`"))
}

fn ignore(line: &Line) -> Option<String> {
    let code: String = line.code.chars().filter(|c| !c.is_whitespace()).collect();
    code.contains("#[ignore").then(|| "`#[ignore]`".to_owned())
}

fn preceded_by_identifier(code: &str, i: usize) -> bool {
    code[..i]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// The identifiers (and keywords) on a line of code.
fn identifiers(code: &str) -> impl Iterator<Item = &str> {
    code.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with(|c: char| c.is_alphabetic() || c == '_'))
}

// ---------------------------------------------------------------------------
// Reading source

/// Splits Rust source into [`Line`]s: comments (line, block, nested) removed,
/// string, raw string, byte string and char literal contents blanked, and
/// lines inside `#[cfg(test)]` / `#[test]` items and `impl Default` blocks
/// marked.
pub fn lines(source: &str) -> Vec<Line> {
    let mut lines = lex(source);
    let tests = items(&lines, |code| {
        code.contains("#[cfg(test)]") || code.contains("#[test]")
    });
    let defaults = items(&lines, |code| {
        code.starts_with("impl") && code.contains("Defaultfor")
    });
    for ((line, in_test), in_default) in lines.iter_mut().zip(tests).zip(defaults) {
        line.in_test = in_test;
        line.in_default = in_default;
    }
    lines
}

fn lex(source: &str) -> Vec<Line> {
    let chars: Vec<char> = source.chars().collect();
    let mut lines = vec![Line {
        number: 1,
        ..Line::default()
    }];
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let current = lines.last_mut().expect("at least one line");
        match c {
            '\n' => {
                push_line(&mut lines);
                i += 1;
            }
            '/' if next == Some('/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if chars[i] == '\n' {
                            push_line(&mut lines);
                        }
                        i += 1;
                    }
                }
                if let Some(line) = lines.last_mut() {
                    line.code.push(' ');
                }
            }
            '"' => i = string(&chars, i + 1, &mut lines),
            'r' | 'b' | 'c' if !after_identifier(&chars, i) && raw_or_prefixed(&chars, i) => {
                // b"..", c"..", r"..", r#".."#, br#".."#: copy the prefix, then the literal.
                let mut j = i;
                while chars[j] != '"' && chars[j] != '#' {
                    current.code.push(chars[j]);
                    j += 1;
                }
                let raw = chars[i..j].contains(&'r');
                let mut hashes = 0;
                while chars[j] == '#' {
                    current.code.push('#');
                    hashes += 1;
                    j += 1;
                }
                i = if raw {
                    raw_string(&chars, j + 1, hashes, &mut lines)
                } else {
                    string(&chars, j + 1, &mut lines)
                };
            }
            '\'' => {
                // A char literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
                if next == Some('\\') {
                    // Past the backslash and the escaped char, to the closing quote.
                    let mut j = i + 3;
                    while j < chars.len() && chars[j] != '\'' && chars[j] != '\n' {
                        j += 1;
                    }
                    current.code.push_str("' '");
                    i = j + 1;
                } else if chars.get(i + 2) == Some(&'\'') {
                    current.code.push_str("' '");
                    i += 3;
                } else {
                    current.code.push('\'');
                    i += 1;
                }
            }
            _ => {
                current.code.push(c);
                i += 1;
            }
        }
    }
    lines
}

fn after_identifier(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Is `chars[i..]` the prefix of a string literal (`b"`, `c"`, `r"`, `r#"`, `br"`, `br#"`)?
fn raw_or_prefixed(chars: &[char], i: usize) -> bool {
    let mut j = i;
    if chars[j] == 'b' || chars[j] == 'c' {
        j += 1;
    }
    let raw = chars.get(j) == Some(&'r');
    if raw {
        j += 1;
        while chars.get(j) == Some(&'#') {
            j += 1;
        }
    }
    j > i && chars.get(j) == Some(&'"') && (raw || j == i + 1)
}

/// Reads a (non-raw) string literal from after its opening quote; returns
/// the index after its closing quote.
fn string(chars: &[char], mut i: usize, lines: &mut Vec<Line>) -> usize {
    let (start_line, at) = open_literal(lines);
    let mut text = String::new();
    while i < chars.len() && chars[i] != '"' {
        if chars[i] == '\\' && i + 1 < chars.len() {
            text.push(chars[i]);
            text.push(chars[i + 1]);
            if chars[i + 1] == '\n' {
                push_line(lines);
            }
            i += 2;
            continue;
        }
        if chars[i] == '\n' {
            push_line(lines);
        }
        text.push(chars[i]);
        i += 1;
    }
    close_literal(lines, start_line, at, text);
    i + 1
}

/// Reads a raw string literal closed by `"` and `hashes` `#`s.
fn raw_string(chars: &[char], mut i: usize, hashes: usize, lines: &mut Vec<Line>) -> usize {
    let (start_line, at) = open_literal(lines);
    let mut text = String::new();
    while i < chars.len() {
        if chars[i] == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
            close_literal(lines, start_line, at, text);
            let end = i + 1 + hashes;
            if let Some(line) = lines.last_mut() {
                line.code.push_str(&"#".repeat(hashes));
            }
            return end;
        }
        if chars[i] == '\n' {
            push_line(lines);
        }
        text.push(chars[i]);
        i += 1;
    }
    close_literal(lines, start_line, at, text);
    i
}

fn push_line(lines: &mut Vec<Line>) {
    let number = lines.len() + 1;
    lines.push(Line {
        number,
        ..Line::default()
    });
}

fn open_literal(lines: &mut [Line]) -> (usize, usize) {
    let line = lines.last_mut().expect("at least one line");
    let at = line.code.len();
    line.code.push('"');
    (lines.len() - 1, at)
}

fn close_literal(lines: &mut [Line], start_line: usize, at: usize, text: String) {
    if let Some(line) = lines.last_mut() {
        line.code.push('"');
    }
    lines[start_line].literals.push(Literal { text, at });
}

/// Which lines belong to an item that starts on a line whose code (spaces
/// removed) satisfies `starts`: from that line to the end of the item (its
/// matching `}`, or its `;`).
fn items(lines: &[Line], starts: impl Fn(&str) -> bool) -> Vec<bool> {
    let mut depth: usize = 0;
    let mut item_depth: Option<usize> = None;
    let mut pending = false;
    let mut marks = Vec::with_capacity(lines.len());
    for line in lines {
        let squeezed: String = line.code.chars().filter(|c| !c.is_whitespace()).collect();
        if item_depth.is_none() && starts(&squeezed) {
            pending = true;
        }
        let mut inside = pending || item_depth.is_some();
        for c in line.code.chars() {
            match c {
                '{' => {
                    if pending && item_depth.is_none() {
                        item_depth = Some(depth);
                        pending = false;
                    }
                    depth += 1;
                }
                '}' => {
                    depth = depth.saturating_sub(1);
                    if item_depth == Some(depth) {
                        item_depth = None;
                    }
                }
                ';' if pending && item_depth.is_none() => pending = false,
                _ => {}
            }
            inside |= item_depth.is_some();
        }
        marks.push(inside);
    }
    marks
}

// ---------------------------------------------------------------------------
// Running the rules

/// A broken rule at a place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Relative to the workspace root, `/`-separated.
    pub path: String,
    /// 1-based; 0 for a rule about a whole file.
    pub line: usize,
    pub rule: &'static str,
    pub reason: &'static str,
    /// What on the line breaks the rule.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: ", self.path, self.line)?;
        } else {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{} [{}]: {}", self.what, self.rule, self.reason)
    }
}

/// Does `path` fall under `pattern` (`*` matches one segment; a pattern
/// matches itself and everything under it)?
pub fn in_scope(path: &str, pattern: &str) -> bool {
    let mut segments = path.split('/');
    pattern
        .split('/')
        .all(|p| segments.next().is_some_and(|s| p == "*" || p == s))
}

/// Every violation of [`RULES`] in one file's source.
pub fn check_source(path: &str, source: &str) -> Vec<Violation> {
    let rules: Vec<&Rule> = RULES
        .iter()
        .filter(|r| r.scope.iter().any(|s| in_scope(path, s)) && !r.exempt.contains(&path))
        .collect();
    if rules.is_empty() {
        return Vec::new();
    }
    let mut found = Vec::new();
    for line in lines(source) {
        for rule in &rules {
            if (line.in_test && !rule.in_tests) || (line.in_default && !rule.in_defaults) {
                continue;
            }
            if let Some(what) = (rule.check)(&line) {
                found.push(Violation {
                    path: path.to_owned(),
                    line: line.number,
                    rule: rule.id,
                    reason: rule.reason,
                    what,
                });
            }
        }
    }
    found
}

/// The crates in `cargo tree --prefix none` output that are not allowed in
/// the core (each once, in order of appearance).
pub fn unexpected_core_dependencies(tree: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    tree.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| !CORE_DEPENDENCIES.contains(name))
        .filter(|name| seen.insert(name.to_string()))
        .map(str::to_owned)
        .collect()
}

fn check_core_dependencies() -> Result<Vec<Violation>> {
    let out = cargo()
        .args([
            "tree",
            "-p",
            "relink-core",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .output()
        .map_err(|e| Failure::new(format!("cannot run cargo tree: {e}")))?;
    if !out.status.success() {
        return Err(Failure::new(format!(
            "cargo tree -p relink-core failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(
        unexpected_core_dependencies(&String::from_utf8_lossy(&out.stdout))
            .into_iter()
            .map(|name| Violation {
                path: CORE_MANIFEST.to_owned(),
                line: 0,
                rule: CORE_DEPS,
                reason: CORE_DEPS_REASON,
                what: format!(
                    "`{name}` in `cargo tree -p relink-core -e normal` (allowed: {})",
                    CORE_DEPENDENCIES.join(", ")
                ),
            })
            .collect(),
    )
}

/// Where the JavaScript driver lives: the npm package's own files (its
/// tests, `node_modules` and the generated `pkg/` are not scanned).
pub const JS_DRIVER: &str = "bindings/js";

/// The JavaScript rules: id and what to do instead.
pub const JS_RULES: &[(&str, &str)] = &[
    (
        "js-timer",
        "a driver waits only until a deadline the engine handed out (pollOutput's \
         timeout, a Call decision): no literal delays in bindings/js",
    ),
    (
        "js-error-code",
        "errors are read by the one classifier, crates/relink-wasm/src/classify.rs \
         (classifyNodeError, connectCauseOfNodeError, asideVerdictOfNodeError)",
    ),
    (
        "js-liveness",
        "liveness is the Supervisor's verdict: report pong / activity / ping_failed \
         and let it count misses",
    ),
];

/// node-redis's error classes: naming one in the driver is classifying.
pub const NODE_REDIS_ERRORS: &[&str] = &[
    "AbortError",
    "BlobError",
    "ClientClosedError",
    "ClientOfflineError",
    "ConnectionTimeoutError",
    "DisconnectsClientError",
    "ErrorReply",
    "ReconnectStrategyError",
    "SimpleError",
    "SocketClosedUnexpectedlyError",
    "SocketTimeoutError",
    "TimeoutError",
];

/// One line of JavaScript as the JS rules see it: code with comments removed
/// and string contents blanked, and the string literals that start on it.
fn js_lines(source: &str) -> Vec<(usize, String, Vec<String>)> {
    let mut lines = vec![(1, String::new(), Vec::new())];
    let chars: Vec<char> = source.chars().collect();
    let mut i = 0;
    let mut block_comment = false;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            let number = lines.len() + 1;
            lines.push((number, String::new(), Vec::new()));
            i += 1;
        } else if block_comment {
            if c == '*' && next == Some('/') {
                block_comment = false;
                i += 1;
            }
            i += 1;
        } else if c == '/' && next == Some('*') {
            block_comment = true;
            i += 2;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if matches!(c, '\'' | '"' | '`') {
            let quote = c;
            let mut text = String::new();
            i += 1;
            while i < chars.len() && chars[i] != quote {
                if chars[i] == '\\' {
                    i += 1;
                }
                if let Some(&ch) = chars.get(i) {
                    if ch == '\n' {
                        let number = lines.len() + 1;
                        lines.push((number, String::new(), Vec::new()));
                    }
                    text.push(ch);
                }
                i += 1;
            }
            i += 1;
            if let Some(line) = lines.last_mut() {
                line.1.push(quote);
                line.1.push(quote);
                line.2.push(text);
            }
        } else {
            if let Some(line) = lines.last_mut() {
                line.1.push(c);
            }
            i += 1;
        }
    }
    lines
}

/// Is `text` a Node errno-style code (`ECONNRESET`, `EAI_AGAIN`)? Node's own
/// `ERR_*` codes and relink's are not transport errors.
fn errno_name(text: &str) -> bool {
    text.len() >= 4
        && text.starts_with('E')
        && !text.starts_with("ERR")
        && text.chars().all(|c| c.is_ascii_uppercase() || c == '_')
}

/// Every violation of the JS rules in one file of the npm package's driver.
pub fn check_js_source(path: &str, source: &str) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut report = |line: usize, rule: &'static str, what: String| {
        let reason = JS_RULES
            .iter()
            .find(|(id, _)| *id == rule)
            .map_or("", |(_, reason)| reason);
        found.push(Violation {
            path: path.to_owned(),
            line,
            rule,
            reason,
            what,
        });
    };
    for (number, code, literals) in js_lines(source) {
        for timer in ["setTimeout(", "setInterval("] {
            for (at, _) in code.match_indices(timer) {
                // The delay: what follows the first top-level comma of the call.
                let args = &code[at + timer.len()..];
                let mut depth = 0;
                let delay = args.char_indices().find_map(|(j, ch)| match ch {
                    '(' | '[' | '{' => {
                        depth += 1;
                        None
                    }
                    ')' | ']' | '}' => {
                        depth -= 1;
                        None
                    }
                    ',' if depth == 0 => Some(args[j + 1..].trim_start()),
                    _ => None,
                });
                if delay.is_some_and(|d| d.starts_with(|ch: char| ch.is_ascii_digit())) {
                    report(
                        number,
                        "js-timer",
                        format!("`{timer}` with a literal delay"),
                    );
                }
            }
        }
        for text in &literals {
            let word = text.split_whitespace().next().unwrap_or("");
            if REDIS_ERROR_CODES.contains(&word)
                || errno_name(text)
                || NODE_REDIS_ERRORS.contains(&text.as_str())
            {
                report(
                    number,
                    "js-error-code",
                    format!("the error code or class `{text}`"),
                );
            }
        }
        let compact: String = code.split_whitespace().collect();
        for class in NODE_REDIS_ERRORS {
            if code.contains(&format!("instanceof {class}")) {
                report(number, "js-error-code", format!("`instanceof {class}`"));
            }
        }
        for field in [".code", ".name", ".constructor"] {
            // `==` also finds `===`, `!=` also `!==`: one report per field.
            if ["==", "!="]
                .iter()
                .any(|op| compact.contains(&format!("{field}{op}")))
            {
                report(number, "js-error-code", format!("`{field}` compared"));
            }
        }
        let lower = compact.to_ascii_lowercase();
        if lower.contains("miss") && (lower.contains("+=1") || lower.contains("++")) {
            report(
                number,
                "js-liveness",
                "a miss count kept in JavaScript".into(),
            );
        }
    }
    found
}

/// The npm package's driver files: `.js`/`.mjs` under [`JS_DRIVER`],
/// neither tests nor generated nor installed files.
fn js_source_files(root: &Path) -> Result<Vec<String>> {
    files_under(
        root,
        &[JS_DRIVER],
        &["node_modules", "pkg", "test", "examples"],
        &["js", "mjs"],
    )
}

/// One line of the allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// 1-based line in the allow-list file.
    pub line: usize,
    pub path: String,
    pub rule: String,
}

/// Parses the allow-list: `path rule` per line; blank lines and `#` comments
/// (whole-line or trailing) are skipped. Unknown rules and malformed lines
/// are errors.
pub fn parse_allow_list(text: &str) -> std::result::Result<Vec<Allowed>, String> {
    let known = |rule: &str| {
        rule == CORE_DEPS
            || RULES.iter().any(|r| r.id == rule)
            || JS_RULES.iter().any(|(id, _)| *id == rule)
    };
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let fields: Vec<&str> = content.split_whitespace().collect();
        let [path, rule] = fields[..] else {
            return Err(format!(
                "{ALLOW_LIST}:{}: expected `path rule`, got `{content}`",
                i + 1
            ));
        };
        if !known(rule) {
            return Err(format!("{ALLOW_LIST}:{}: unknown rule `{rule}`", i + 1));
        }
        entries.push(Allowed {
            line: i + 1,
            path: path.to_owned(),
            rule: rule.to_owned(),
        });
    }
    Ok(entries)
}

/// What a run found: every violation with the allow-list line that allows it
/// (if any), and the allow-list entries that allowed nothing.
#[derive(Debug, Default)]
pub struct Report {
    pub violations: Vec<(Violation, Option<usize>)>,
    pub stale: Vec<Allowed>,
}

impl Report {
    /// Violations no allow-list entry covers.
    pub fn unallowed(&self) -> usize {
        self.violations.iter().filter(|(_, a)| a.is_none()).count()
    }
}

/// Matches violations with the allow-list.
pub fn judge(violations: Vec<Violation>, allowed: &[Allowed]) -> Report {
    let mut used = vec![false; allowed.len()];
    let violations = violations
        .into_iter()
        .map(|v| {
            let entry = allowed
                .iter()
                .position(|a| a.path == v.path && a.rule == v.rule);
            if let Some(i) = entry {
                used[i] = true;
            }
            (v, entry.map(|i| allowed[i].line))
        })
        .collect();
    let stale = allowed
        .iter()
        .zip(used)
        .filter(|(_, used)| !used)
        .map(|(a, _)| a.clone())
        .collect();
    Report { violations, stale }
}

/// The `.rs` files under `crates/`, `examples/` and `xtask/`, relative and sorted.
fn source_files(root: &Path) -> Result<Vec<String>> {
    files_under(
        root,
        &["crates", "examples", "xtask"],
        &["target", "node_modules", "pkg", ".git"],
        &["rs"],
    )
}

/// The files with one of `extensions` under the directories `starts`
/// (relative to `root`), skipping directories named in `skip`; relative,
/// `/`-separated and sorted.
fn files_under(
    root: &Path,
    starts: &[&str],
    skip: &[&str],
    extensions: &[&str],
) -> Result<Vec<String>> {
    let mut files = Vec::new();
    let mut dirs: Vec<_> = starts.iter().map(|d| root.join(d)).collect();
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Failure::new(format!("read {}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if !name.to_str().is_some_and(|n| skip.contains(&n)) {
                    dirs.push(path);
                }
            } else if path
                .extension()
                .is_some_and(|x| extensions.iter().any(|e| x == *e))
            {
                if let Ok(rel) = path.strip_prefix(root) {
                    let parts: Vec<String> = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    files.push(parts.join("/"));
                }
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `cargo xtask tidy` (and a step of `cargo xtask test`): prints every
/// violation, allowed or not, and fails on one the allow-list does not
/// cover or on an allow-list entry that no longer matches anything.
pub fn run() -> Result {
    header("tidy: no decision outside relink-core");
    let root = project_root();
    let mut violations = Vec::new();
    for path in source_files(&root)? {
        let source = std::fs::read_to_string(root.join(&path))
            .map_err(|e| Failure::new(format!("read {path}: {e}")))?;
        violations.extend(check_source(&path, &source));
    }
    for path in js_source_files(&root)? {
        let source = std::fs::read_to_string(root.join(&path))
            .map_err(|e| Failure::new(format!("read {path}: {e}")))?;
        violations.extend(check_js_source(&path, &source));
    }
    violations.extend(check_core_dependencies()?);
    let allow_text = std::fs::read_to_string(root.join(ALLOW_LIST)).unwrap_or_default();
    let allowed = parse_allow_list(&allow_text).map_err(Failure::new)?;
    let report = judge(violations, &allowed);

    for (v, entry) in &report.violations {
        match entry {
            Some(line) => println!("{v} (allowed by {ALLOW_LIST}:{line})"),
            None => println!("{v}"),
        }
    }
    for a in &report.stale {
        println!(
            "{ALLOW_LIST}:{}: `{} {}` matches no violation any more: delete the line (the \
             list only shrinks)",
            a.line, a.path, a.rule
        );
    }
    let unallowed = report.unallowed();
    println!(
        "tidy: {} violations, {} of them allowed by {ALLOW_LIST} ({} entries); {} stale entries",
        report.violations.len(),
        report.violations.len() - unallowed,
        allowed.len(),
        report.stale.len()
    );
    if unallowed > 0 || !report.stale.is_empty() {
        return Err(Failure::new(format!(
            "tidy: {unallowed} violations and {} stale allow-list entries; fix them where \
             the messages say (a decision belongs in relink-core)",
            report.stale.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The violations of `rule` in `source`, placed in a driver file.
    fn found(rule: &str, source: &str) -> Vec<String> {
        found_in("crates/relink/src/client.rs", rule, source)
    }

    fn found_in(path: &str, rule: &str, source: &str) -> Vec<String> {
        check_source(path, source)
            .into_iter()
            .filter(|v| v.rule == rule)
            .map(|v| format!("{}: {}", v.line, v.what))
            .collect()
    }

    fn flags(rule: &str, source: &str) {
        assert!(
            !found(rule, source).is_empty(),
            "[{rule}] should flag:\n{source}"
        );
    }

    fn passes(rule: &str, source: &str) {
        let hits = found(rule, source);
        assert!(hits.is_empty(), "[{rule}] should pass:\n{source}\n{hits:?}");
    }

    #[test]
    fn sleep_rule() {
        flags("sleep", "tokio::time::sleep(delay).await;");
        flags("sleep", "std::thread::sleep(d);");
        flags("sleep", "use tokio::time::{sleep, Instant};");
        flags(
            "sleep",
            "tokio::time::sleep_until(Instant::now() + step).await;",
        );
        passes("sleep", "tokio::time::sleep_until(deadline.into()).await;");
        passes("sleep", "let until = sleep_until_of(deadline);");
        passes("sleep", "/// Never `tokio::time::sleep(` here.\nfn f() {}");
        passes("sleep", r#"let text = "tokio::time::sleep(1)";"#);
    }

    #[test]
    fn literal_duration_rule() {
        flags("literal-duration", "let d = Duration::from_millis(50);");
        flags("literal-duration", "x(Duration::from_secs( 5 ));");
        flags("literal-duration", "Duration::from_millis(10 << n)");
        flags(
            "literal-duration",
            "const STEP: Duration = Duration::from_millis(100);",
        );
        flags("literal-duration", "Duration::new(1, 0)");
        passes(
            "literal-duration",
            "Duration::from_millis(self.queue_max_wait_ms)",
        );
        passes("literal-duration", "let d = Duration::ZERO;");
        // Config defaults are allowed where config lives.
        assert!(found_in(
            CONFIG,
            "literal-duration",
            "pub const DEFAULT: Duration = Duration::from_secs(3);"
        )
        .is_empty());
        // So are an options type's defaults, but not a const.
        passes(
            "literal-duration",
            "impl Default for TopicOptions {\n    fn default() -> Self {\n        \
             Self { block: Duration::from_millis(400) }\n    }\n}",
        );
        flags(
            "literal-duration",
            "impl Default for T {\n    fn default() -> Self { T }\n}\nfn f() { \
             Duration::from_millis(400); }",
        );
        // Tests may use any literal.
        passes(
            "literal-duration",
            "#[cfg(test)]\nmod tests {\n    fn f() { Duration::from_millis(5); }\n}",
        );
    }

    #[test]
    fn error_kind_rule() {
        flags("error-kind", "ErrorKind::Io => FailureKind::Io,");
        flags("error-kind", "io::Error::new(io::ErrorKind::TimedOut, e)");
        flags("error-kind", "_ if err.is_timeout() => {}");
        flags("error-kind", "if e.is_connection_refusal() {");
        flags("error-kind", "if e.is_connection_dropped() {");
        passes("error-kind", "let kind = classify::failure_kind(&err);");
        assert!(found_in(CLASSIFIER, "error-kind", "ErrorKind::Io => x,").is_empty());
        assert!(!found_in(
            "crates/relink-ffi/src/client.rs",
            "error-kind",
            "ErrorKind::Io => x,"
        )
        .is_empty());
        // The doctor says what the client says: it reads no error itself.
        let doctor = "crates/relink-doctor/src/checks.rs";
        assert!(!found_in(doctor, "error-kind", "if e.is_timeout() {").is_empty());
        assert!(!found_in(doctor, "error-code", "match err.code() {").is_empty());
        assert!(!found_in(doctor, "error-code-literal", "if c == \"LOADING\" {").is_empty());
    }

    #[test]
    fn error_code_rule() {
        flags("error-code", "&& err.code().is_some()");
        flags("error-code", "match err.code() {");
        flags(
            "error-code",
            "if FailureKind::from_error_code(r.code()) == Command {",
        );
        passes("error-code", r#"format!("{} {detail}", e.code())"#);
        passes("error-code", "let code = error.code();");
        assert!(found_in(CLASSIFIER, "error-code", "match err.code() {").is_empty());
    }

    #[test]
    fn error_code_literal_rule() {
        flags("error-code-literal", r#"Some("MOVED") => redirect(),"#);
        flags("error-code-literal", r#"if msg.starts_with("LOADING") {"#);
        flags(
            "error-code-literal",
            r#"matches!(code, "READONLY" | "ASK")"#,
        );
        passes("error-code-literal", r#"redis::cmd("ASKING")"#);
        passes(
            "error-code-literal",
            r#"redis::cmd("READONLY").query(&mut c)"#,
        );
        passes("error-code-literal", r#"e.code().unwrap_or("ERR")"#);
        passes("error-code-literal", "// a -LOADING reply\nlet x = 1;");
        assert!(found_in(CLASSIFIER, "error-code-literal", r#"Some("MOVED") => 1,"#).is_empty());
    }

    #[test]
    fn liveness_rule() {
        flags("liveness", "self.heartbeat_misses += 1;");
        flags("liveness", "misses += 1;");
        flags(
            "liveness",
            "self.missed_pings = self.missed_pings.saturating_add(1);",
        );
        flags(
            "liveness",
            "if self.last_reply.elapsed() > self.heartbeat.timeout {",
        );
        flags("liveness", "let age = now - last_pong_ms;");
        passes("liveness", "sink.missed += 1;");
        passes("liveness", "heartbeat_misses: h.heartbeat_misses,");
        passes(
            "liveness",
            "if now > self.last_reply_ms.load(Ordering::Relaxed) {",
        );
        passes(
            "liveness",
            "sup.handle_input(Timestamp::from_millis(reply_ms), Input::Activity);",
        );
    }

    #[test]
    fn todo_rule() {
        for path in [
            "crates/relink-core/src/sync.rs",
            "crates/relink-testkit/src/lib.rs",
        ] {
            assert!(!found_in(path, "todo", "fn f() { todo!() }").is_empty());
            assert!(!found_in(path, "todo", "dbg!(x);").is_empty());
            assert!(!found_in(path, "todo", "unimplemented!(\"later\")").is_empty());
            assert!(found_in(path, "todo", "let todo = 1; // todo!()").is_empty());
            assert!(found_in(path, "todo", "my_dbg!(x);").is_empty());
        }
        assert!(found_in("crates/relink/tests/client/main.rs", "todo", "todo!()").is_empty());
    }

    #[test]
    fn panic_rule() {
        let path = "crates/relink/src/client.rs";
        assert!(!found_in(path, "panic", "let g = lock.lock().unwrap();").is_empty());
        assert!(!found_in(path, "panic", "x.expect(\"present\");").is_empty());
        assert!(!found_in(path, "panic", "panic!(\"no\")").is_empty());
        assert!(found_in(path, "panic", "x.unwrap_or_default();").is_empty());
        assert!(found_in(path, "panic", "x.expect_err(e);").is_empty());
        assert!(found_in(
            path,
            "panic",
            "#[cfg(test)]\nmod t { fn f() { x.unwrap(); } }"
        )
        .is_empty());
        assert!(found_in(
            "crates/relink-testkit/src/server.rs",
            "panic",
            "x.unwrap();"
        )
        .is_empty());
    }

    #[test]
    fn ignore_rule() {
        let test = "#[test]\n#[ignore]\nfn slow() {}";
        for path in [
            "crates/relink/tests/client/main.rs",
            "crates/relink-core/src/backoff.rs",
            "xtask/src/main.rs",
        ] {
            assert_eq!(found_in(path, "ignore", test), ["2: `#[ignore]`"], "{path}");
            assert!(found_in(path, "ignore", "#[test]\nfn fast() {}").is_empty());
        }
        assert!(!found_in(
            "crates/relink/tests/x.rs",
            "ignore",
            "#[ignore = \"slow\"]\n#[test]\nfn t() {}"
        )
        .is_empty());
    }

    #[test]
    fn comments_and_literals_are_read_as_such() {
        let src = "let a = 1; /* tokio::time::sleep(\n still a comment */ let b = \"x\";\n\
                   let c = r#\"a \"quoted\" MOVED\"#; let d = '{'; let e: &'static str = b\"q\";\n";
        let lines = lines(src);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].code.trim(), "let a = 1;");
        assert!(lines[1].code.contains("let b = \"\";"), "{:?}", lines[1]);
        assert_eq!(lines[1].literals[0].text, "x");
        assert_eq!(lines[2].literals[0].text, "a \"quoted\" MOVED");
        assert!(lines[2].code.contains("let d = ' ';"), "{:?}", lines[2]);
        assert!(lines[2].code.contains("&'static str"), "{:?}", lines[2]);
        assert_eq!(lines[2].literals[1].text, "q");
        // A string over several lines keeps the line numbers right.
        let lines = super::lines("let s = \"a\nb\";\nlet t = 1;");
        assert_eq!(lines[2].number, 3);
        assert_eq!(lines[2].code, "let t = 1;");
        assert_eq!(lines[0].literals[0].text, "a\nb");
    }

    #[test]
    fn test_items_are_marked() {
        let src = "fn a() {}\n#[cfg(test)]\nmod tests {\n    fn b() { { } }\n}\nfn c() {}\n\
                   #[cfg(test)]\nuse std::x;\nfn d() {}\n#[test]\nfn e() {\n}\nfn f() {}";
        let marked: Vec<bool> = lines(src).iter().map(|l| l.in_test).collect();
        assert_eq!(
            marked,
            [false, true, true, true, true, false, true, true, false, true, true, true, false]
        );
    }

    #[test]
    fn scopes_match_by_segment() {
        assert!(in_scope("crates/relink/src/client.rs", "crates/relink/src"));
        assert!(in_scope("crates/relink-ffi/src/a/b.rs", "crates/*/src"));
        assert!(!in_scope("crates/relink-ffi/src/a.rs", "crates/relink/src"));
        assert!(!in_scope("crates/relink/tests/a.rs", "crates/*/src"));
        assert!(!in_scope("crates", "crates/*/src"));
    }

    #[test]
    fn the_core_may_depend_on_serde_and_thiserror_only() {
        let tree = "relink-core v0.1.0 (/w/crates/relink-core)\nserde v1.0.229\n\
                    serde_derive v1.0.229 (proc-macro)\nproc-macro2 v1.0.107 (*)\n\
                    thiserror v2.0.21\n";
        assert!(unexpected_core_dependencies(tree).is_empty());
        let tree = format!("{tree}tokio v1.48.0\nsocket2 v0.6.0\ntokio v1.48.0 (*)\n");
        assert_eq!(unexpected_core_dependencies(&tree), ["tokio", "socket2"]);
    }

    #[test]
    fn the_allow_list_only_shrinks() {
        let text = "# why\ncrates/relink/src/client.rs sleep  # going\n\n\
                    crates/relink/src/pubsub.rs error-kind\n";
        let allowed = parse_allow_list(text).unwrap();
        assert_eq!(allowed.len(), 2);
        assert_eq!(allowed[0].line, 2);
        let violations = check_source(
            "crates/relink/src/client.rs",
            "fn f() { tokio::time::sleep(d); }\nlet x = Duration::from_secs(1);",
        );
        let report = judge(violations, &allowed);
        // The sleep is allowed, the literal is not; pubsub.rs's entry is stale.
        assert_eq!(report.violations.len(), 2);
        assert_eq!(report.violations[0].1, Some(2));
        assert_eq!(report.unallowed(), 1);
        assert_eq!(report.stale.len(), 1);
        assert_eq!(report.stale[0].path, "crates/relink/src/pubsub.rs");

        assert!(parse_allow_list("crates/x.rs no-such-rule").is_err());
        assert!(parse_allow_list("crates/x.rs").is_err());
        assert!(parse_allow_list("crates/relink-core/Cargo.toml core-deps").is_ok());
    }

    fn js(rule: &str, source: &str) -> Vec<String> {
        check_js_source("bindings/js/lib/client.js", source)
            .into_iter()
            .filter(|v| v.rule == rule)
            .map(|v| format!("{}: {}", v.line, v.what))
            .collect()
    }

    #[test]
    fn js_rules_flag_decisions_made_in_javascript() {
        assert_eq!(js("js-timer", "setTimeout(retry, 100);").len(), 1);
        assert_eq!(
            js("js-timer", "x;\nsetInterval(() => ping(), 1000)").len(),
            1
        );
        assert_eq!(
            js("js-error-code", "if (err.code === 'ECONNRESET') retry();").len(),
            2
        );
        assert_eq!(
            js("js-error-code", "if (e instanceof ErrorReply) x();").len(),
            1
        );
        assert_eq!(
            js("js-error-code", "const busy = msg.startsWith('LOADING');").len(),
            1
        );
        assert_eq!(
            js("js-error-code", "if (e.name !== 'AbortError') y();").len(),
            2
        );
        assert_eq!(js("js-liveness", "this.#misses += 1;").len(), 1);
    }

    #[test]
    fn js_rules_pass_what_the_driver_does() {
        let driver = "// setTimeout(f, 100) in a comment is fine\n\
                      const cancel = at(deadline, () => drive());\n\
                      timer = setTimeout(arm, Math.min(Math.ceil(left), LONGEST_TIMER));\n\
                      const { kind } = classifyNodeError(err);\n\
                      throw new OptionsError('relink.maxQueued', 'must be whole');\n\
                      const s = `${a}: 'ECONNRESET' in a template is a string`;\n\
                      if (last?.error instanceof Error) x();";
        for (id, _) in JS_RULES {
            assert_eq!(js(id, driver), Vec::<String>::new(), "{id}");
        }
    }

    #[test]
    fn the_checked_in_allow_list_parses() {
        let text = std::fs::read_to_string(project_root().join(ALLOW_LIST)).unwrap_or_default();
        parse_allow_list(&text).unwrap();
    }

    #[test]
    fn rule_ids_are_unique_and_every_violation_says_where_to_go() {
        let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        ids.push(CORE_DEPS);
        let unique: BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len());
        let v = &check_source("crates/relink/src/client.rs", "std::thread::sleep(d);")[0];
        let shown = v.to_string();
        assert!(
            shown.starts_with("crates/relink/src/client.rs:1: "),
            "{shown}"
        );
        assert!(
            shown.contains("[sleep]") && shown.contains("relink_core"),
            "{shown}"
        );
    }
}
