//! relink's runnable examples live beside this file: `basic.rs` (the README's
//! example) and `outage_tour.rs` (what `cargo xtask demo` runs).
