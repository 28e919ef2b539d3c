//! relink's workshop: `cargo xtask <command>` (the alias is in
//! `.cargo/config.toml`). Commands run from the workspace root, print a header
//! per step and stop at the first failing step with its exit code.
//!
//! **Invariant:** std only ("avoid adding dependencies"), and nothing depends
//! on xtask; it reaches the project only through the commands it runs.

mod c;
mod install;
mod js;
mod python;
mod tidy;
mod wasm;

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use wasm::check_wasm_imports;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test      fmt check, tidy, clippy, rustdoc -D warnings, cargo package of the publishable
            crates, wasm32 build of relink-core, cargo test --workspace
            (against a real redis-server, installed when missing and run as root),
            relink's opentelemetry and tls-rustls features (clippy, docs, their tests:
            TLS redis-servers with certificates made at test time),
            the JS tests and the wasm import check, the C ABI steps, the chaos runs
  tidy      fail when a driver makes a decision that belongs in relink-core (a literal
            delay or sleep, an error-code match outside the classifier, a liveness
            verdict) or the core grows a dependency; allow-list: xtask/tidy-allow.txt
  c         the C ABI and Python steps of `test` alone: header check, `install` into a
            temporary prefix (SONAME, no debug info; built with TLS), the C tests built with pkg-config's
            flags and run under valgrind, the C example (librelink.a) through a restart;
            the relink-redis wheel, a fresh venv, pip install, its tests run from outside
            the source tree
  install   --prefix DIR: the release librelink.so (SONAME librelink.so.0.1), librelink.a,
            relink.h and relink.pc into DIR/lib, DIR/include, DIR/lib/pkgconfig
  js        the wasm/JS steps of `test` alone: the relink-redis npm package built (wasm-release
            profile, wasm-bindgen, wasm-opt -Oz), npm pack, the tarball and node-redis installed
            into a fresh project, node --test and tsc --noEmit there, the import check;
            --build-only: just the package's files in bindings/js (`npm run build`)
  doctor    [--sentinel SERVICE] [--cluster] [--timeout 5s] URL: relink-doctor's checks of one
            URL (DNS, TCP, TLS, handshake, PING, loading, role, clients, Sentinel, Cluster)
            with a diagnosis and the next step; exit code 0 when the server is usable
  demo      the outage tour: a workload through relink::Client while a spawned
            redis-server is killed, paused, blackholed and restarted under it
  bench     [--only SECTION] relink vs raw redis-rs throughput and latency (over TCP and
            TLS), failure detection and recovery times; writes target/relink-bench.md
  chaos     [--seed N] [--duration 60s] [--faults N]: a seeded storm of real faults
            under a workload through relink, invariants checked on the server;
            --cluster [--seed N] [--duration 30s]: kills, reshards and pauses of a
            spawned Redis Cluster under numbered Pub/Sub (shard and classic channels)
            --sentinel [--seed N] [--duration 60s]: planned and killed failovers of a
            spawned Sentinel topology under INCR writers, durable and plain: the durable
            invariant checked, the plain writer's loss reported
  package   the packaging check of `test` alone: cargo package of every publishable crate
            (no `publish = false`), each built from its packaged sources
  vectors   regenerate the golden vectors: RELINK_UPDATE_VECTORS=1 cargo test -p relink-core --test vectors
  codegen   regenerate bindings/c/include/relink.h with the pinned cbindgen (test checks it)
  help      this text

Every command honours CARGO_TARGET_DIR.
";

/// `.wasm` files that must import nothing from `env`; `test` builds them
/// before the check.
fn wasm_modules() -> Vec<PathBuf> {
    vec![js::wasm_module()]
}

const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// A failed step: what to tell the user, and the exit code to leave with.
#[derive(Debug)]
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }
}

