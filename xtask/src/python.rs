//! The Python side of `cargo xtask test`: the `relink-redis` wheel built
//! from `bindings/python` (its in-tree backend packages the librelink.so
//! that the C steps installed and tested), a fresh virtual environment,
//! `pip install` of the wheel, and the package's tests run from outside the
//! source tree, so that they import the installed package and its bundled
//! library, as a user's program would. Knows nothing of what the tests
//! check.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{header, project_root, resolve_program, step, target_dir, Failure, Result};

const PACKAGE: &str = "bindings/python";
const TESTS: &str = "bindings/python/tests";
const VECTORS_DIR: &str = "tests/vectors";

/// Wheel, venv, install, tests. `library` is the librelink.so to package.
pub fn test(redis_server: &Path, library: &Path) -> Result {
    let root = project_root();
    let python = python()?;
    let work = target_dir().join("python");
    let dist = work.join("dist");
    let venv = work.join("venv");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&dist)
        .map_err(|e| Failure::new(format!("create {}: {e}", dist.display())))?;

    step(
        &format!("pip wheel {PACKAGE} (RELINK_LIB={})", library.display()),
        Command::new(&python)
            .current_dir(&root)
            .args(["-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir"])
            .arg(&dist)
            .arg(PACKAGE)
            .env("RELINK_LIB", library)
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
    )?;
    let wheel = std::fs::read_dir(&dist)
        .map_err(|e| Failure::new(format!("read {}: {e}", dist.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| Failure::new(format!("pip wheel left no .whl in {}", dist.display())))?;
    println!("built {}", wheel.display());

    step(
        "python3 -m venv (fresh)",
        Command::new(&python).args(["-m", "venv"]).arg(&venv),
    )?;
    let venv_python = venv.join("bin").join("python");
    step(
        "pip install the wheel into the venv",
        Command::new(&venv_python)
            .args(["-m", "pip", "install", "--no-deps", "--no-index", "--quiet"])
            .arg(&wheel)
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
    )?;

    // From a directory of its own: `import relink_redis` can only find the
    // installed package, and the library it loads is the one in the wheel.
    let outside = work.join("run");
    std::fs::create_dir_all(&outside)
        .map_err(|e| Failure::new(format!("create {}: {e}", outside.display())))?;
    header("import relink_redis from the venv");
    let found = Command::new(&venv_python)
        .current_dir(&outside)
        .args([
            "-c",
            "import os, relink_redis; print(os.path.dirname(relink_redis.__file__)); \
             print(relink_redis.version)",
        ])
        .env_remove("RELINK_LIB")
        .env_remove("PYTHONPATH")
        .output()
        .map_err(|e| Failure::new(format!("cannot run the venv's python: {e}")))?;
    let said = String::from_utf8_lossy(&found.stdout);
    let package_dir = said.lines().next().unwrap_or_default();
    if !found.status.success() || !Path::new(package_dir).starts_with(&venv) {
        return Err(Failure::new(format!(
            "relink_redis was not imported from the venv ({}): {said}{}",
            venv.display(),
            String::from_utf8_lossy(&found.stderr)
        )));
    }
    if !Path::new(package_dir).join("librelink.so").is_file()
        || !Path::new(package_dir).join("py.typed").is_file()
    {
        return Err(Failure::new(format!(
            "the installed package in {package_dir} lacks librelink.so or py.typed"
        )));
    }
    println!("{}", said.trim_end());

    step(
        &format!(
            "python -m unittest discover {TESTS} (installed wheel, run from {})",
            outside.display()
        ),
        Command::new(&venv_python)
            .current_dir(&outside)
            .args(["-m", "unittest", "discover", "-v", "-s"])
            .arg(root.join(TESTS))
            .env("REDIS_SERVER", redis_server)
            .env("RELINK_VECTORS_DIR", root.join(VECTORS_DIR))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("RELINK_LIB")
            .env_remove("PYTHONPATH"),
    )
}

fn python() -> Result<PathBuf> {
    let python = resolve_program("python3".as_ref()).ok_or_else(|| {
        Failure::new(
            "python3 not found: the Python package's steps need it (3.8 or later, with venv and \
             pip: `sudo apt-get install python3-venv python3-pip`)",
        )
    })?;
    // Debian's python3 may lack venv/ensurepip until python3-venv is installed.
    let has_venv = Command::new(&python)
        .args(["-c", "import venv, ensurepip"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_venv {
        crate::c::ensure_apt_package("python3-venv", "the Python tests run in a fresh venv")?;
    }
    Ok(python)
}
