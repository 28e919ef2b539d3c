// createClient's options: node-redis's own, minus the knobs relink owns, plus
// `relink: {...}`. Checked here for shape (every error names its field); the
// engine validates the values of its own configuration.
import { CallPolicy, RetryBudget, Supervisor } from './engine.js';
import { OptionsError } from './errors.js';

// node-redis options whose decisions the engine makes; with the option to use instead.
const OWNED = {
  'socket.reconnectStrategy': 'relink.supervisor.backoff',
  'socket.connectTimeout': 'relink.supervisor.connect_timeout',
  'socket.socketTimeout': 'relink.supervisor.heartbeat',
  pingInterval: 'relink.supervisor.heartbeat',
  disableOfflineQueue: 'relink.policy.queue_wait',
  commandsQueueMaxLength: 'relink.maxQueued',
};

const RELINK_FIELDS = new Set(['supervisor', 'policy', 'retryBudget', 'maxQueued', 'seed']);

const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Splits and checks `options`: `{redisOptions, supervisor, policy, budget,
 * maxQueued, seed}`, the engine's objects made (and so validated).
 */
export function parseOptions(options) {
  if (options === undefined) options = {};
  if (!isObject(options)) throw new OptionsError('options', 'must be an object');
  const { relink = {}, ...redisOptions } = options;
  if (redisOptions.socket !== undefined && !isObject(redisOptions.socket)) {
    throw new OptionsError('socket', 'must be an object');
  }
  for (const [field, instead] of Object.entries(OWNED)) {
    const [head, tail] = field.split('.');
    const value = tail === undefined ? redisOptions[head] : redisOptions[head]?.[tail];
    if (value !== undefined) {
      throw new OptionsError(field, `relink decides this; remove it and set \`${instead}\` if needed`);
    }
  }
  if (redisOptions.clientSideCache !== undefined) {
    // node-redis's cache empties itself when its socket closes, but what it
    // serves and when it stops would be node-redis's decisions, not the
    // engine's, and nothing here proves it empty at every gap the engine
    // declares (a heartbeat verdict, a move). Refused rather than unproven.
    throw new OptionsError('clientSideCache', 'not supported by relink-redis yet (see its README, "Client-side caching"); remove it');
  }
  if (redisOptions.url !== undefined && typeof redisOptions.url !== 'string') {
    throw new OptionsError('url', 'must be a string such as "redis://127.0.0.1:6379"');
  }
  if (!isObject(relink)) throw new OptionsError('relink', 'must be an object');
  for (const key of Object.keys(relink)) {
    if (!RELINK_FIELDS.has(key)) {
      throw new OptionsError(`relink.${key}`, `unknown field; expected one of ${[...RELINK_FIELDS].join(', ')}`);
    }
  }
  const maxQueued = relink.maxQueued ?? 1024;
  if (!Number.isSafeInteger(maxQueued) || maxQueued < 0) {
    throw new OptionsError('relink.maxQueued', 'must be a whole number of calls, 0 or more');
  }
  const seed = relink.seed ?? randomSeed();
  if (typeof seed !== 'bigint' && !Number.isSafeInteger(seed)) {
    throw new OptionsError('relink.seed', 'must be a BigInt or a safe integer');
  }
  const engine = (field, make) => {
    try {
      return make();
    } catch (err) {
      // The engine names the field inside its own object (`config.heartbeat.interval`).
      const inner = typeof err?.field === 'string' ? err.field.replace(/^[a-z]+\.?/i, '') : '';
      const name = inner ? `relink.${field}.${inner}` : `relink.${field}`;
      throw new OptionsError(name, err?.message ?? String(err));
    }
  };
  return {
    redisOptions,
    supervisorConfig: engine('supervisor', () => {
      new Supervisor(relink.supervisor, 0).free();
      return relink.supervisor;
    }),
    policy: engine('policy', () => new CallPolicy(relink.policy)),
    budget: engine('retryBudget', () => new RetryBudget(relink.retryBudget)),
    maxQueued,
    seed: BigInt(seed),
  };
}

function randomSeed() {
  return globalThis.crypto.getRandomValues(new BigUint64Array(1))[0];
}