type Result<T = ()> = std::result::Result<T, Failure>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("tidy") => tidy::run(),
        Some("c") => prepare().and_then(|redis_server| {
            let library = c::test(&redis_server)?;
            python::test(&redis_server, &library)
        }),
        Some("install") => install::run(&args[1..]),
        Some("js") if args.get(1).map(String::as_str) == Some("--build-only") => {
            ensure_wasm_target().and_then(|()| js::build())
        }
        Some("js") => prepare().and_then(|redis_server| {
            js::test(&redis_server)?;
            check_wasm_modules()
        }),
        Some("vectors") => vectors(),
        Some("package") => package(),
        Some("codegen") => c::codegen(false),
        Some("doctor") => doctor(&args[1..]),
        Some("demo") => example("outage-tour", &args[1..]),
        // With TLS: the bench's TLS section compares over TLS.
        Some("bench") => example_with("bench", &["tls-rustls"], &args[1..]),
        Some("chaos") => match args.get(1).map(String::as_str) {
            Some("--cluster") => example("cluster-chaos", &args[2..]),
            Some("--sentinel") => example("sentinel-chaos", &args[2..]),
            _ => example("chaos", &args[1..]),
        },
        Some("help" | "-h" | "--help") | None => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprint!("xtask: unknown command `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("xtask: {}", failure.message);
            ExitCode::from(failure.code.max(1))
        }
    }
}

