// A small Redis client over node:net whose reconnects and heartbeats are
// decided by relink's Supervisor (the same engine the native Rust client runs,
// compiled to WebAssembly). It speaks just enough RESP for PING, GET and SET.
//
// The client owns the I/O: sockets, timers, bytes. The Supervisor owns every
// decision: when to connect, when to ping, when a connection is dead, how long
// to wait before the next attempt, when to give up. After every input the
// client drains pollOutput() until it says "timeout" (sleep until then) or
// "idle".
//
//   node bindings/js/examples/node-client.mjs [port]   (a redis-server on 127.0.0.1)

import net from 'node:net';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { webcrypto } from 'node:crypto';
import { Supervisor, classifyError, connectCause } from '../index.mjs';

const now = () => performance.now();

/** A freshly random u64 seed for the backoff jitter. */
export const randomSeed = () => webcrypto.getRandomValues(new BigUint64Array(1))[0];

// ---------------------------------------------------------------- RESP ----

/** RESP encoding of one command: an array of bulk strings. */
export function encodeCommand(args) {
  const parts = [`*${args.length}\r\n`];
  for (const arg of args) {
    const bytes = Buffer.from(String(arg));
    parts.push(`$${bytes.length}\r\n`, bytes, '\r\n');
  }
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));
}

/**
 * Parses one RESP2 reply from `buf` at `pos`: `{value, end}`, or null when the
 * buffer does not hold all of it yet. Error replies become `{error: "..."}`.
 */
export function parseReply(buf, pos = 0) {
  const eol = buf.indexOf('\r\n', pos);
  if (eol < 0) return null;
  const line = buf.toString('utf8', pos + 1, eol);
  const next = eol + 2;
  switch (String.fromCharCode(buf[pos])) {
    case '+': return { value: line, end: next };
    case '-': return { value: { error: line }, end: next };
    case ':': return { value: Number(line), end: next };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, end: next };
      if (buf.length < next + len + 2) return null;
      return { value: buf.toString('utf8', next, next + len), end: next + len + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, end: next };
      const items = [];
      let at = next;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, at);
        if (!item) return null;
        items.push(item.value);
        at = item.end;
      }
      return { value: items, end: at };
    }
    default:
      throw new Error(`protocol error: unexpected byte ${buf[pos]}`);
  }
}

// -------------------------------------------------------------- client ----

/**
 * Events: 'event' (every Supervisor event, e.g. {type: "reconnected", ...}),
 * 'ready', 'reconnected', 'disconnected', 'gave_up'.
 */
export class RelinkClient extends EventEmitter {
  #sup;
  #host;
  #port;
  #socket = null; // the current connection or attempt in flight
  #attempt = 0; // the attempt #socket belongs to
  #connected = false;
  #rx = Buffer.alloc(0);
  #inflight = []; // {resolve, reject, ping?} in send order
  #backlog = []; // commands waiting for a connection
  #maxBacklog;
  #timer = null;
  #closed = false;

  constructor({ host = '127.0.0.1', port = 6379, config, seed = randomSeed(), maxBacklog = 1000 } = {}) {
    super();
    this.#host = host;
    this.#port = port;
    this.#maxBacklog = maxBacklog;
    this.#sup = new Supervisor(config, seed);
  }

