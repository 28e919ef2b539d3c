//! Gives `librelink.so` its SONAME, as cargo-c would: `librelink.so.0.1`
//! for every 0.1.x release (a 0.x minor is the ABI version, as Cargo treats
//! it), `librelink.so.1` for every 1.x. A program linked against it asks
//! for that name, which `cargo xtask install` creates as a symlink to the
//! versioned file. ELF platforms only; elsewhere the linker's default stays.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let elf = matches!(
        os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd" | "dragonfly"
    );
    if !elf {
        return;
    }
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_default();
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_default();
    let abi = if major == "0" {
        format!("0.{minor}")
    } else {
        major
    };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,librelink.so.{abi}");
}
