// The engine's parts for those who drive a transport of their own:
// relink-core's Backoff, Supervisor, per-call policy, retry budget, sync
// cursor and classifiers, compiled to WebAssembly.
export * from './lib/engine.js';
