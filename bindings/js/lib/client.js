// RelinkClient: node-redis's command methods, each call run through the
// engine's per-call policy (queue, deadline, retries, outcome), over a
// connection the engine's Supervisor keeps. The executor below does what the
// policy says and reports what it saw; it never chooses a delay, a retry or
// an outcome.
import { EventEmitter } from 'node:events';
import { Call, classifyNodeError, isReadOnly } from './engine.js';
import { NotAppliedError, OptionsError, OutcomeUnknownError } from './errors.js';
import { Link, at, now } from './link.js';
import { parseOptions } from './options.js';
import { Subscriber } from './pubsub.js';

// The client's own members; every other property is a node-redis command method.
const OWN = new Set([
  'connect', 'quit', 'close', 'health', 'stats', 'events', 'idempotent', 'withDeadline',
  'subscribe', 'pSubscribe', 'sendCommand', 'on', 'once', 'off', 'addListener',
  'removeListener', 'removeAllListeners', 'emit', 'listeners', 'listenerCount',
  'state', 'isReady', 'then',
]);

// node-redis methods not offered: they return no promise (a MULTI builder, a
// scan iterator, a new client), or change state of one connection that a
// reconnect would silently drop (SELECT: use the `database` option; WATCH;
// MONITOR), or end the connection behind the engine's back.
const NOT_OFFERED = new Set([
  'multi', 'MULTI', 'duplicate', 'destroy', 'disconnect', 'QUIT', 'select', 'SELECT', 'watch',
  'WATCH', 'unwatch', 'UNWATCH', 'reset', 'RESET', 'monitor', 'MONITOR', 'scanIterator',
  'hScanIterator', 'hScanValuesIterator', 'hScanNoValuesIterator', 'sScanIterator',
  'zScanIterator', 'executeIsolated', 'withTypeMapping', 'withCommandOptions',
  'withAbortSignal', 'asap', 'ref', 'unref',
]);

/**
 * Makes a client. Nothing connects until `connect()`.
 * @param {object} [options] node-redis's createClient options (url, socket,
 *   username, password, database, RESP, ...) and `relink: {supervisor, policy,
 *   retryBudget, maxQueued, seed}`.
 * @param {Function} createRedis node-redis's `createClient`.
 */
export function makeClient(options, createRedis) {
  const parsed = parseOptions(options);
  const core = new Core(parsed, createRedis);
  return view(core, { idempotent: false, deadline: undefined });
}

// A handle: the shared core with call options of its own (idempotent, deadline).
function view(core, callOptions) {
  const handle = {
    connect: () => core.connect(),
    quit: () => core.quit(),
    close: () => core.close(),
    health: () => core.health(),
    stats: () => core.stats(),
    events: () => core.events(),
    get state() { return core.link.state; },
    get isReady() { return core.link.conn !== null; },
    idempotent: () => view(core, { ...callOptions, idempotent: true }),
    withDeadline: (ms) => {
      if (ms !== null && (!Number.isFinite(ms) || ms < 0)) {
        throw new RangeError('withDeadline(ms): ms must be a number of milliseconds, 0 or more, or null for none');
      }
      return view(core, { ...callOptions, deadline: ms });
    },
    subscribe: (channels, listener) => core.subscribe('channel', channels, listener),
    pSubscribe: (patterns, listener) => core.subscribe('pattern', patterns, listener),
    sendCommand: (args, ...rest) => core.run('sendCommand', [args, ...rest], String(args?.[0] ?? ''), callOptions),
  };
  for (const name of ['on', 'once', 'off', 'addListener', 'removeListener', 'removeAllListeners', 'emit', 'listeners', 'listenerCount']) {
    handle[name] = (...args) => {
      const result = core.emitter[name](...args);
      return result === core.emitter ? proxy : result;
    };
  }
  const proxy = new Proxy(handle, {
    get(target, prop, receiver) {
      if (typeof prop !== 'string' || OWN.has(prop)) return Reflect.get(target, prop, receiver);
      if (typeof core.template[prop] !== 'function') return undefined;
      if (NOT_OFFERED.has(prop)) {
        return () => {
          throw new TypeError(`relink-redis does not offer node-redis's \`${prop}\` (see the package README)`);
        };
      }
      return (...args) => core.run(prop, args, commandName(prop), callOptions);
    },
  });
  return proxy;
}

