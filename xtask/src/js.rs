//! The JavaScript side of `cargo xtask test`: builds `crates/relink-wasm` for
//! wasm32 (release), turns it into a Node package with the pinned
//! wasm-bindgen-cli (`bindings/js/pkg/`, git-ignored), and runs the JS tests
//! with Node's own test runner. Knows nothing of what the tests check.
//!
//! The CLI must be exactly the version of the `wasm-bindgen` crate (the two
//! share an unstable schema), so the version is read from the root
//! `Cargo.toml`'s `wasm-bindgen = "=X.Y.Z"` and the CLI installed to match.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::{cargo, header, is_root, project_root, resolve_program, step, Failure, Result};

/// The module cargo builds (also import-checked).
pub fn wasm_module() -> PathBuf {
    crate::target_dir()
        .join(crate::WASM_TARGET)
        .join("release")
        .join("relink_wasm.wasm")
}

/// Where wasm-bindgen writes the Node package (git-ignored).
const PKG_DIR: &str = "bindings/js/pkg";

/// Set-up: a wasm-bindgen CLI of the pinned version (installed with
/// `cargo install` when missing or of another version) and Node.js.
pub fn ensure_tools() -> Result<PathBuf> {
    ensure_node()?;
    let version = pinned_wasm_bindgen()?;
    if let Some(cli) = wasm_bindgen_cli(&version) {
        return Ok(cli);
    }
    // Not `--locked`: the CLI's own lockfile pins a crate version that the
    // registry mirror lacks; unlocked it resolves and builds (~2 minutes).
    step(
        &format!("cargo install wasm-bindgen-cli --version ={version}"),
        cargo().args([
            "install",
            "wasm-bindgen-cli",
            "--version",
            &format!("={version}"),
        ]),
    )?;
    wasm_bindgen_cli(&version).ok_or_else(|| {
        Failure::new(format!(
            "installed wasm-bindgen-cli {version}, but no `wasm-bindgen` of that version is on \
             PATH or in $CARGO_HOME/bin"
        ))
    })
}

/// Builds the wasm module and its Node package, then runs `node --test bindings/js/test/`.
pub fn test(redis_server: &Path) -> Result {
    let started = Instant::now();
    let root = project_root();
    let cli = ensure_tools()?;
    step(
        &format!(
            "cargo build --release --target {} -p relink-wasm",
            crate::WASM_TARGET
        ),
        cargo().args([
            "build",
            "--release",
            "--target",
            crate::WASM_TARGET,
            "-p",
            "relink-wasm",
        ]),
    )?;
    let module = wasm_module();
    step(
        &format!(
            "wasm-bindgen --target nodejs --out-dir {PKG_DIR} {}",
            module.display()
        ),
        Command::new(&cli)
            .current_dir(&root)
            .args(["--target", "nodejs", "--out-dir", PKG_DIR])
            .arg(&module),
    )?;
    // The bindings' package.json says "type": "module"; the generated glue is CommonJS.
    let pkg_json = root.join(PKG_DIR).join("package.json");
    std::fs::write(&pkg_json, "{ \"type\": \"commonjs\" }\n")
        .map_err(|e| Failure::new(format!("write {}: {e}", pkg_json.display())))?;
    let size = |p: PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
    println!(
        "relink_wasm.wasm: {} bytes from cargo (with debug info), {} bytes after wasm-bindgen",
        size(module),
        size(root.join(PKG_DIR).join("relink_wasm_bg.wasm")),
    );
    step(
        &format!(
            "node --test bindings/js/test/ (REDIS_SERVER={})",
            redis_server.display()
        ),
        Command::new("node")
            .current_dir(&root)
            .args(["--test", "bindings/js/test/"])
            .env("REDIS_SERVER", redis_server),
    )?;
    println!(
        "wasm/JS steps took {:.1} s",
        started.elapsed().as_secs_f64()
    );
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
    fn the_root_manifest_pins_wasm_bindgen_exactly() {
        let version = pinned_wasm_bindgen().unwrap();
        let parts: Vec<&str> = version.split('.').collect();
        assert_eq!(parts.len(), 3, "{version}");
        assert!(parts.iter().all(|p| p.parse::<u32>().is_ok()), "{version}");
    }
}