fn test() -> Result {
    let redis_server = prepare()?;
    step(
        "cargo fmt --all --check",
        cargo().args(["fmt", "--all", "--check"]),
    )?;
    tidy::run()?;
    step(
        "cargo clippy --workspace --all-targets -- -D warnings",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        "cargo clippy -p relink --all-targets --features opentelemetry,tls-rustls -- -D warnings",
        cargo().args([
            "clippy",
            "-p",
            "relink",
            "--all-targets",
            "--features",
            "opentelemetry,tls-rustls",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // rustdoc -D warnings. relink-ffi's library is also called `relink`, so
    // its docs go to a directory of their own.
    step(
        "cargo doc --no-deps (RUSTDOCFLAGS=-D warnings)",
        cargo()
            .args([
                "doc",
                "--no-deps",
                "-p",
                "relink-core",
                "-p",
                "relink",
                "-p",
                "relink-wasm",
                "-p",
                "relink-testkit",
                "-p",
                "relink-doctor",
                "--features",
                "relink/opentelemetry,relink/tls-rustls",
            ])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    let ffi_docs = target_dir().join("doc-ffi");
    step(
        "cargo doc --no-deps -p relink-ffi (RUSTDOCFLAGS=-D warnings)",
        cargo()
            .args(["doc", "--no-deps", "-p", "relink-ffi", "--target-dir"])
            .arg(&ffi_docs)
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    package()?;
    step(
        &format!("cargo build -p relink-core --no-default-features --target {WASM_TARGET}"),
        cargo().args([
            "build",
            "-p",
            "relink-core",
            "--no-default-features",
            "--target",
            WASM_TARGET,
        ]),
    )?;
    step(
        &format!(
            "cargo test --workspace (REDIS_SERVER={})",
            redis_server.display()
        ),
        cargo()
            .args(["test", "--workspace"])
            .env("REDIS_SERVER", &redis_server),
    )?;
    // relink's features, built once together (one more build of relink):
    // the opentelemetry feature's own tests and doc examples (the rest of
    // relink's tests ran above, and record nothing new with it), and the
    // client tests' `tls` module against TLS redis-servers whose CA and
    // certificates the testkit makes at test time.
    const FEATURES: &str = "opentelemetry,tls-rustls";
    step(
        &format!("cargo test -p relink --features {FEATURES} --lib --test metrics"),
        cargo()
            .args(["test", "-p", "relink", "--features", FEATURES])
            .args(["--lib", "--test", "metrics"])
            .env("REDIS_SERVER", &redis_server),
    )?;
    step(
        &format!("cargo test -p relink --features {FEATURES} --test client tls::"),
        cargo()
            .args(["test", "-p", "relink", "--features", FEATURES])
            .args(["--test", "client", "--", "tls::"])
            .env("REDIS_SERVER", &redis_server),
    )?;
    step(
        &format!("cargo test -p relink --features {FEATURES} --doc"),
        cargo().args(["test", "-p", "relink", "--features", FEATURES, "--doc"]),
    )?;
    js::test(&redis_server)?;
    check_wasm_modules()?;
    let library = c::test(&redis_server)?;
    python::test(&redis_server, &library)?;
    example(
        "chaos",
        &["--seed", "1", "--duration", "30s"].map(String::from),
    )?;
    example(
        "cluster-chaos",
        &["--seed", "1", "--duration", "20s"].map(String::from),
    )?;
    // Two faults at least (one planned failover, one killed master),
    // however short the duration: 29-42 s over seeds 1-6.
    example(
        "sentinel-chaos",
        &["--seed", "1", "--duration", "20s"].map(String::from),
    )?;
    println!("xtask test: all steps passed");
    Ok(())
}

/// `cargo package` of every publishable crate (a workspace member whose
/// manifest does not say `publish = false`): in dependency order, each
/// packaged crate built from its packaged sources, the unpublished siblings
/// resolved from the crates just packaged. What `cargo publish` would upload
/// builds on its own: no file outside a crate's directory, no path-only
/// dependency, every manifest field crates.io needs.
fn package() -> Result {
    let crates = publishable()?;
    forget_earlier_packages(&crates)?;
    let verify_dir = target_dir().join("package-verify");
    forget_earlier_builds(&verify_dir, &crates)?;
    let mut cmd = cargo();
    cmd.arg("package").arg("--target-dir").arg(&verify_dir);
    for name in &crates {
        cmd.args(["-p", name]);
    }
    // A work tree with uncommitted edits is the usual state while developing;
    // what is checked is the files as they are.
    cmd.arg("--allow-dirty");
    step(
        &format!("cargo package -p {}", crates.join(" -p ")),
        &mut cmd,
    )
}

/// Removes what an earlier `cargo package` left unpacked. The verify step
/// resolves each crate's siblings through a local registry of the crates
/// just packaged, and unpacks them under `$CARGO_HOME/registry/src/<that
/// registry>/NAME-VERSION`; cargo reuses such a directory as it is, so a
/// sibling changed since (same version) would be verified from stale
/// sources. crates.io's own directories are left alone.
fn forget_earlier_packages(crates: &[String]) -> Result {
    let Some(cargo_home) = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
    else {
        return Ok(());
    };
    // Every workspace member has the workspace's version, xtask's own.
    let version = env!("CARGO_PKG_VERSION");
    for kind in ["src", "cache"] {
        let Ok(registries) = std::fs::read_dir(cargo_home.join("registry").join(kind)) else {
            continue;
        };
        for registry in registries.filter_map(|e| e.ok().map(|e| e.path())) {
            let name = registry.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with("index.crates.io") {
                continue;
            }
            for krate in crates {
                let unpacked = registry.join(format!("{krate}-{version}"));
                let archive = registry.join(format!("{krate}-{version}.crate"));
                for path in [unpacked, archive] {
                    let removed = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else if path.exists() {
                        std::fs::remove_file(&path)
                    } else {
                        continue;
                    };
                    removed.map_err(|e| {
                        Failure::new(format!("remove stale {}: {e}", path.display()))
                    })?;
                }
            }
        }
    }
    Ok(())
}

/// Removes our crates' build artifacts from the packaging check's own
/// target directory (dependencies stay cached). The packaged siblings come
/// from a registry whose files all carry one fixed timestamp, so cargo
/// never sees them change and would reuse the earlier build of a sibling;
/// in this directory everything named after our crates is such a build.
fn forget_earlier_builds(verify_dir: &Path, crates: &[String]) -> Result {
    let prefixes: Vec<String> = crates
        .iter()
        .flat_map(|c| [format!("{c}-"), format!("lib{}-", c.replace('-', "_"))])
        .chain(crates.iter().map(|c| format!("{}-", c.replace('-', "_"))))
        .collect();
    let Ok(profiles) = std::fs::read_dir(verify_dir) else {
        return Ok(());
    };
    for profile in profiles.filter_map(|e| e.ok().map(|e| e.path())) {
        for kind in [".fingerprint", "deps", "build", "incremental"] {
            let Ok(entries) = std::fs::read_dir(profile.join(kind)) else {
                continue;
            };
            for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                if !prefixes.iter().any(|p| name.starts_with(p.as_str())) {
                    continue;
                }
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed
                    .map_err(|e| Failure::new(format!("remove stale {}: {e}", path.display())))?;
            }
        }
    }
    Ok(())
}

/// The names of the workspace members that may be published.
fn publishable() -> Result<Vec<String>> {
    let root = project_root();
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map_err(|e| Failure::new(format!("read {}: {e}", path.display())))
    };
    let workspace = read(&root.join("Cargo.toml"))?;
    let members = workspace
        .lines()
        .find_map(|l| l.trim().strip_prefix("members = ["))
        .ok_or_else(|| {
            Failure::new("the root Cargo.toml lists no `members = [...]` on one line")
        })?;
    let mut crates = Vec::new();
    for member in members.split(',') {
        let member = member.trim().trim_end_matches(']').trim().trim_matches('"');
        if member.is_empty() {
            continue;
        }
        let manifest = read(&root.join(member).join("Cargo.toml"))?;
        let field = |key: &str| {
            manifest.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
            })
        };
        if field("publish").as_deref() == Some("false") {
            continue;
        }
        crates.push(
            field("name")
                .ok_or_else(|| Failure::new(format!("{member}/Cargo.toml has no name")))?,
        );
    }
    if crates.is_empty() {
        return Err(Failure::new("no publishable crate found in the workspace"));
    }
    Ok(crates)
}

fn check_wasm_modules() -> Result {
    let modules = wasm_modules();
    header(&format!("wasm import check ({} modules)", modules.len()));
    for module in &modules {
        check_wasm_imports(module).map_err(Failure::new)?;
        println!("{}: no imports from `env`", module.display());
    }
    Ok(())
}

/// Runs one of the examples crate's programs (release build) with a
/// redis-server available to it.
fn example(name: &str, extra: &[String]) -> Result {
    example_with(name, &[], extra)
}

/// [`example`] with the examples crate's `features` on.
fn example_with(name: &str, features: &[&str], extra: &[String]) -> Result {
    let redis_server = prepare()?;
    let features = features.join(",");
    let mut cargo = cargo();
    cargo.args(["run", "--release", "-q", "-p", "relink-examples"]);
    if !features.is_empty() {
        cargo.args(["--features", &features]);
    }
    step(
        &format!("cargo run --release -p relink-examples --example {name}"),
        cargo
            .args(["--example", name, "--"])
            .args(extra)
            .env("REDIS_SERVER", &redis_server),
    )
}

/// `cargo xtask doctor <url>`: relink-doctor, built and run; its exit code
/// (0 usable, 1 not, 2 bad URL) is passed on, its report is the message.
fn doctor(args: &[String]) -> Result {
    let status = cargo()
        .args(["run", "--quiet", "-p", "relink-doctor", "--"])
        .args(args)
        .status()
        .map_err(|e| Failure::new(format!("cannot run cargo: {e}")))?;
    match status.code() {
        Some(0) => Ok(()),
        code => Err(Failure {
            message: format!("relink-doctor: {status} (see its diagnosis above)"),
            code: code.and_then(|c| u8::try_from(c).ok()).unwrap_or(1),
        }),
    }
}

fn vectors() -> Result {
    step(
        "RELINK_UPDATE_VECTORS=1 cargo test -p relink-core --test vectors",
        cargo()
            .args(["test", "-p", "relink-core", "--test", "vectors"])
            .env("RELINK_UPDATE_VECTORS", "1"),
    )
}

/// The set-up shared by the commands that run Redis or build for wasm:
/// a redis-server (returned as an absolute path, for `REDIS_SERVER`) and the
/// wasm32 target.
fn prepare() -> Result<PathBuf> {
    let redis_server = ensure_redis_server()?;
    ensure_wasm_target()?;
    js::ensure_tools()?;
    Ok(redis_server)
}

fn ensure_redis_server() -> Result<PathBuf> {
    if let Some(configured) = env::var_os("REDIS_SERVER") {
        return resolve_program(&configured).ok_or_else(|| {
            Failure::new(format!(
                "REDIS_SERVER={} is not an executable file",
                Path::new(&configured).display()
            ))
        });
    }
    if let Some(found) = resolve_program("redis-server".as_ref()) {
        return Ok(found);
    }
    if !is_root()? {
        return Err(Failure::new(
            "redis-server not found (the integration tests spawn their own). Install it with \
             `sudo apt-get install redis-server`, or set REDIS_SERVER=/path/to/redis-server",
        ));
    }
    install_redis_server()?;
    resolve_program("redis-server".as_ref())
        .or_else(|| resolve_program("/usr/bin/redis-server".as_ref()))
        .ok_or_else(|| Failure::new("apt-get installed redis-server, but it is not on PATH"))
}

/// `apt-get install redis-server`, with the Debian service kept from starting:
/// the tests spawn their own servers on free ports, and a daemon on 6379 would
/// outlive the run. A `policy-rc.d` that answers 101 ("action forbidden") is
/// the standard way to say so; it is removed again if we created it.
fn install_redis_server() -> Result {
    const POLICY: &str = "/usr/sbin/policy-rc.d";
    let created_policy = !Path::new(POLICY).exists() && write_policy(POLICY);
    let result = step("apt-get update", Command::new("apt-get").arg("update")).and_then(|()| {
        step(
            "apt-get install -y redis-server",
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "redis-server"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    });
    if created_policy {
        let _ = std::fs::remove_file(POLICY);
    }
    result
}

fn write_policy(path: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, "#!/bin/sh\nexit 101\n").is_ok()
        && std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).is_ok()
}