  /** "idle", "connecting", "ready", "transient_failure" or "shutdown". */
  get state() { return this.#sup.state; }

  health() { return this.#sup.health(); }

  start() { this.#input({ type: 'start' }); }

  ping() { return this.command('PING'); }
  get(key) { return this.command('GET', key); }
  set(key, value) { return this.command('SET', key, value); }

  /**
   * Sends a command; while there is no connection it waits in a bounded
   * backlog. A command in flight when the connection dies is rejected: its
   * fate is unknown, and only the caller knows whether it is safe to repeat.
   */
  command(...args) {
    if (this.#closed || this.state === 'shutdown') {
      return Promise.reject(Object.assign(new Error('client is shut down'), { code: 'ERR_SHUTDOWN' }));
    }
    return new Promise((resolve, reject) => {
      const cmd = { args, resolve, reject };
      if (this.#connected) this.#send(cmd);
      else if (this.#backlog.length < this.#maxBacklog) this.#backlog.push(cmd);
      else reject(Object.assign(new Error('backlog full while disconnected'), { code: 'ERR_BACKLOG_FULL' }));
    });
  }

  /** Stops for good: closes the connection and fails whatever waits. */
  close() {
    if (this.#closed) return;
    this.#input({ type: 'shutdown' });
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#drop(new Error('client closed'));
    for (const cmd of this.#backlog.splice(0)) cmd.reject(new Error('client closed'));
  }

  // One input, then drain the Supervisor's outputs (its run-loop invariant).
  #input(input) {
    if (this.#closed) return;
    this.#sup.handleInput(now(), input);
    this.#drive();
  }

  #drive() {
    clearTimeout(this.#timer);
    this.#timer = null;
    for (;;) {
      const out = this.#sup.pollOutput(now());
      if (out.kind === 'action') this.#act(out.value);
      else if (out.kind === 'event') this.#report(out.value);
      else if (out.kind === 'timeout') {
        const delay = Math.max(0, out.value - now());
        this.#timer = setTimeout(() => this.#drive(), Math.ceil(delay));
        return;
      } else return; // idle: nothing scheduled
    }
  }

  #act(action) {
    switch (action.type) {
      case 'connect': return this.#connect(action.attempt);
      case 'send_ping': return this.#send({ args: ['PING'], ping: action.id });
      case 'disconnect': return this.#drop(new Error('connection dropped by the supervisor'));
      default: return undefined; // a newer core's action this example does not know
    }
  }

  #report(event) {
    this.emit('event', event);
    if (event.type === 'connected' || event.type === 'reconnected') {
      this.emit(event.type === 'connected' ? 'ready' : 'reconnected', event);
      for (const cmd of this.#backlog.splice(0)) this.#send(cmd);
    } else if (event.type === 'disconnected') this.emit('disconnected', event);
    else if (event.type === 'gave_up') {
      this.emit('gave_up', event);
      for (const cmd of this.#backlog.splice(0)) cmd.reject(new Error('gave up reconnecting'));
    }
  }

  #connect(attempt) {
    this.#drop(new Error('replaced by a new attempt'));
    const socket = net.connect({ host: this.#host, port: this.#port });
    socket.setNoDelay(true);
    this.#socket = socket;
    this.#attempt = attempt;
    let failure = null;
    socket.on('connect', () => {
      if (socket !== this.#socket) return;
      this.#connected = true;
      this.#input({ type: 'connected', attempt });
    });
    socket.on('data', (chunk) => socket === this.#socket && this.#receive(chunk));
    socket.on('error', (err) => { failure = err; });
    socket.on('close', () => {
      if (socket !== this.#socket) return; // dropped on purpose
      const wasConnected = this.#connected;
      this.#forget(new Error(`connection lost${failure ? `: ${failure.message}` : ''}`));
      // The core reads Node's error code (ECONNRESET, ECONNREFUSED, ...); a
      // close without an error is the peer ending the connection.
      const code = failure ? String(failure.code ?? failure.message) : '';
      if (wasConnected) {
        this.#input({ type: 'connection_lost', kind: failure ? classifyError(code) : 'closed' });
      } else {
        const cause = failure ? connectCause(code, failure.message) : 'closed';
        this.#input({ type: 'connect_failed', attempt, cause, evidence: failure?.message ?? '' });
      }
    });
  }

  #send(cmd) {
    this.#inflight.push(cmd);
    this.#socket.write(encodeCommand(cmd.args));
  }

  #receive(chunk) {
    const socket = this.#socket;
    this.#rx = this.#rx.length ? Buffer.concat([this.#rx, chunk]) : chunk;
    let pos = 0;
    for (;;) {
      let reply;
      try {
        reply = parseReply(this.#rx, pos);
      } catch (err) {
        this.#drop(err);
        this.#input({ type: 'connection_lost', kind: 'protocol' });
        return;
      }
      if (!reply) break;
      pos = reply.end;
      const cmd = this.#inflight.shift();
      const { value } = reply;
      if (value && typeof value === 'object' && 'error' in value) {
        // Error replies are classified by the core from their code.
        const kind = classifyError(value.error);
        cmd?.reject(Object.assign(new Error(value.error), { kind }));
        this.#input({ type: 'command_failed', kind });
      } else if (cmd && cmd.ping !== undefined) {
        this.#input({ type: 'pong', id: cmd.ping });
      } else {
        cmd?.resolve(value);
        // Any reply is evidence of life: no PING needed on a busy connection.
        this.#input({ type: 'activity' });
      }
      if (this.#socket !== socket) return; // an input above dropped the connection
    }
    this.#rx = this.#rx.subarray(pos);
  }

  // Drops the current connection or attempt on purpose: its events are ignored.
  #drop(reason) {
    const socket = this.#socket;
    this.#forget(reason);
    socket?.destroy();
  }

  #forget(reason) {
    this.#socket = null;
    this.#connected = false;
    this.#rx = Buffer.alloc(0);
    for (const cmd of this.#inflight.splice(0)) {
      if (cmd.ping === undefined) cmd.reject(Object.assign(reason, { code: 'ERR_CONNECTION_LOST' }));
    }
  }
}

// Run directly: connect, SET/GET once a second, report what the Supervisor sees.
if (import.meta.url === `file://${process.argv[1]}`) {
  const port = Number(process.argv[2] ?? 6379);
  const client = new RelinkClient({ port });
  client.on('event', (e) => console.log('event', JSON.stringify(e)));
  client.start();
  let n = 0;
  setInterval(async () => {
    try {
      await client.set('relink:example', String(++n));
      console.log('GET ->', await client.get('relink:example'));
    } catch (err) {
      console.log('command failed:', err.message);
    }
  }, 1000);
}
