"""The build backend of relink-redis: setuptools', after putting
librelink.so into the package.

The library is $RELINK_LIB when set (cargo xtask passes the one it built
and tested), else built here with `cargo build --release -p relink-ffi` in
the relink checkout that holds this directory, honouring $CARGO_TARGET_DIR.
An sdist cannot carry the Rust workspace, so only wheels are built.
"""

import os
import shutil
import subprocess

from setuptools import build_meta as _setuptools

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKSPACE = os.path.dirname(os.path.dirname(HERE))
PACKAGED = os.path.join(HERE, "src", "relink_redis", "librelink.so")


def _library():
    configured = os.environ.get("RELINK_LIB")
    if configured:
        return configured
    if not os.path.exists(os.path.join(WORKSPACE, "crates", "relink-ffi", "Cargo.toml")):
        raise RuntimeError(
            f"relink-redis builds from a relink checkout ({WORKSPACE} is not one): "
            "set RELINK_LIB to a librelink.so, or build from the repository"
        )
    cargo = os.environ.get("CARGO", "cargo")
    subprocess.run([cargo, "build", "--release", "-p", "relink-ffi"], cwd=WORKSPACE, check=True)
    target = os.environ.get("CARGO_TARGET_DIR") or "target"
    return os.path.join(WORKSPACE, target, "release", "librelink.so")


def _with_library(build):
    def run(*args, **kwargs):
        shutil.copyfile(_library(), PACKAGED)
        try:
            return build(*args, **kwargs)
        finally:
            os.remove(PACKAGED)

    return run


build_wheel = _with_library(_setuptools.build_wheel)
build_editable = _with_library(_setuptools.build_editable)
get_requires_for_build_wheel = _setuptools.get_requires_for_build_wheel
get_requires_for_build_editable = _setuptools.get_requires_for_build_editable
prepare_metadata_for_build_wheel = _setuptools.prepare_metadata_for_build_wheel
prepare_metadata_for_build_editable = _setuptools.prepare_metadata_for_build_editable


def build_sdist(sdist_directory, config_settings=None):
    raise RuntimeError(
        "relink-redis has no sdist: its library is built from the relink Rust workspace. "
        "Build a wheel (pip wheel ./bindings/python) from a relink checkout"
    )
