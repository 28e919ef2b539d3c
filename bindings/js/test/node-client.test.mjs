// The example Node client against a real redis-server that is killed
// (SIGKILL) and restarted on the same port: the client, steered by the wasm
// Supervisor, must notice, reconnect on its own, and serve commands again.
//
// REDIS_SERVER is the redis-server binary (xtask passes it; default: on PATH).
// Every server this file starts is killed by PID in after(), whatever happened,
// and every wait is bounded.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { RelinkClient, encodeCommand, parseReply } from '../examples/node-client.mjs';

const REDIS_SERVER = process.env.REDIS_SERVER || 'redis-server';
const servers = new Set();
const dir = mkdtempSync(join(tmpdir(), 'relink-js-'));

after(() => {
  for (const server of servers) killServer(server);
  rmSync(dir, { recursive: true, force: true });
});
// Last resort if the runner is torn down without hooks.
process.on('exit', () => { for (const server of servers) killServer(server); });

function killServer(server) {
  if (server.exitCode === null && server.signalCode === null) {
    try { process.kill(server.pid, 'SIGKILL'); } catch { /* already gone */ }
  }
}

/** Rejects with `what` if `promise` has not settled within `ms`. */
async function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `cond()` holds, looking every 10 ms, for at most `ms`. */
async function until(ms, what, cond) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await sleep(10);
  }
}

async function freePort() {
  const probe = net.createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address();
  probe.close();
  await once(probe, 'close');
  return port;
}

/** One PING over a fresh connection: true when the server answers PONG. */
function pingOnce(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    const done = (ok) => { socket.destroy(); resolve(ok); };
    socket.setTimeout(500, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write(encodeCommand(['PING'])));
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const reply = parseReply(buf);
      if (reply) done(reply.value === 'PONG');
    });
  });
}

/** Starts redis-server on `port` and waits (bounded) until it answers PING. */
async function startServer(port) {
  const server = spawn(
    REDIS_SERVER,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  servers.add(server);
  let log = '';
  server.stdout.on('data', (d) => { log += d; });
  server.stderr.on('data', (d) => { log += d; });
  const spawnError = new Promise((resolve) => server.once('error', resolve));
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const failed = await Promise.race([spawnError, sleep(0).then(() => null)]);
    if (failed) throw new Error(`cannot start ${REDIS_SERVER}: ${failed.message}`);
    if (server.exitCode !== null) throw new Error(`redis-server exited (${server.exitCode}):\n${log}`);
    if (await pingOnce(port)) return server;
    await sleep(50);
  }
  throw new Error(`redis-server on port ${port} not ready within 10 s:\n${log}`);
}

async function stopServer(server) {
  killServer(server);
  if (server.exitCode === null && server.signalCode === null) {
    await within(5000, 'redis-server to exit after SIGKILL', once(server, 'exit'));
  }
}

test('node-client rides out a redis-server restart', { timeout: 60_000 }, async () => {
  const port = await freePort();
  let server = await startServer(port);
  const client = new RelinkClient({
    port,
    seed: 42n,
    config: {
      backoff: { initial_delay: '20ms', max_delay: '200ms', jitter: 'equal' },
      heartbeat: { interval: '200ms', timeout: '200ms', misses_allowed: 0 },
      connect_timeout: '500ms',
    },
  });
  const events = [];
  client.on('event', (e) => events.push(e));
  try {
    const ready = once(client, 'ready');
    client.start();
    await within(5000, 'first connection', ready);
    assert.equal(await within(2000, 'SET', client.set('relink:k', 'v1')), 'OK');
    assert.equal(await within(2000, 'GET', client.get('relink:k')), 'v1');

    // Quiet for a while: the Supervisor asks for heartbeat PINGs, answered.
    await until(5000, 'a heartbeat PING answered', () => client.health().rtt !== null);
    assert.equal(client.state, 'ready');

    const disconnected = once(client, 'disconnected');
    await stopServer(server);
    await within(5000, 'the client to notice the dead server', disconnected);
    assert.notEqual(client.state, 'ready');
    // Commands issued during the outage wait in the backlog.
    const during = client.set('relink:k', 'v2');

    // A few refused attempts, spaced by the backoff, before the server is back.
    await until(5000, 'two reconnect attempts scheduled', () =>
      events.filter((e) => e.type === 'reconnect_scheduled').length >= 2);
    const reconnected = once(client, 'reconnected');
    server = await startServer(port);
    const [event] = await within(10_000, 'reconnection on its own', reconnected);
    assert.equal(event.type, 'reconnected');
    assert.ok(event.attempts >= 1);
    assert.equal(client.state, 'ready');

    assert.equal(await within(2000, 'the SET issued during the outage', during), 'OK');
    assert.equal(await within(2000, 'GET after restart', client.get('relink:k')), 'v2');
    assert.equal(await within(2000, 'PING after restart', client.ping()), 'PONG');

    const types = events.map((e) => e.type);
    assert.ok(types.includes('connected'), types.join());
    assert.ok(types.includes('disconnected'), types.join());
    assert.ok(types.includes('reconnect_scheduled'), types.join());
    assert.ok(types.includes('reconnected'), types.join());
  } finally {
    client.close();
    for (const s of servers) await stopServer(s);
  }
});