fn is_root() -> Result<bool> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| Failure::new(format!("cannot run `id -u`: {e}")))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn ensure_wasm_target() -> Result {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| {
            Failure::new(format!(
                "cannot run rustup ({e}); the {WASM_TARGET} target is needed: install rustup, \
                 then `rustup target add {WASM_TARGET}`"
            ))
        })?;
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    step(
        &format!("rustup target add {WASM_TARGET}"),
        Command::new("rustup").args(["target", "add", WASM_TARGET]),
    )
}

/// An executable file: a path (made absolute), or a bare name looked up on PATH.
fn resolve_program(program: &std::ffi::OsStr) -> Option<PathBuf> {
    let program = Path::new(program);
    if program.components().count() > 1 || program.is_absolute() {
        let absolute = if program.is_absolute() {
            program.to_path_buf()
        } else {
            env::current_dir().ok()?.join(program)
        };
        return is_executable(&absolute).then_some(absolute);
    }
    let path: OsString = env::var_os("PATH")?;
    env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Where cargo builds: `$CARGO_TARGET_DIR` (relative to the workspace root,
/// where our cargo commands run, unless absolute), else `target/`.
fn target_dir() -> PathBuf {
    let root = project_root();
    match env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// The cargo that runs us (cargo sets `CARGO`), in the workspace root.
fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(project_root());
    cmd
}

fn header(title: &str) {
    println!("\n==> {title}");
}

/// Runs one step; a failure carries the step's name and exit code.
fn step(title: &str, cmd: &mut Command) -> Result {
    header(title);
    let status = cmd
        .status()
        .map_err(|e| Failure::new(format!("step `{title}`: cannot start: {e}")))?;
    if status.success() {
        return Ok(());
    }
    let code = status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(1);
    Err(Failure {
        message: format!("step `{title}` failed ({status})"),
        code,
    })
}
