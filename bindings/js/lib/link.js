// One connection to Redis, made and kept by node-redis, supervised by the
// engine's Supervisor: it decides when to connect, when to PING, when the
// connection is dead and when to try again. This file executes those
// decisions and reports what happened; it decides nothing itself.
//
// node-redis's own machinery for the same decisions is switched off: no
// reconnectStrategy (a lost connection stays lost until the Supervisor says
// `connect`), no pingInterval, no offline queue, no connect timeout.
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import {
  Supervisor,
  asideVerdictOfNodeError,
  classifyNodeError,
  connectCauseOfNodeError,
} from './engine.js';

export const now = () => performance.now();

// setTimeout's longest delay (2^31 - 1 ms); a farther deadline is reached in steps.
const LONGEST_TIMER = 0x7fffffff;

/** Calls `fn` at `at` (ms on `now()`'s clock); returns a cancel function. */
export function at(deadline, fn) {
  let timer;
  const arm = () => {
    const left = deadline - now();
    if (left <= 0) return fn();
    timer = setTimeout(arm, Math.min(Math.ceil(left), LONGEST_TIMER));
    return undefined;
  };
  timer = setTimeout(arm, Math.min(Math.max(0, Math.ceil(deadline - now())), LONGEST_TIMER));
  return () => clearTimeout(timer);
}

/**
 * Events: 'event' (every Supervisor event, as the engine names it), 'ready'
 * (a connection is up, after `prepare`), 'lost' (the ready connection is gone).
 */
export class Link extends EventEmitter {
  #createRedis;
  #redisOptions;
  #prepare;
  #sup;
  #cancelTimer = null;
  #attempt = null; // the node-redis client of the attempt in flight
  #conn = null; // the ready node-redis client
  #clientId = null; // its CLIENT ID, for checks from the side
  #probes = new Set(); // short-lived side-check clients
  #closed = false;
  /** Replies seen on the ready connection so far: evidence of life for calls waiting on theirs. */
  replies = 0;
  /** Commands written and not yet answered on the ready connection. */
  inFlight = 0;

  constructor({ createRedis, redisOptions, supervisor, seed, prepare }) {
    super();
    this.#createRedis = createRedis;
    this.#redisOptions = redisOptions;
    this.#prepare = prepare;
    this.#sup = supervisor instanceof Supervisor ? supervisor : new Supervisor(supervisor, seed);
  }

