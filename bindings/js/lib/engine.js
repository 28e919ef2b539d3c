// relink's engine: relink-core compiled to WebAssembly (crates/relink-wasm,
// through wasm-bindgen's `web` target, made small by wasm-opt). Loaded once,
// synchronously, from the .wasm next to this package's files, before any
// importer can call into it.
import { readFileSync } from 'node:fs';
import { initSync } from '../pkg/relink_wasm.js';

initSync({ module: readFileSync(new URL('../pkg/relink_wasm_bg.wasm', import.meta.url)) });

export * from '../pkg/relink_wasm.js';
