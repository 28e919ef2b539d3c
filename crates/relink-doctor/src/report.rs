//! What the doctor prints: one line per check as it is made
//! (`ok|warn|FAIL  <check>: <finding>`), then the diagnosis and the next
//! step, and the exit code that goes with them.

use std::fmt::Display;
use std::io::Write;
use std::process::ExitCode;

/// A conclusion: what is the matter, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What is the matter.
    pub diagnosis: String,
    /// What to do about it.
    pub next: String,
}

impl Verdict {
    pub fn new(diagnosis: impl Into<String>, next: impl Into<String>) -> Verdict {
        Verdict {
            diagnosis: diagnosis.into(),
            next: next.into(),
        }
    }
}

/// How the run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Usable,
    NotUsable,
    BadInput,
}

/// The checks made so far, printed as they are made.
#[derive(Debug)]
pub struct Report {
    outcome: Outcome,
    /// The first failure's verdict (or a more precise one, see [`Report::refine`]).
    failure: Option<Verdict>,
    /// The first warning's verdict.
    warning: Option<Verdict>,
    warnings: usize,
}

impl Report {
    pub fn new() -> Report {
        Report {
            outcome: Outcome::Usable,
            failure: None,
            warning: None,
            warnings: 0,
        }
    }

    /// A check that passed.
    pub fn ok(&mut self, check: &str, finding: impl Display) {
        line("ok", check, finding);
    }

    /// A check that found something to look at; the server stays usable.
    pub fn warn(&mut self, check: &str, finding: impl Display, next: impl Into<String>) {
        let finding = finding.to_string();
        line("warn", check, &finding);
        self.warnings += 1;
        if self.warning.is_none() {
            self.warning = Some(Verdict::new(format!("{check}: {finding}"), next));
        }
    }

    /// A check that failed: the server is not usable. The first failure's
    /// verdict is the diagnosis.
    pub fn fail(&mut self, check: &str, finding: impl Display, verdict: Verdict) {
        line("FAIL", check, finding);
        if self.outcome == Outcome::Usable {
            self.outcome = Outcome::NotUsable;
        }
        if self.failure.is_none() {
            self.failure = Some(verdict);
        }
    }

    /// Replaces the diagnosis of a failure already reported with a more
    /// precise one (a `-LOADING` PING, then the loading progress).
    pub fn refine(&mut self, check: &str, finding: impl Display, verdict: Verdict) {
        line("FAIL", check, finding);
        if self.outcome == Outcome::Usable {
            self.outcome = Outcome::NotUsable;
        }
        self.failure = Some(verdict);
    }

    /// The URL or the invocation is wrong: nothing was checked.
    pub fn bad_input(&mut self, check: &str, finding: impl Display, verdict: Verdict) {
        line("FAIL", check, finding);
        self.outcome = Outcome::BadInput;
        self.failure = Some(verdict);
    }

    /// Has a check failed?
    pub fn failed(&self) -> bool {
        self.outcome != Outcome::Usable
    }

    /// Prints the diagnosis and the next step; `usable` is both when nothing
    /// failed or warned. Returns the exit code: 0 usable, 1 not, 2 bad input.
    pub fn finish(self, usable: Verdict) -> ExitCode {
        let (verdict, code) = match self.outcome {
            Outcome::Usable => match self.warning {
                Some(warning) => {
                    let more = match self.warnings {
                        1 => String::new(),
                        n => format!(" (and {} more above)", n - 1),
                    };
                    let diagnosis =
                        format!("{}; but {}{more}", usable.diagnosis, warning.diagnosis);
                    (Verdict::new(diagnosis, warning.next), 0)
                }
                None => (usable, 0),
            },
            Outcome::NotUsable => (self.failure.unwrap_or(usable), 1),
            Outcome::BadInput => (self.failure.unwrap_or(usable), 2),
        };
        println!();
        println!("diagnosis: {}", one_line(&verdict.diagnosis));
        println!("next step: {}", one_line(&verdict.next));
        let _ = std::io::stdout().flush();
        ExitCode::from(code)
    }
}

fn line(status: &str, check: &str, finding: impl Display) {
    println!("{status:<4}  {check}: {}", one_line(&finding.to_string()));
    // A check can take seconds; show each line as soon as it is known.
    let _ = std::io::stdout().flush();
}

/// `text` on one line: an error's text may hold line breaks.
fn one_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_stay_on_one_line() {
        assert_eq!(one_line("a\r\n  b\nc  "), "a b c");
    }

    #[test]
    fn the_first_failure_is_the_diagnosis_unless_refined() {
        let mut report = Report::new();
        report.ok("tcp", "fine");
        report.warn("role", "replica", "use the master");
        assert!(!report.failed());
        report.fail("ping", "loading", Verdict::new("first", "wait"));
        report.fail("info", "also", Verdict::new("second", "-"));
        assert_eq!(report.failure.as_ref().unwrap().diagnosis, "first");
        report.refine("loading", "43 %", Verdict::new("loading, 43 %", "wait"));
        assert_eq!(report.failure.as_ref().unwrap().diagnosis, "loading, 43 %");
        assert_eq!(report.outcome, Outcome::NotUsable);
    }
}