  /** The ready node-redis client, or null. */
  get conn() { return this.#conn; }

  get state() { return this.#sup.state; }

  health() { return this.#sup.health(); }

  start() { this.#input({ type: 'start' }); }

  /** A reply came on `conn`. */
  activity(conn) {
    if (conn !== this.#conn) return;
    this.replies += 1;
    this.#input({ type: 'activity' });
  }

  /** A command on `conn` failed with an error the engine classified as `kind`. */
  commandFailed(conn, kind) {
    if (conn !== this.#conn) return;
    this.#input({ type: 'command_failed', kind });
  }

  /** Stops for good: no connection, no timer, no probe is left open. */
  shutdown() {
    if (this.#closed) return;
    this.#input({ type: 'shutdown' });
    this.#closed = true;
    this.#cancelTimer?.();
    this.#cancelTimer = null;
    this.#dropAll();
  }

  #input(input) {
    if (this.#closed) return;
    this.#sup.handleInput(now(), input);
    this.#drive();
  }

  // The run-loop invariant: after every input, drain until timeout or idle.
  #drive() {
    this.#cancelTimer?.();
    this.#cancelTimer = null;
    for (;;) {
      if (this.#closed) return;
      const out = this.#sup.pollOutput(now());
      if (out.kind === 'action') this.#act(out.value);
      else if (out.kind === 'event') this.emit('event', out.value);
      else if (out.kind === 'timeout') {
        this.#cancelTimer = at(out.value, () => this.#drive());
        return;
      } else return;
    }
  }

  #act(action) {
    switch (action.type) {
      case 'connect': this.#connect(action.attempt); break;
      case 'send_ping': this.#ping(action.id); break;
      case 'check_aside': this.#checkAside(action.id); break;
      case 'disconnect': this.#dropAll(); break;
      default: break; // an action of a newer engine: the engine judges by its deadlines
    }
  }

  #options() {
    const options = this.#redisOptions;
    return {
      ...options,
      socket: { ...options.socket, reconnectStrategy: false, connectTimeout: 0 },
      disableOfflineQueue: true,
      pingInterval: 0,
    };
  }

  #connect(attempt) {
    this.#dropAll();
    const conn = this.#createRedis(this.#options());
    this.#attempt = conn;
    // An 'error' listener is required (node-redis re-emits socket errors);
    // only the ready connection's errors are news: an attempt's come
    // through connect()'s rejection.
    conn.on('error', (err) => this.#lost(conn, err));
    conn.on('end', () => this.#lost(conn, null));
    (async () => {
      await conn.connect();
      // A TCP connect is not a Redis that answers: a loading server says
      // so to a PING, and the engine decides what that means.
      await conn.ping();
      this.#clientId = await conn.sendCommand(['CLIENT', 'ID']);
      if (this.#prepare) await this.#prepare(conn);
    })().then(
      () => {
        if (conn !== this.#attempt) return void conn.destroy();
        this.#attempt = null;
        this.#conn = conn;
        this.replies = 0;
        this.inFlight = 0;
        this.emit('ready', conn);
        this.#input({ type: 'connected', attempt });
      },
      (err) => {
        destroy(conn);
        if (conn !== this.#attempt) return;
        this.#attempt = null;
        this.#input({
          type: 'connect_failed',
          attempt,
          cause: connectCauseOfNodeError(err),
          evidence: err?.message ?? null,
        });
      },
    );
  }

  #lost(conn, err) {
    if (conn !== this.#conn) return;
    this.#conn = null;
    destroy(conn);
    this.emit('lost', conn);
    // A close without an error is the peer ending the connection.
    const kind = classifyNodeError(err ?? new Error('connection ended')).kind;
    this.#input({ type: 'connection_lost', kind });
  }

  #ping(id) {
    const conn = this.#conn;
    if (!conn) return;
    const busy = this.inFlight > 0;
    conn.ping().then(
      () => conn === this.#conn && this.#input({ type: 'pong', id }),
      (err) => conn === this.#conn && this.#input({ type: 'ping_failed', id, kind: classifyNodeError(err).kind }),
    );
    // The PING may wait behind those commands: the engine will ask for a look from the side.
    if (busy) this.#input({ type: 'work_outstanding', id });
  }

  #checkAside(id) {
    const conn = this.#conn;
    const clientId = this.#clientId;
    if (!conn || clientId === null) return;
    const probe = this.#createRedis(this.#options());
    this.#probes.add(probe);
    probe.on('error', () => {}); // its failure comes through the promise below
    const report = (verdict) => {
      this.#probes.delete(probe);
      destroy(probe);
      if (conn === this.#conn) this.#input({ type: 'aside_checked', id, verdict });
    };
    (async () => {
      await probe.connect();
      return probe.sendCommand(['CLIENT', 'LIST', 'ID', String(clientId)]);
    })().then(
      (list) => report({ type: String(list ?? '').trim() === '' ? 'gone' : 'busy' }),
      (err) => report(asideVerdictOfNodeError(err)),
    );
  }

  #dropAll() {
    const { conn } = this;
    const attempt = this.#attempt;
    this.#conn = null;
    this.#attempt = null;
    if (conn) {
      destroy(conn);
      this.emit('lost', conn);
    }
    if (attempt) destroy(attempt);
    for (const probe of this.#probes) destroy(probe);
    this.#probes.clear();
  }
}

/** Closes a node-redis client now, whatever its state; its pending commands fail. */
function destroy(client) {
  try {
    if (client.isOpen) client.destroy();
  } catch {
    // Already closed: nothing is left to release.
  }
}
