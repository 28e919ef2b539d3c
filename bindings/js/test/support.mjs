// Spawned redis-servers for the tests: each on a free loopback port, with its
// own directory and log, stopped by PID. Readiness and every other wait is a
// bounded poll of a condition, never a fixed sleep.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient as createRedis } from 'redis';

const REDIS_SERVER = process.env.REDIS_SERVER ?? 'redis-server';

/** A port nothing listens on right now (bind 127.0.0.1:0, then close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Polls `condition` every `every` ms until it returns truthy; fails after `timeout` ms. */
export async function waitFor(condition, { timeout = 10_000, every = 10, what = 'condition' } = {}) {
  const started = Date.now();
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() - started > timeout) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((resolve) => { setTimeout(resolve, every); });
  }
}

/** One redis-server process of a test's own. */
export class RedisServer {
  constructor(port, dir, args = []) {
    this.port = port;
    this.dir = dir;
    this.args = args;
    this.process = null;
    this.url = `redis://127.0.0.1:${port}`;
  }

  /** A server for `port` with a directory of its own, not started yet. */
  static at(port, args = []) {
    return new RedisServer(port, mkdtempSync(join(tmpdir(), 'relink-js-')), args);
  }

  /** `args`: more redis-server arguments (`['--requirepass', 'secret']`). */
  static async start(args = []) {
    const server = RedisServer.at(await freePort(), args);
    try {
      await server.spawn();
    } catch (err) {
      // Not ready in time: the process goes now, since no `after` hook knows of it.
      await server.stop();
      throw err;
    }
    return server;
  }

  get pid() { return this.process?.pid; }

  /** Starts (again, on the same port) and waits until it answers PING. */
  async spawn() {
    this.process = spawn(REDIS_SERVER, [
      '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', this.dir, '--logfile', join(this.dir, 'redis.log'), ...this.args,
    ], { stdio: 'ignore' });
    const child = this.process;
    child.exited = new Promise((resolve) => { child.once('exit', resolve); });
    await waitFor(async () => {
      const probe = createRedis({ url: this.url, password: this.password(), socket: { reconnectStrategy: false } });
      probe.on('error', () => {});
      try {
        await probe.connect();
        await probe.ping();
        return true;
      } catch {
        return false;
      } finally {
        if (probe.isOpen) probe.destroy();
      }
    }, { timeout: 10_000, what: `redis-server on ${this.port} (log: ${this.log()})` });
  }

  /** The password given with `--requirepass`, if any. */
  password() {
    const at = this.args.indexOf('--requirepass');
    return at < 0 ? undefined : this.args[at + 1];
  }

  log() {
    try {
      return readFileSync(join(this.dir, 'redis.log'), 'utf8').slice(-2000);
    } catch {
      return '(no log)';
    }
  }

  /** kill -9, and wait for the process to be gone. */
  async kill() {
    const child = this.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    process.kill(child.pid, 'SIGKILL');
    await child.exited;
  }

  pause() { process.kill(this.pid, 'SIGSTOP'); }

  resume() { process.kill(this.pid, 'SIGCONT'); }

  /** For `after` hooks: the process goes (resumed first if paused), the directory too. */
  async stop() {
    try {
      if (this.process && this.process.exitCode === null) process.kill(this.pid, 'SIGCONT');
    } catch {
      // Already gone.
    }
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** A plain node-redis client to the server, for looking from the side. */
  async admin() {
    const client = createRedis({ url: this.url, socket: { reconnectStrategy: false } });
    client.on('error', () => {});
    await client.connect();
    return client;
  }
}

/**
 * A TCP proxy in front of a server, for faults the server cannot make: hold
 * (bytes from clients are kept back: a command is written and gets no reply)
 * and cut (every connection through it is destroyed at once).
 */
export class FaultProxy {
  #server;
  #pairs = new Set();
  #held = false;
  /** Bytes kept back while held. */
  heldBytes = 0;

  static async start(target) {
    const proxy = new FaultProxy();
    proxy.#server = net.createServer((client) => proxy.#accept(client, target));
    await new Promise((resolve) => { proxy.#server.listen(0, '127.0.0.1', resolve); });
    proxy.port = proxy.#server.address().port;
    proxy.url = `redis://127.0.0.1:${proxy.port}`;
    return proxy;
  }

  #accept(client, target) {
    const upstream = net.connect({ host: '127.0.0.1', port: target.port });
    const pair = { client, upstream };
    this.#pairs.add(pair);
    const end = () => {
      this.#pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    upstream.on('data', (chunk) => client.write(chunk));
    client.on('data', (chunk) => {
      if (this.#held) this.heldBytes += chunk.length;
      else upstream.write(chunk);
    });
  }

  hold() { this.#held = true; this.heldBytes = 0; }

  release() { this.#held = false; }

  cut() {
    for (const { client, upstream } of this.#pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.#pairs.clear();
  }

  close() {
    this.cut();
    return new Promise((resolve) => { this.#server.close(() => resolve()); });
  }
}
