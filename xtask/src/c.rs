//! The C side of `cargo xtask test`, and `cargo xtask codegen`: the header
//! of `crates/relink-ffi`, the C tests under valgrind, the C example riding
//! out a restart, and the Python (ctypes) test. Knows nothing of what the
//! tests check.
//!
//! The header comes from the cbindgen CLI of the version pinned in the root
//! `Cargo.toml` (`cbindgen = "=X.Y.Z"`), installed with `cargo install` when
//! missing: a one-time build of about three minutes on 2 cores, instead of a
//! build-dependency that every `cargo build` of the workspace would compile
//! and run.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::{cargo, header, is_root, project_root, resolve_program, step, Failure, Result};

const HEADER: &str = "bindings/c/include/relink.h";
const CBINDGEN_CONFIG: &str = "bindings/c/cbindgen.toml";
const C_TESTS: &str = "bindings/c/tests";
const EXAMPLE: &str = "bindings/c/examples/ride_out_restart.c";
/// The golden vectors the C tests replay (`RELINK_VECTORS_DIR`).
const VECTORS_DIR: &str = "tests/vectors";

const CFLAGS: &[&str] = &[
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Wpedantic",
    "-Werror",
    "-g",
];

/// Definite and indirect leaks and every invalid access fail a run. "Possibly
/// lost" blocks do not: tokio's worker threads may leave thread-local storage
/// behind that valgrind can only call possible. A test may carry its own
/// suppressions (`<test>.supp`): only `test_tls` does, for ring's assembly.
const VALGRIND: &[&str] = &[
    "-q",
    "--error-exitcode=1",
    "--leak-check=full",
    "--errors-for-leak-kinds=definite,indirect",
    "--show-leak-kinds=definite,indirect",
];

/// `cargo xtask codegen`: regenerates the header; with `check`, fails instead
/// when the checked-in header differs from what cbindgen makes.
pub fn codegen(check: bool) -> Result {
    let root = project_root();
    let cli = ensure_cbindgen()?;
    let fresh = crate::target_dir().join("relink.h");
    step(
        &format!("cbindgen --config {CBINDGEN_CONFIG} --crate relink-ffi"),
        Command::new(&cli).current_dir(&root).args([
            "--quiet",
            "--config",
            CBINDGEN_CONFIG,
            "--crate",
            "relink-ffi",
            "--output",
            &fresh.to_string_lossy(),
            "crates/relink-ffi",
        ]),
    )?;
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| Failure::new(format!("read {}: {e}", p.display())))
    };
    let generated = read(&fresh)?;
    let checked_in = std::fs::read_to_string(root.join(HEADER)).unwrap_or_default();
    if generated == checked_in {
        println!("{HEADER} is up to date");
        return Ok(());
    }
    if check {
        return Err(Failure::new(format!(
            "{HEADER} is stale: crates/relink-ffi changed its C API. Run `cargo xtask codegen` \
             and commit the header"
        )));
    }
    std::fs::write(root.join(HEADER), generated)
        .map_err(|e| Failure::new(format!("write {HEADER}: {e}")))?;
    println!("{HEADER} regenerated");
    Ok(())
}

/// Header check, library build, C tests under valgrind, the example through
/// a restart, the Python test.
pub fn test(redis_server: &Path) -> Result {
    let started = Instant::now();
    let root = project_root();
    codegen(true)?;
    // With TLS, as a library for production is built: the Python test
    // connects to a TLS server.
    step(
        "cargo build -p relink-ffi --features tls-rustls",
        cargo().args(["build", "-p", "relink-ffi", "--features", "tls-rustls"]),
    )?;
    let valgrind = ensure_valgrind()?;
    // Where cargo built the library, and where the C programs go.
    let lib_dir = crate::target_dir().join("debug");
    let out_dir = crate::target_dir().join("c");
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| Failure::new(format!("create {}: {e}", out_dir.display())))?;

    let mut tests: Vec<PathBuf> = std::fs::read_dir(root.join(C_TESTS))
        .map_err(|e| Failure::new(format!("read {C_TESTS}: {e}")))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    tests.sort();
    for source in &tests {
        let name = source.file_stem().unwrap_or_default().to_string_lossy();
        let binary = out_dir.join(&*name);
        // Against the shared library, found through the rpath.
        step(
            &format!("cc {} (against librelink.so)", rel(source)),
            Command::new("cc")
                .current_dir(&root)
                .args(CFLAGS)
                .arg("-Ibindings/c/include")
                .arg(source)
                .arg("-o")
                .arg(&binary)
                .arg(format!("-L{}", lib_dir.display()))
                .arg("-lrelink")
                .arg(format!("-Wl,-rpath,{}", lib_dir.display())),
        )?;
        // A test's own suppressions (`test_tls.supp`: ring's assembly).
        let suppressions = source.with_extension("supp");
        let mut valgrind_cmd = Command::new(&valgrind);
        if suppressions.exists() {
            valgrind_cmd.arg(format!("--suppressions={}", suppressions.display()));
        }
        step(
            &format!("valgrind {}", rel(&binary)),
            valgrind_cmd
                .current_dir(&root)
                .args(VALGRIND)
                .arg(&binary)
                .env("REDIS_SERVER", redis_server)
                .env("RELINK_VECTORS_DIR", root.join(VECTORS_DIR)),
        )?;
    }

    // The example links the static library, so both artifacts are exercised.
    let example = out_dir.join("ride_out_restart");
    step(
        &format!("cc {EXAMPLE} (against librelink.a)"),
        Command::new("cc")
            .current_dir(&root)
            .args(CFLAGS)
            .arg("-Ibindings/c/include")
            .arg(EXAMPLE)
            .arg("-o")
            .arg(&example)
            .arg(lib_dir.join("librelink.a"))
            .args(["-lpthread", "-ldl", "-lm"]),
    )?;
    example_rides_out_a_restart(redis_server, &example)?;

    step(
        "python3 -m unittest discover bindings/python",
        Command::new(python()?)
            .current_dir(&root)
            .args(["-m", "unittest", "discover", "-v", "-s", "bindings/python"])
            .env("REDIS_SERVER", redis_server)
            .env("RELINK_LIB", lib_dir.join("librelink.so"))
            .env("PYTHONDONTWRITEBYTECODE", "1"),
    )?;
    println!("C ABI steps took {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs the example for 3 s against a server that is killed (SIGKILL) after
/// 1 s and restarted on the same port 0.5 s later; the example exits 0 only
/// if its last command succeeded.
fn example_rides_out_a_restart(redis_server: &Path, example: &Path) -> Result {
    header("ride_out_restart: a server restart under the C example");
    let port = free_port()?;
    let mut server = Server::start(redis_server, port)?;
    let mut run = Command::new(example)
        .args([format!("redis://127.0.0.1:{port}"), "3".into()])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| Failure::new(format!("start {}: {e}", example.display())))?;
    sleep(Duration::from_secs(1));
    server.stop();
    sleep(Duration::from_millis(500));
    let status = match Server::start(redis_server, port) {
        Ok(restarted) => {
            server = restarted;
            wait_bounded(&mut run, Duration::from_secs(30))
        }
        Err(failure) => {
            let _ = run.kill();
            let _ = run.wait();
            return Err(failure);
        }
    };
    drop(server);
    match status {
        Some(s) if s.success() => {
            println!("ride_out_restart: last command after the restart succeeded");
            Ok(())
        }
        Some(s) => Err(Failure::new(format!("ride_out_restart failed ({s})"))),
        None => Err(Failure::new("ride_out_restart did not end within 30 s")),
    }
}

