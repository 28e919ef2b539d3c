//! The C side of `cargo xtask test`, and `cargo xtask codegen`: the header
//! of `crates/relink-ffi`, the library installed into a temporary prefix,
//! the C tests built with pkg-config's flags and run under valgrind, the C
//! example riding out a restart. Knows nothing of what the tests check.
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

use crate::{
    cargo, header, install, is_root, project_root, resolve_program, step, Failure, Result,
};

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

/// Header check; the release library installed into a temporary prefix
/// (`cargo xtask install`), checked for its SONAME and the absence of debug
/// info; the C tests built as a user builds them, `cc $(pkg-config --cflags
/// --libs relink)`, and run under valgrind; the example linked statically
/// (`pkg-config --static`) through a restart. Returns the installed library,
/// for the Python package.
pub fn test(redis_server: &Path) -> Result<PathBuf> {
    let started = Instant::now();
    let root = project_root();
    codegen(true)?;
    let valgrind = ensure_tool("valgrind", "valgrind", "the C tests run under it")?;
    let pkg_config = ensure_tool(
        "pkg-config",
        "pkgconf",
        "the C tests are built with its flags",
    )?;
    let readelf = ensure_tool("readelf", "binutils", "it reads the library's SONAME")?;
    let prefix = crate::target_dir().join("c-prefix");
    let _ = std::fs::remove_dir_all(&prefix);
    let installed = install::install(&prefix)?;
    check_library(&readelf, &installed.shared_library)?;
    let flags = |args: &[&str]| -> Result<Vec<String>> {
        let out = Command::new(&pkg_config)
            .args(args)
            .arg("relink")
            .env("PKG_CONFIG_PATH", &installed.pkgconfig_dir)
            .output()
            .map_err(|e| Failure::new(format!("cannot run pkg-config: {e}")))?;
        if !out.status.success() {
            return Err(Failure::new(format!(
                "pkg-config {} relink failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect())
    };
    let cflags = flags(&["--cflags"])?;
    let libs = flags(&["--libs"])?;
    let libdir = flags(&["--variable=libdir"])?.join(" ");
    // A prefix outside the loader's path: the rpath finds librelink.so.0.1
    // there, as a user's build for a private prefix would.
    let rpath = format!("-Wl,-rpath,{libdir}");
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
        step(
            &format!("cc {} $(pkg-config --cflags --libs relink)", rel(source)),
            Command::new("cc")
                .current_dir(&root)
                .args(CFLAGS)
                .args(&cflags)
                .arg(source)
                .arg("-o")
                .arg(&binary)
                .args(&libs)
                .arg(&rpath),
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

    // The example links the static library, so both artifacts are exercised:
    // `pkg-config --static --libs` with librelink.a in place of -lrelink.
    let static_libs: Vec<String> = flags(&["--static", "--libs"])?
        .into_iter()
        .map(|flag| {
            if flag == "-lrelink" {
                installed.lib_dir.join("librelink.a").display().to_string()
            } else {
                flag
            }
        })
        .collect();
    let example = out_dir.join("ride_out_restart");
    step(
        &format!("cc {EXAMPLE} $(pkg-config --cflags --static --libs relink), librelink.a"),
        Command::new("cc")
            .current_dir(&root)
            .args(CFLAGS)
            .args(&cflags)
            .arg(EXAMPLE)
            .arg("-o")
            .arg(&example)
            .args(&static_libs),
    )?;
    example_rides_out_a_restart(redis_server, &example)?;
    println!("C ABI steps took {:.1} s", started.elapsed().as_secs_f64());
    Ok(installed.shared_library)
}

/// The installed library has its SONAME and no debug info.
fn check_library(readelf: &Path, library: &Path) -> Result {
    header(&format!(
        "readelf {}: SONAME, no debug info",
        library.display()
    ));
    let read = |flag: &str| -> Result<String> {
        let out = Command::new(readelf)
            .args(["-W", flag])
            .arg(library)
            .output()
            .map_err(|e| Failure::new(format!("cannot run readelf: {e}")))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let soname = format!(
        "[librelink.so.{}]",
        install::abi_version(env!("CARGO_PKG_VERSION"))
    );
    let dynamic = read("-d")?;
    if !dynamic
        .lines()
        .any(|l| l.contains("(SONAME)") && l.contains(&soname))
    {
        return Err(Failure::new(format!(
            "{} has no SONAME {soname} (crates/relink-ffi/build.rs sets it)",
            library.display()
        )));
    }
    if read("-S")?.contains(".debug_info") {
        return Err(Failure::new(format!(
            "{} carries debug info: the release profile must strip it",
            library.display()
        )));
    }
    let size = std::fs::metadata(library).map(|m| m.len()).unwrap_or(0);
    println!(
        "SONAME {soname}, no .debug_info, {:.1} MB",
        size as f64 / 1e6
    );
    Ok(())
}

/// Runs the example for 3 s; once its first INCR has succeeded, the server
/// is killed (SIGKILL) and restarted on the same port. Passes when the
/// example exits 0 (its last command succeeded) and a command reached the
/// restarted server (whose counter starts again at 1).
fn example_rides_out_a_restart(redis_server: &Path, example: &Path) -> Result {
    header("ride_out_restart: a server restart under the C example");
    let port = free_port()?;
    let mut server = Server::start(redis_server, port)?;
    let mut run = Command::new(example)
        .args([format!("redis://127.0.0.1:{port}"), "3".into()])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Failure::new(format!("start {}: {e}", example.display())))?;
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    if let Some(stdout) = run.stdout.take() {
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(|l| l.ok())
            {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.iter().any(|l: &String| l.starts_with("visits: ")) {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = run.kill();
                let _ = run.wait();
                return Err(Failure::new(format!(
                    "ride_out_restart: no successful INCR within 10 s; it printed {seen:?}"
                )));
            }
        }
    }
    server.stop();
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
    seen.extend(lines.try_iter());
    let after_restart = seen
        .iter()
        .skip_while(|l| !l.starts_with("visits: "))
        .skip(1)
        .any(|l| l == "visits: 1");
    match status {
        Some(s) if s.success() && after_restart => {
            println!("ride_out_restart: commands reached the restarted server; the last succeeded");
            Ok(())
        }
        Some(s) if s.success() => Err(Failure::new(format!(
            "ride_out_restart: no INCR reached the restarted server; it printed {seen:?}"
        ))),
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

/// A tool on PATH, installed with apt-get (Debian package `package`) when
/// missing and we are root; else a message saying how to install it.
pub fn ensure_tool(program: &str, package: &str, why: &str) -> Result<PathBuf> {
    if let Some(found) = resolve_program(program.as_ref()) {
        return Ok(found);
    }
    ensure_apt_package(package, &format!("{program} not found: {why}"))?;
    resolve_program(program.as_ref()).ok_or_else(|| {
        Failure::new(format!(
            "apt-get installed {package}, but {program} is not on PATH"
        ))
    })
}

/// `apt-get install` of one Debian package, as root; `why` tells a user who
/// is not root what is missing.
pub fn ensure_apt_package(package: &str, why: &str) -> Result {
    if !is_root()? {
        return Err(Failure::new(format!(
            "{why}: `sudo apt-get install {package}`"
        )));
    }
    step("apt-get update", Command::new("apt-get").arg("update"))?;
    step(
        &format!("apt-get install -y {package}"),
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// The cbindgen CLI of the pinned version: on PATH or in `$CARGO_HOME/bin`,
/// else installed with `cargo install --locked` (its own lockfile resolves
/// against the registry mirror). `--debug`: on the project's 2-core machine
/// it builds in 41 s against 1 min 45 s optimised, and writes the header in
/// 0.5 s against 0.3 s, the same header (2026-11-28).
fn ensure_cbindgen() -> Result<PathBuf> {
    let version = pinned_cbindgen()?;
    if let Some(cli) = cbindgen_cli(&version) {
        return Ok(cli);
    }
    step(
        &format!("cargo install cbindgen --version ={version} --locked --debug"),
        cargo().args([
            "install",
            "cbindgen",
            "--version",
            &format!("={version}"),
            "--locked",
            "--debug",
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
