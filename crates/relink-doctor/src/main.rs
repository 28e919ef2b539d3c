//! `relink-doctor URL`: walks the checks a Redis troubleshooting guide walks
//! for one URL (the URL itself, name resolution, TCP, TLS, the handshake,
//! PING and latency, loading, role and replication, clients against
//! `maxclients`, Sentinel and Cluster) and prints one line per check, then
//! a diagnosis and the next step. Exit code 0 only when the server is
//! usable; 1 when it is not (a server problem or a misconfiguration); 2 for
//! a bad URL or invocation.
//!
//! The doctor connects the way relink's client does and reads failures
//! with relink's own classifier and diagnose module (`relink::classify`,
//! `relink::diagnose`): what it says about a failure is what the client's
//! errors, events and health say. It knows no error codes of its own.

mod advice;
mod args;
mod checks;
mod info;
mod report;

use std::process::ExitCode;

fn main() -> ExitCode {
    let options = match args::parse(std::env::args().skip(1)) {
        Ok(args::Command::Check(options)) => options,
        Ok(args::Command::Help) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(args::Command::Version) => {
            println!("relink-doctor {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprint!("relink-doctor: {why}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("relink-doctor: cannot start a tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(checks::run(&options))
}
