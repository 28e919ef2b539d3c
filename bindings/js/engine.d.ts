// Types of relink-redis/engine: relink-core's parts, as wasm-bindgen declares them.
export * from './pkg/relink_wasm.js';
