//! `cargo xtask install --prefix DIR`: the C library the way C developers
//! expect it, in cargo-c's layout (as rustls-ffi installs librustls):
//!
//! ```text
//! DIR/include/relink.h
//! DIR/lib/librelink.so.0.1.0            SONAME librelink.so.0.1 (crates/relink-ffi/build.rs)
//! DIR/lib/librelink.so.0.1 -> librelink.so.0.1.0
//! DIR/lib/librelink.so     -> librelink.so.0.1
//! DIR/lib/librelink.a
//! DIR/lib/pkgconfig/relink.pc
//! ```
//!
//! so that `cc app.c $(pkg-config --cflags --libs relink)` builds against it.
//!
//! Why not cargo-c itself: Debian's `cargo-c` (0.9.14) is built on a cargo
//! far older than this workspace's (it cannot read a version 4 Cargo.lock),
//! and `cargo install cargo-c` compiles all of cargo, many minutes on two
//! cores, on every fresh CI machine. The layout is small enough to write
//! here: a release build, a copy, two symlinks and a text file.

use std::path::{Path, PathBuf};

use crate::{cargo, header, project_root, step, target_dir, Failure, Result};

const HEADER: &str = "bindings/c/include/relink.h";

/// The libraries a static librelink.a needs on Linux (glibc): what
/// `rustc --print native-static-libs` reports for a staticlib using std.
const NATIVE_STATIC_LIBS: &str = "-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc";

/// What was installed, for the steps that use it.
#[derive(Debug)]
pub struct Installed {
    /// `DIR/lib`.
    pub lib_dir: PathBuf,
    /// `DIR/lib/pkgconfig`, for `PKG_CONFIG_PATH`.
    pub pkgconfig_dir: PathBuf,
    /// The real file, `DIR/lib/librelink.so.X.Y.Z`.
    pub shared_library: PathBuf,
}

/// `cargo xtask install --prefix DIR`.
pub fn run(args: &[String]) -> Result {
    let prefix = match args {
        [flag, dir] if flag == "--prefix" => PathBuf::from(dir),
        [flag] if flag.starts_with("--prefix=") => PathBuf::from(&flag["--prefix=".len()..]),
        _ => {
            return Err(Failure::new(
                "usage: cargo xtask install --prefix DIR (e.g. --prefix /usr/local, or \
                 --prefix \"$HOME/.local\")",
            ))
        }
    };
    let prefix = if prefix.is_absolute() {
        prefix
    } else {
        std::env::current_dir()
            .map_err(|e| Failure::new(format!("current directory: {e}")))?
            .join(prefix)
    };
    let installed = install(&prefix)?;
    println!(
        "installed into {}: build with\n  PKG_CONFIG_PATH={} pkg-config --cflags --libs relink",
        prefix.display(),
        installed.pkgconfig_dir.display()
    );
    Ok(())
}

/// Builds the release library and installs it, the header and `relink.pc`
/// under `prefix`.
pub fn install(prefix: &Path) -> Result<Installed> {
    // With TLS, as a library for production is built (`rediss://` and the
    // `tls_*` options; the C and Python TLS tests connect to a TLS server).
    step(
        "cargo build --release -p relink-ffi --features tls-rustls",
        cargo().args([
            "build",
            "--release",
            "-p",
            "relink-ffi",
            "--features",
            "tls-rustls",
        ]),
    )?;
    let version = env!("CARGO_PKG_VERSION");
    let abi = abi_version(version);
    header(&format!(
        "install librelink {version} into {}",
        prefix.display()
    ));
    let built = target_dir().join("release");
    let lib_dir = prefix.join("lib");
    let include_dir = prefix.join("include");
    let pkgconfig_dir = lib_dir.join("pkgconfig");
    for dir in [&lib_dir, &include_dir, &pkgconfig_dir] {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::new(format!("create {}: {e}", dir.display())))?;
    }
    let real = format!("librelink.so.{version}");
    let soname = format!("librelink.so.{abi}");
    copy(&built.join("librelink.so"), &lib_dir.join(&real))?;
    copy(&built.join("librelink.a"), &lib_dir.join("librelink.a"))?;
    copy(&project_root().join(HEADER), &include_dir.join("relink.h"))?;
    symlink(&real, &lib_dir.join(&soname))?;
    symlink(&soname, &lib_dir.join("librelink.so"))?;
    let pc = pkg_config_file(prefix, version);
    let pc_path = pkgconfig_dir.join("relink.pc");
    std::fs::write(&pc_path, pc)
        .map_err(|e| Failure::new(format!("write {}: {e}", pc_path.display())))?;
    for installed in [
        lib_dir.join(&real),
        lib_dir.join(&soname),
        lib_dir.join("librelink.so"),
        lib_dir.join("librelink.a"),
        include_dir.join("relink.h"),
        pc_path,
    ] {
        println!("  {}", installed.display());
    }
    Ok(Installed {
        shared_library: lib_dir.join(real),
        lib_dir,
        pkgconfig_dir,
    })
}

/// `0.1` for 0.1.z, `1` for 1.y.z: the part of the version that names the ABI.
pub fn abi_version(version: &str) -> String {
    let mut parts = version.split('.');
    match (parts.next(), parts.next()) {
        (Some("0"), Some(minor)) => format!("0.{minor}"),
        (Some(major), _) => major.to_owned(),
        (None, _) => version.to_owned(),
    }
}

fn pkg_config_file(prefix: &Path, version: &str) -> String {
    format!(
        "prefix={prefix}\n\
         exec_prefix=${{prefix}}\n\
         libdir=${{exec_prefix}}/lib\n\
         includedir=${{prefix}}/include\n\
         \n\
         Name: relink\n\
         Description: A Redis client that rides out outages (C API of relink)\n\
         Version: {version}\n\
         Libs: -L${{libdir}} -lrelink\n\
         Libs.private: {NATIVE_STATIC_LIBS}\n\
         Cflags: -I${{includedir}}\n",
        prefix = prefix.display()
    )
}

fn copy(from: &Path, to: &Path) -> Result {
    // Remove first: overwriting a library a running program has mapped would
    // change it under that program; a new inode does not.
    let _ = std::fs::remove_file(to);
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| Failure::new(format!("copy {} to {}: {e}", from.display(), to.display())))
}

fn symlink(target: &str, link: &Path) -> Result {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link)
        .map_err(|e| Failure::new(format!("symlink {} -> {target}: {e}", link.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_abi_version_is_the_minor_below_1_and_the_major_after() {
        assert_eq!(abi_version("0.1.0"), "0.1");
        assert_eq!(abi_version("0.12.3"), "0.12");
        assert_eq!(abi_version("1.4.2"), "1");
    }

    #[test]
    fn the_pc_file_points_into_the_prefix() {
        let pc = pkg_config_file(Path::new("/opt/relink"), "0.1.0");
        assert!(pc.starts_with("prefix=/opt/relink\n"));
        assert!(pc.contains("Libs: -L${libdir} -lrelink\n"));
        assert!(pc.contains("Cflags: -I${includedir}\n"));
        assert!(pc.contains("Version: 0.1.0\n"));
    }
}
