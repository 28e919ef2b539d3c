//! The JavaScript side of `cargo xtask test`: the `relink-redis` npm
//! package, built, packed, installed and tested as a user would get it.
//!
//! `crates/relink-wasm` is built for wasm32 with the size-first
//! `wasm-release` profile, turned into ES module glue by the pinned
//! wasm-bindgen-cli (`--target web`, into `bindings/js/pkg/`, git-ignored)
//! and shrunk by `wasm-opt -Oz` from the `binaryen` npm package (a dev
//! dependency of the package, installed into `bindings/js/node_modules`).
//! Then `npm pack` makes the tarball, a fresh project under the target
//! directory installs it with node-redis and TypeScript from the registry,
//! and the package's tests (copied there, so that `relink-redis` resolves to
//! the installed tarball) run with Node's test runner against the
//! redis-server given; `tsc --noEmit` checks a TypeScript file against the
//! published types. Knows nothing of what the tests check.
//!
//! The CLI must be exactly the version of the `wasm-bindgen` crate (the two
//! share an unstable schema), so the version is read from the root
//! `Cargo.toml`'s `wasm-bindgen = "=X.Y.Z"` and the CLI installed to match.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::{
    cargo, header, is_root, project_root, resolve_program, step, target_dir, Failure, Result,
};

/// The cargo profile of the shipped `.wasm` (root `Cargo.toml`).
const PROFILE: &str = "wasm-release";

/// The module cargo builds (also import-checked).
pub fn wasm_module() -> PathBuf {
    target_dir()
        .join(crate::WASM_TARGET)
        .join(PROFILE)
        .join("relink_wasm.wasm")
}

/// The npm package's sources.
const PACKAGE_DIR: &str = "bindings/js";
/// Where wasm-bindgen writes the glue and the module (git-ignored).
const PKG_DIR: &str = "bindings/js/pkg";
/// The golden vectors the JS tests replay.
const VECTORS_DIR: &str = "tests/vectors";

/// Set-up: a wasm-bindgen CLI of the pinned version (installed with
/// `cargo install` when missing or of another version) and Node.js.
pub fn ensure_tools() -> Result<PathBuf> {
    ensure_node()?;
    let version = pinned_wasm_bindgen()?;
    if let Some(cli) = wasm_bindgen_cli(&version) {
        return Ok(cli);
    }
    // Not `--locked`: the CLI's own lockfile pins a crate version that the
    // registry mirror lacks; unlocked it resolves and builds. `--debug`: on
    // the project's 2-core machine it builds in 1 min 54 s against 3 min 47 s
    // optimised, and binds relink's module in 0.3 s against 0.1 s, with
    // byte-identical output (2026-11-28); a clean CI run installs it once.
    step(
        &format!("cargo install wasm-bindgen-cli --version ={version} --debug"),
        cargo().args([
            "install",
            "wasm-bindgen-cli",
            "--version",
            &format!("={version}"),
            "--debug",
        ]),
    )?;
    wasm_bindgen_cli(&version).ok_or_else(|| {
        Failure::new(format!(
            "installed wasm-bindgen-cli {version}, but no `wasm-bindgen` of that version is on \
             PATH or in $CARGO_HOME/bin"
        ))
    })
}