// The Redis command a node-redis method sends: `get`/`GET` → GET,
// `hGetAll` → HGETALL. A method that is no command's name (zRangeWithScores)
// is unknown to the engine's read-only list, so never taken for safe to repeat.
const commandName = (method) => method.toUpperCase();

class Core {
  emitter = new EventEmitter();
  #policy;
  #budget;
  #maxQueued;
  #seed;
  #queued = 0;
  #waiters = new Map(); // calls waiting for a connection: wake function → place in the queue
  #places = 0;
  #attempts = new Set(); // attempts in flight (promises), for quit()
  #closing = false;
  #closed = false;
  #subscriber = null;
  #parsed;
  #createRedis;
  #stats = { calls: 0, succeeded: 0, notApplied: 0, unknown: 0, rejected: 0, retries: 0, reconnects: 0 };
  #iterators = new Set();

  constructor(parsed, createRedis) {
    if (typeof createRedis !== 'function') throw new TypeError('createRedis must be node-redis\'s createClient');
    this.#parsed = parsed;
    this.#createRedis = createRedis;
    this.#policy = parsed.policy;
    this.#budget = parsed.budget;
    this.#maxQueued = parsed.maxQueued;
    this.#seed = parsed.seed;
    // An unconnected node-redis client: only asked which command methods
    // exist. Made now, so that options node-redis refuses (a URL it cannot
    // read) fail here, naming the field, and not at each connection attempt.
    try {
      this.template = createRedis({ ...parsed.redisOptions, socket: { ...parsed.redisOptions.socket, reconnectStrategy: false } });
    } catch (err) {
      throw new OptionsError(parsed.redisOptions.url === undefined ? 'options' : 'url', err?.message ?? String(err));
    }
    this.link = new Link({
      createRedis,
      redisOptions: parsed.redisOptions,
      supervisor: parsed.supervisorConfig,
      seed: parsed.seed,
    });
    this.link.on('event', (event) => this.#onEvent(event));
    this.link.on('ready', () => this.#wake());
  }

  #onEvent(event) {
    if (event.type === 'reconnected') this.#stats.reconnects += 1;
    if (event.type === 'state_changed') {
      const health = { state: event.to, from: event.from, at: Date.now() };
      this.emitter.emit('health', health);
      for (const push of this.#iterators) push(health);
    }
    // Waiting calls look again: a failed attempt may have made the client misconfigured.
    if (event.type === 'connect_attempt_failed' || event.type === 'gave_up') this.#wake();
    this.emitter.emit('event', event);
  }

  // First queued, first woken: the queue keeps its order when the connection comes.
  #wake() {
    const waiting = [...this.#waiters].sort((a, b) => a[1] - b[1]);
    for (const [wake] of waiting) wake();
  }

  connect() {
    if (this.#closing) return Promise.reject(new NotAppliedError('the client is closed', { outcome: 'not_applied', reason: 'shutdown' }));
    return new Promise((resolve, reject) => {
      const done = () => {
        this.link.off('event', onEvent);
      };
      const onEvent = (event) => {
        if (event.type === 'connected' || event.type === 'reconnected') {
          done();
          resolve();
        } else if (event.type === 'state_changed' && event.to === 'shutdown') {
          done();
          reject(new NotAppliedError('the client was closed before it connected', { outcome: 'not_applied', reason: 'shutdown' }));
        } else if ((event.type === 'connect_attempt_failed' && event.misconfigured) || event.type === 'gave_up') {
          done();
          const failure = event.failure;
          reject(new NotAppliedError(
            `could not connect: ${failure ? `${JSON.stringify(failure.cause)} ${failure.evidence ?? ''}`.trim() : 'gave up'}`,
            { outcome: 'not_applied', reason: event.type === 'gave_up' ? 'gave_up' : 'misconfigured' },
          ));
        }
      };
      if (this.link.conn) return resolve();
      this.link.on('event', onEvent);
      this.link.start();
      return undefined;
    });
  }

  health() {
    return this.link.health();
  }

  stats() {
    return {
      ...this.#stats,
      queued: this.#queued,
      inFlight: this.#attempts.size,
      state: this.link.state,
      retryTokens: this.#budget.tokensMilli / 1000,
    };
  }

  /** An async iterator of health changes (`{state, from, at}`), ending when the client closes. */
  events() {
    const buffer = [];
    let wake = null;
    const push = (item) => {
      buffer.push(item);
      wake?.();
    };
    push.end = () => wake?.();
    this.#iterators.add(push);
    const iterators = this.#iterators;
    const isClosed = () => this.#closed;
    return {
      [Symbol.asyncIterator]() { return this; },
      async next() {
        while (buffer.length === 0) {
          if (isClosed() || !iterators.has(push)) return { done: true, value: undefined };
          await new Promise((resolve) => { wake = resolve; });
          wake = null;
        }
        return { done: false, value: buffer.shift() };
      },
      async return() {
        iterators.delete(push);
        wake?.();
        return { done: true, value: undefined };
      },
    };
  }

  subscriber() {
    if (this.#closing) throw new NotAppliedError('the client is closed', { outcome: 'not_applied', reason: 'shutdown' });
    if (!this.#subscriber) {
      this.#subscriber = new Subscriber({
        createRedis: this.#createRedis,
        redisOptions: this.#parsed.redisOptions,
        supervisor: this.#parsed.supervisorConfig,
        seed: this.#parsed.seed ^ 0x9e3779b97f4a7c15n,
      });
      this.#subscriber.link.on('event', (event) => this.emitter.emit('subscriberEvent', event));
    }
    return this.#subscriber;
  }

  // Where the call stands, for the engine: what the driver sees, no judgement.
  #seen(link = this.link) {
    if (this.#closing) return { type: 'shutdown' };
    if (link.conn) return { type: 'connected' };
    return { type: link.health().misconfigured ? 'misconfigured' : 'not_connected' };
  }

  /**
   * Subscribes on the subscriber connection. Waits for it as the call policy
   * says (a subscribe is safe to repeat); a subscription made while there is
   * none is in place once there is one, and its listener gets a `restored`
   * marker then.
   */
  async subscribe(kind, names, listener) {
    const subscriber = this.subscriber();
    const link = subscriber.link;
    this.#seed += 1n;
    const call = new Call(this.#policy, now(), true, this.#seed);
    let input = this.#seen(link);
    for (;;) {
      const decision = call.decide(this.#policy, now(), input);
      if (decision.type === 'queue' || decision.type === 'retry_at') {
        await subscriber.waitReady(decision.until ?? decision.at);
        input = this.#seen(link);
      } else if (decision.type === 'fail' && decision.failure.reason === 'shutdown') {
        throw this.#failure(decision.failure, null, kind === 'channel' ? 'SUBSCRIBE' : 'PSUBSCRIBE');
      } else break;
    }
    return subscriber.subscribe(kind, names, listener);
  }

  /** Runs node-redis method `method(...args)` as one call of the engine's policy. */
  async run(method, args, name, { idempotent, deadline }) {
    this.#stats.calls += 1;
    const safe = idempotent || isReadOnly(name);
    this.#seed += 1n;
    const call = deadline === undefined
      ? new Call(this.#policy, now(), safe, this.#seed)
      : Call.withDeadline(now(), safe, deadline, this.#seed);
    let input = this.#seen();
    let slot = false;
    let pending = null; // the attempt in flight: {conn, promise, replies}
    let last = null; // the last attempt's error and its classification
    let sends = 0;
    let place = null; // the call's place in the queue, kept while it waits
    try {
      for (;;) {
        const decision = call.decide(this.#policy, now(), input);
        // A reply given up on is a failure for the retry budget, once.
        if (input.type === 'no_reply' && decision.type !== 'keep_waiting') this.#budget.onFailure();
        switch (decision.type) {
          case 'send':
          case 'redirect': {
            const conn = this.link.conn;
            if (!conn) {
              input = this.#seen();
              break;
            }
            if (slot) {
              slot = false;
              this.#queued -= 1;
            }
            if (sends > 0) this.#stats.retries += 1;
            sends += 1;
            pending = this.#send(conn, method, args);
          }
          // falls through: wait for the reply of the attempt just sent
          case 'keep_waiting':
            input = await this.#outcome(pending, decision.timeout, (error) => { last = error; });
            if (input.type === 'ok') {
              this.#stats.succeeded += 1;
              return input.value;
            }
            break;
          case 'queue':
            if (!slot) {
              if (this.#queued >= this.#maxQueued) {
                input = { type: 'backlog_full' };
                break;
              }
              slot = true;
              this.#queued += 1;
            }
            place ??= (this.#places += 1);
            await this.#waitForConnection(decision.until, place);
            input = this.#seen();
            break;
          case 'retry_at':
            await this.#until(decision.at);
            input = this.#seen();
            break;
          case 'fail':
            throw this.#failure(decision.failure, last, name);
          default:
            throw new NotAppliedError(`unknown decision ${decision.type}`, { outcome: 'unknown', reason: decision.type, command: name });
        }
      }
    } finally {
      if (slot) this.#queued -= 1;
    }
  }

  #send(conn, method, args) {
    const link = this.link;
    link.inFlight += 1;
    const replies = link.replies;
    let promise;
    try {
      promise = Promise.resolve(conn[method](...args));
    } catch (err) {
      // Thrown before anything was sent (wrong arguments): the caller's own error.
      link.inFlight -= 1;
      throw err;
    }
    const settled = promise.then(
      (value) => {
        link.inFlight -= 1;
        link.activity(conn);
        this.#budget.onSuccess();
        return { type: 'ok', value };
      },
      (error) => {
        link.inFlight -= 1;
        const { kind, delivery } = classifyNodeError(error);
        if (delivery === 'answered') link.activity(conn);
        link.commandFailed(conn, kind);
        return { type: 'error', error, kind, delivery };
      },
    );
    this.#attempts.add(settled);
    settled.finally(() => this.#attempts.delete(settled));
    return { conn, settled, replies };
  }

  // Waits for the attempt's result for at most `timeout` ms; the answer is the call's next input.
  async #outcome(pending, timeout, remember) {
    let cancel = () => {};
    const timedOut = new Promise((resolve) => {
      cancel = at(now() + timeout, () => resolve({ type: 'timeout' }));
    });
    const result = await Promise.race([pending.settled, timedOut]);
    cancel();
    if (result.type === 'ok') return result;
    if (result.type === 'timeout') {
      remember({ error: new Error(`no reply within ${timeout} ms`), kind: 'timeout' });
      const alive = this.link.conn === pending.conn && this.link.replies > pending.replies;
      const budgetAllows = this.#budget.mayRetry;
      return { type: 'no_reply', alive_since_sent: alive || this.link.health().busy_since !== null, budget_allows: budgetAllows };
    }
    remember(result);
    this.#budget.onFailure();
    return { type: 'failed', kind: result.kind, delivery: result.delivery, budget_allows: this.#budget.mayRetry };
  }

  #waitForConnection(until, place) {
    return new Promise((resolve) => {
      const done = () => {
        this.#waiters.delete(done);
        cancel();
        resolve();
      };
      const cancel = at(until, done);
      this.#waiters.set(done, place);
    });
  }

  #until(deadline) {
    return new Promise((resolve) => {
      const done = () => {
        this.#waiters.delete(wakeOnClose);
        cancel();
        resolve();
      };
      const cancel = at(deadline, done);
      // Only a shutdown cuts a retry's wait short.
      const wakeOnClose = () => this.#closing && done();
      this.#waiters.set(wakeOnClose, Infinity);
    });
  }

  #failure(failure, last, name) {
    const { outcome, reason, kind } = failure;
    if (outcome === 'rejected') {
      this.#stats.rejected += 1;
      // The server's own error reply, as node-redis gives it, with the engine's verdict on it.
      if (last?.error instanceof Error) return Object.assign(last.error, { outcome, reason });
    } else if (outcome === 'unknown') this.#stats.unknown += 1;
    else this.#stats.notApplied += 1;
    const Class = outcome === 'unknown' ? OutcomeUnknownError : NotAppliedError;
    const what = outcome === 'unknown' ? 'may have been applied' : 'was not applied';
    return new Class(`${name} ${what}: ${reason}${last?.error?.message ? ` (${last.error.message})` : ''}`, {
      outcome, reason, kind, cause: last?.error, command: name,
    });
  }

  /** Ends gracefully: new calls fail, queued calls fail (not applied), calls in flight finish. */
  async quit() {
    if (this.#closed) return;
    this.#closing = true;
    this.#wake();
    await Promise.allSettled([...this.#attempts]);
    this.close();
  }

  /** Ends now: every connection, timer and probe goes; calls in flight end as their outcome says. */
  close() {
    if (this.#closed) return;
    this.#closing = true;
    this.#closed = true;
    this.#wake();
    this.link.shutdown();
    this.#subscriber?.shutdown();
    // Iterators waiting see the client closed and end.
    for (const push of this.#iterators) push.end();
  }
}
