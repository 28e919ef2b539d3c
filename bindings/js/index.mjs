// relink for JavaScript: the relink-core engine compiled to WebAssembly.
//
// `cargo xtask test` generates ./pkg (wasm-bindgen --target nodejs, CommonJS)
// from crates/relink-wasm; this module re-exports it for ES modules.
import wasm from './pkg/relink_wasm.js';

export const {
  Backoff,
  Call,
  CallPolicy,
  Supervisor,
  SyncCursor,
  retrySafe,
  killsConnection,
  failureOutcome,
  failureName,
  classifyError,
  classifyErrorCode,
  connectCause,
  connectCauseFromFirstBytes,
} = wasm;
