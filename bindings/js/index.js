// relink-redis: node-redis kept alive by relink's engine (relink-core in
// WebAssembly). node-redis speaks the protocol; the engine decides when to
// connect, PING, give a connection up and reconnect, and what every call
// does in an outage: queue, wait, retry, or fail with an honest outcome.
import { createClient as createRedis } from 'redis';
import { makeClient } from './lib/client.js';

export { NotAppliedError, OutcomeUnknownError, OptionsError, RelinkError } from './lib/errors.js';

/**
 * A client with node-redis's command methods, kept connected by relink.
 * Call `await client.connect()` first (commands made before wait in the
 * bounded queue), `client.quit()` or `client.close()` last.
 */
export function createClient(options) {
  return makeClient(options, createRedis);
}