/// A redis-server of ours, killed by its PID when dropped (failure included).
struct Server(Child);

impl Server {
    fn start(program: &Path, port: u16) -> Result<Server> {
        let child = Command::new(program)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| Failure::new(format!("start {}: {e}", program.display())))?;
        let server = Server(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            sleep(Duration::from_millis(25));
        }
        Err(Failure::new(format!(
            "redis-server did not accept connections on port {port} within 5 s"
        )))
    }

    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn free_port() -> Result<u16> {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Failure::new(format!("no free loopback port: {e}")))
}

fn rel(path: &Path) -> String {
    let root = project_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn python() -> Result<PathBuf> {
    resolve_program("python3".as_ref()).ok_or_else(|| {
        Failure::new("python3 not found: the Python binding's test needs it (3.8 or later)")
    })
}

/// valgrind on PATH, installed with apt-get when missing and we are root.
fn ensure_valgrind() -> Result<PathBuf> {
    if let Some(found) = resolve_program("valgrind".as_ref()) {
        return Ok(found);
    }
    if !is_root()? {
        return Err(Failure::new(
            "valgrind not found (the C tests run under it): `sudo apt-get install valgrind`",
        ));
    }
    step("apt-get update", Command::new("apt-get").arg("update"))?;
    step(
        "apt-get install -y valgrind",
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "valgrind"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    resolve_program("valgrind".as_ref())
        .ok_or_else(|| Failure::new("apt-get installed valgrind, but it is not on PATH"))
}

/// The cbindgen CLI of the pinned version: on PATH or in `$CARGO_HOME/bin`,
/// else installed with `cargo install --locked` (its own lockfile resolves
/// against the registry mirror).
fn ensure_cbindgen() -> Result<PathBuf> {
    let version = pinned_cbindgen()?;
    if let Some(cli) = cbindgen_cli(&version) {
        return Ok(cli);
    }
    step(
        &format!("cargo install cbindgen --version ={version} --locked"),
        cargo().args([
            "install",
            "cbindgen",
            "--version",
            &format!("={version}"),
            "--locked",
        ]),
    )?;
    cbindgen_cli(&version).ok_or_else(|| {
        Failure::new(format!(
            "installed cbindgen {version}, but no `cbindgen` of that version is on PATH or in \
             $CARGO_HOME/bin"
        ))
    })
}

fn cbindgen_cli(version: &str) -> Option<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let candidates = [
        resolve_program("cbindgen".as_ref()),
        cargo_home.map(|h| h.join("bin").join("cbindgen")),
    ];
    candidates.into_iter().flatten().find(|cli| {
        Command::new(cli)
            .arg("--version")
            .output()
            .is_ok_and(|out| {
                String::from_utf8_lossy(&out.stdout).trim() == format!("cbindgen {version}")
            })
    })
}

/// The version in the root Cargo.toml's `cbindgen = "=X.Y.Z"`.
fn pinned_cbindgen() -> Result<String> {
    let manifest = project_root().join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .map_err(|e| Failure::new(format!("read {}: {e}", manifest.display())))?;
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("cbindgen = \"="))
        .find_map(|rest| rest.split('"').next())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            Failure::new("the root Cargo.toml must pin the CLI exactly: cbindgen = \"=X.Y.Z\"")
        })
}