/// Builds the package's files in `bindings/js`: the wasm module (release,
/// size-first), its glue, `wasm-opt -Oz`. `npm run build` runs this.
pub fn build() -> Result {
    let root = project_root();
    let cli = ensure_tools()?;
    step(
        &format!(
            "cargo build --profile {PROFILE} --target {} -p relink-wasm",
            crate::WASM_TARGET
        ),
        cargo().args([
            "build",
            "--profile",
            PROFILE,
            "--target",
            crate::WASM_TARGET,
            "-p",
            "relink-wasm",
        ]),
    )?;
    let module = wasm_module();
    let _ = std::fs::remove_dir_all(root.join(PKG_DIR));
    step(
        &format!(
            "wasm-bindgen --target web --out-dir {PKG_DIR} {}",
            module.display()
        ),
        Command::new(&cli)
            .current_dir(&root)
            .args(["--target", "web", "--out-dir", PKG_DIR])
            .arg(&module),
    )?;
    // The package's dev dependencies: binaryen's wasm-opt, node-redis and
    // TypeScript for working on the package in place.
    step(
        &format!("npm install (in {PACKAGE_DIR}: binaryen, redis, typescript)"),
        npm(&root.join(PACKAGE_DIR)).args([
            "install",
            "--no-package-lock",
            "--no-audit",
            "--no-fund",
        ]),
    )?;
    let wasm = root.join(PKG_DIR).join("relink_wasm_bg.wasm");
    let before = size(&wasm);
    step(
        "wasm-opt -Oz (binaryen)",
        Command::new(root.join(PACKAGE_DIR).join("node_modules/.bin/wasm-opt"))
            .arg("-Oz")
            // Run the passes until the module stops shrinking (~100 bytes).
            .arg("--converge")
            // Lets wasm-opt fold constant offsets into addresses (~600
            // bytes). Sound here: Rust's wasm32 target lays the stack out
            // first, growing down from 1 MiB to 0, and its data above
            // 1 MiB, so the low 1 KiB is touched only by a stack within
            // 1 KiB of overflowing (and Rust never dereferences null).
            .arg("--low-memory-unused")
            // What Rust's wasm32 target emits by default.
            .args([
                "--enable-bulk-memory",
                "--enable-nontrapping-float-to-int",
                "--enable-sign-ext",
                "--enable-mutable-globals",
                "--enable-reference-types",
                "--enable-multivalue",
                "--strip-debug",
                "--strip-producers",
            ])
            .arg(&wasm)
            .arg("-o")
            .arg(&wasm),
    )?;
    let shipped = size(&wasm);
    println!(
        "relink_wasm_bg.wasm: {} bytes from cargo, {before} after wasm-bindgen, {shipped} after \
         wasm-opt -Oz ({:.1} KiB; budget {WASM_BUDGET} bytes, {} left)",
        size(&module),
        shipped as f64 / 1024.0,
        WASM_BUDGET as i64 - shipped as i64
    );
    check_budget(shipped)
}

/// The most the shipped `.wasm` may weigh after `wasm-opt -Oz`: 100 KiB
/// (DESIGN.md's number). Every Node process that imports the package loads
/// and compiles it at start-up.
const WASM_BUDGET: u64 = 100 * 1024;

/// Fails when the module is over [`WASM_BUDGET`], saying where the bytes
/// usually come from.
fn check_budget(shipped: u64) -> Result {
    if shipped <= WASM_BUDGET {
        return Ok(());
    }
    Err(Failure::new(format!(
        "bindings/js/pkg/relink_wasm_bg.wasm is {shipped} bytes, over its budget of \
         {WASM_BUDGET} (100 KiB). The usual causes: serde or format! of a float reaching \
         the module, a panicking index in code it links, a new export; see the Size section \
         of bindings/js/README.md for how to measure"
    )))
}

