//! The command line, parsed by hand: one URL and four options do not need
//! a parser crate.

use std::time::Duration;

/// What `--help` prints (and a bad invocation, after the complaint).
pub const USAGE: &str = "\
usage: relink-doctor [OPTIONS] URL

Walks the checks a Redis troubleshooting guide walks (the URL, name
resolution, TCP, TLS, the handshake, PING and latency, loading, role and
replication, clients, Sentinel and Cluster) and says what is wrong and what
to do next. Exit code 0 when the server is usable, 1 when it is not, 2 for a
bad URL or invocation.

URL: redis://[user[:password]@]host[:port][/db], rediss://... (TLS),
     redis+unix:///path?db=N, or the same with valkey:// and valkeys://

options:
  --sentinel SERVICE   the URL names a Sentinel: check the master it names for
                       SERVICE (the URL's user, password and database are the
                       master's, as in relink's Config)
  --cluster            the URL names a Cluster node: check the cluster's state
                       (checked anyway when the node says cluster_enabled:1)
  --timeout DURATION   bound on each network step, e.g. 500ms, 2s (default 5s)
  --samples N          PINGs for the round-trip latency, 1 to 1000 (default 5)
  -h, --help           this text
  -V, --version        the version
";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Check a URL.
    Check(Options),
    /// Print the usage.
    Help,
    /// Print the version.
    Version,
}

/// The options of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The URL, as given.
    pub url: String,
    /// The Sentinel service name, when the URL names a sentinel.
    pub sentinel: Option<String>,
    /// The URL names a cluster node.
    pub cluster: bool,
    /// Bound on each network step.
    pub timeout: Duration,
    /// PINGs for the latency.
    pub samples: u32,
}

/// The default `--timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default `--samples`.
pub const DEFAULT_SAMPLES: u32 = 5;
const MAX_SAMPLES: u32 = 1000;

/// Parses the arguments (without the program name); the error says what is wrong.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut url = None;
    let mut sentinel = None;
    let mut cluster = false;
    let mut timeout = DEFAULT_TIMEOUT;
    let mut samples = DEFAULT_SAMPLES;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // `--name=value` is the same as `--name value`.
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs {what}"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--sentinel" => {
                let service =
                    value("a service name (the name the sentinels monitor the master under)")?;
                if service.trim().is_empty() {
                    return Err("--sentinel needs a service name, not an empty one".into());
                }
                sentinel = Some(service);
            }
            "--cluster" => cluster = true,
            "--timeout" => {
                let text = value("a duration, e.g. 2s")?;
                timeout = relink::core::duration::parse(&text)
                    .map_err(|e| format!("--timeout {text}: {e} (e.g. 500ms, 2s)"))?;
                if timeout.is_zero() {
                    return Err("--timeout must be more than 0".into());
                }
            }
            "--samples" => {
                let text = value("a number of PINGs")?;
                samples = text
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_SAMPLES).contains(n))
                    .ok_or_else(|| format!("--samples {text}: expected 1 to {MAX_SAMPLES}"))?;
            }
            flag if flag.starts_with('-') && flag.len() > 1 => {
                return Err(format!("unknown option `{flag}`"));
            }
            _ if url.is_some() => {
                return Err(format!("one URL at a time (got a second: `{arg}`)"));
            }
            _ => url = Some(arg),
        }
    }
    let url = url.ok_or("no URL given")?;
    Ok(Command::Check(Options {
        url,
        sentinel,
        cluster,
        timeout,
        samples,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &str) -> Result<Command, String> {
        parse(words.split_whitespace().map(String::from))
    }

    #[test]
    fn a_url_and_options() {
        assert_eq!(
            parse_words("--sentinel mymaster --timeout=500ms --samples 3 redis://h:26379"),
            Ok(Command::Check(Options {
                url: "redis://h:26379".into(),
                sentinel: Some("mymaster".into()),
                cluster: false,
                timeout: Duration::from_millis(500),
                samples: 3,
            }))
        );
        let Ok(Command::Check(options)) = parse_words("redis://h --cluster") else {
            panic!("parses");
        };
        assert!(options.cluster);
        assert_eq!(options.timeout, DEFAULT_TIMEOUT);
        assert_eq!(parse_words("-h"), Ok(Command::Help));
        assert_eq!(parse_words("redis://h --version"), Ok(Command::Version));
    }

    #[test]
    fn bad_invocations_say_what_is_wrong() {
        let table = [
            ("", "no URL"),
            ("redis://a redis://b", "one URL at a time"),
            ("--frobnicate redis://a", "unknown option `--frobnicate`"),
            ("redis://a --sentinel", "--sentinel needs a service name"),
            ("redis://a --timeout soon", "--timeout soon"),
            ("redis://a --timeout 0s", "more than 0"),
            ("redis://a --samples 0", "expected 1 to 1000"),
        ];
        for (words, expected) in table {
            let err = parse_words(words).expect_err(words);
            assert!(err.contains(expected), "{words}: {err}");
        }
    }
}