/// Builds the package, packs it, installs the tarball with node-redis into
/// a fresh project, and runs the package's tests and `tsc --noEmit` there.
pub fn test(redis_server: &Path) -> Result {
    let started = Instant::now();
    let root = project_root();
    build()?;
    let work = target_dir().join("js");
    let project = work.join("project");
    let _ = std::fs::remove_dir_all(&work);
    create_dir(&project)?;

    header("npm pack");
    let packed = npm(&root.join(PACKAGE_DIR))
        .args(["pack", "--silent", "--pack-destination"])
        .arg(&work)
        .output()
        .map_err(|e| Failure::new(format!("cannot run npm pack: {e}")))?;
    let name = String::from_utf8_lossy(&packed.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let tarball = work.join(&name);
    if !packed.status.success() || name.is_empty() || !tarball.is_file() {
        return Err(Failure::new(format!(
            "npm pack made no tarball in {}: {}",
            work.display(),
            String::from_utf8_lossy(&packed.stderr)
        )));
    }
    println!("packed {} ({} bytes)", tarball.display(), size(&tarball));

    // An empty project, as a user would start one.
    write(
        &project.join("package.json"),
        "{ \"name\": \"relink-redis-check\", \"private\": true, \"type\": \"module\" }\n",
    )?;
    let tests = root.join(PACKAGE_DIR).join("test");
    copy_dir(&tests, &project.join("test"))?;
    step(
        "npm install the tarball, redis, typescript and @types/node into a fresh project",
        npm(&project)
            .args(["install", "--no-audit", "--no-fund"])
            .arg(&tarball)
            .args(["redis@6", "typescript@5", "@types/node@20"]),
    )?;
    step(
        &format!(
            "node --test (installed tarball, REDIS_SERVER={})",
            redis_server.display()
        ),
        Command::new("node")
            .current_dir(&project)
            .args(["--test", "--test-concurrency=2", "test/"])
            .env("REDIS_SERVER", redis_server)
            .env("RELINK_VECTORS_DIR", root.join(VECTORS_DIR)),
    )?;
    step(
        "tsc --noEmit -p test/types (against the published types)",
        Command::new(project.join("node_modules/.bin/tsc"))
            .current_dir(&project)
            .args(["-p", "test/types/tsconfig.json"]),
    )?;
    println!(
        "wasm/JS steps took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn npm(dir: &Path) -> Command {
    let mut cmd = Command::new("npm");
    cmd.current_dir(dir);
    cmd
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn create_dir(dir: &Path) -> Result {
    std::fs::create_dir_all(dir).map_err(|e| Failure::new(format!("create {}: {e}", dir.display())))
}

fn write(path: &Path, contents: &str) -> Result {
    std::fs::write(path, contents)
        .map_err(|e| Failure::new(format!("write {}: {e}", path.display())))
}

/// Copies the files of `from` (recursively) into `to`.
fn copy_dir(from: &Path, to: &Path) -> Result {
    create_dir(to)?;
    let entries = std::fs::read_dir(from)
        .map_err(|e| Failure::new(format!("read {}: {e}", from.display())))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target)?;
        } else {
            std::fs::copy(&path, &target).map_err(|e| {
                Failure::new(format!(
                    "copy {} to {}: {e}",
                    path.display(),
                    target.display()
                ))
            })?;
        }
    }
    Ok(())
}

/// The version in the root Cargo.toml's `wasm-bindgen = "=X.Y.Z"`.
fn pinned_wasm_bindgen() -> Result<String> {
    let manifest = project_root().join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .map_err(|e| Failure::new(format!("read {}: {e}", manifest.display())))?;
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("wasm-bindgen = \"="))
        .find_map(|rest| rest.split('"').next())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            Failure::new(
                "the root Cargo.toml must pin the crate exactly: wasm-bindgen = \"=X.Y.Z\"",
            )
        })
}

/// A `wasm-bindgen` of exactly `version`: on PATH, or where `cargo install` puts it.
fn wasm_bindgen_cli(version: &str) -> Option<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    let installed = cargo_home.map(|home| home.join("bin").join("wasm-bindgen"));
    resolve_program("wasm-bindgen".as_ref())
        .into_iter()
        .chain(installed)
        .find(|cli| {
            Command::new(cli)
                .arg("--version")
                .output()
                .is_ok_and(|out| {
                    String::from_utf8_lossy(&out.stdout)
                        .split_whitespace()
                        .nth(1)
                        == Some(version)
                })
        })
}

/// Node.js (with its built-in test runner): installed with apt-get when
/// missing and we are root, as the set-up does for redis-server.
fn ensure_node() -> Result {
    if resolve_program("node".as_ref()).is_some() {
        return Ok(());
    }
    if !is_root()? {
        return Err(Failure::new(
            "node not found (the JavaScript tests run with `node --test`, Node.js 20 or later). \
             Install Node.js, e.g. `sudo apt-get install nodejs`",
        ));
    }
    header("node not found: installing Node.js");
    step("apt-get update", Command::new("apt-get").arg("update"))?;
    step(
        "apt-get install -y nodejs",
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "nodejs"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wasm_budget_is_100_kib_inclusive() {
        assert!(check_budget(100 * 1024).is_ok());
        let err = check_budget(100 * 1024 + 1).unwrap_err();
        assert!(err.message.contains("102401 bytes"), "{}", err.message);
    }

    #[test]
    fn the_root_manifest_pins_wasm_bindgen_exactly() {
        let version = pinned_wasm_bindgen().unwrap();
        let parts: Vec<&str> = version.split('.').collect();
        assert_eq!(parts.len(), 3, "{version}");
        assert!(parts.iter().all(|p| p.parse::<u32>().is_ok()), "{version}");
    }
}
