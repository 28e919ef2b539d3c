// relink-redis against real redis-servers: outages, honest outcomes, the
// bounded queue, Pub/Sub markers, options. Each test that breaks its server
// has a server of its own; every server is stopped by PID in `after`.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createClient, NotAppliedError, OptionsError, OutcomeUnknownError } from 'relink-redis';
import { FaultProxy, RedisServer, freePort, waitFor } from './support.mjs';

// Fast settings, so outages are noticed and ended quickly: a hung server is
// declared dead within 200 + 200 ms of its last reply.
const HEARTBEAT_MS = 200;
const FAST = {
  supervisor: {
    heartbeat: { interval: `${HEARTBEAT_MS}ms`, timeout: `${HEARTBEAT_MS}ms`, misses_allowed: 0 },
    backoff: { initial_delay: '20ms', max_delay: '200ms' },
    connect_timeout: '500ms',
  },
};

const servers = new Set();
const clients = new Set();
after(async () => {
  for (const client of clients) client.close();
  await Promise.all([...servers].map((s) => s.stop()));
});

async function server(args) {
  const s = await RedisServer.start(args);
  servers.add(s);
  return s;
}

function client(url, relink = FAST, extra = {}) {
  const c = createClient({ url, relink, ...extra });
  clients.add(c);
  return c;
}

/** Health events as they come: `{state, from}` in order. */
function recordHealth(c) {
  const seen = [];
  c.on('health', ({ state, from }) => seen.push({ from, state }));
  return seen;
}

function assertChained(events) {
  for (let i = 1; i < events.length; i++) {
    assert.equal(events[i].from, events[i - 1].state, `health events chain: ${JSON.stringify(events)}`);
  }
}

describe('relink-redis over node-redis', () => {
  test('kill -9 and restart: recovers by itself, health events in order', async () => {
    const s = await server();
    const c = client(s.url);
    const health = recordHealth(c);
    await c.connect();
    assert.equal(await c.set('k', 'before'), 'OK');
    await s.kill();
    await waitFor(() => c.state !== 'ready', { what: 'the loss to be noticed' });
    await s.spawn();
    await waitFor(() => c.state === 'ready', { what: 'recovery' });
    // The restarted server lost its data (no persistence): a fresh SET works.
    assert.equal(await c.set('k', 'after'), 'OK');
    assert.equal(await c.get('k'), 'after');
    await c.quit();
    assertChained(health);
    const states = health.map((e) => e.state);
    assert.deepEqual(states.slice(0, 2), ['connecting', 'ready'], JSON.stringify(states));
    assert.equal(states.filter((st) => st === 'ready').length, 2, JSON.stringify(states));
    assert.ok(states.includes('transient_failure') || states.includes('connecting'), JSON.stringify(states));
    assert.equal(states.at(-1), 'shutdown');
    assert.equal(c.stats().reconnects, 1);
  });

  test('SIGSTOP: declared dead within the heartbeat bound, calls end by their deadline', async (t) => {
    const s = await server();
    const c = client(s.url);
    await c.connect();
    await c.set('k', 'v');
    const lastReply = performance.now();
    s.pause();
    try {
      const deadlineMs = 300;
      const started = performance.now();
      const call = c.withDeadline(deadlineMs).get('k');
      await assert.rejects(call, (err) => {
        assert.ok(err instanceof OutcomeUnknownError || err instanceof NotAppliedError, String(err));
        return true;
      });
      const took = performance.now() - started;
      // By its deadline; the slack is for a busy 2-core machine's timers.
      assert.ok(took <= deadlineMs + 150, `the call ended ${took.toFixed(0)} ms after it began`);
      t.diagnostic(`the call ended ${took.toFixed(0)} ms after it began (deadline ${deadlineMs} ms)`);
      await waitFor(() => c.state !== 'ready', { timeout: 5000, what: 'the hung server to be declared dead' });
      const noticed = performance.now() - lastReply;
      // interval + timeout after the last reply, plus timer slack.
      assert.ok(noticed <= 2 * HEARTBEAT_MS + 250, `declared dead ${noticed.toFixed(0)} ms after the last reply`);
      t.diagnostic(`declared dead ${noticed.toFixed(0)} ms after the last reply (bound ${2 * HEARTBEAT_MS} ms)`);
    } finally {
      s.resume();
    }
    await waitFor(() => c.state === 'ready', { what: 'recovery after SIGCONT' });
    assert.equal(await c.get('k'), 'v');
    await c.quit();
  });

  test('INCR loop through a connection killed mid-flight: never applied twice', async (t) => {
    const s = await server();
    const admin = await s.admin();
    const c = client(s.url);
    await c.connect();
    let acknowledged = 0;
    let unknown = 0;
    let notApplied = 0;
    const incr = () => c.incr('counter').then(
      () => { acknowledged += 1; },
      (err) => {
        if (err instanceof OutcomeUnknownError) {
          assert.ok(err.cause, 'an unknown outcome carries its cause');
          unknown += 1;
        } else if (err instanceof NotAppliedError) notApplied += 1;
        else throw err;
      },
    );
    for (let round = 0; round < 20; round++) {
      const batch = Array.from({ length: 50 }, incr);
      if (round === 5 || round === 12) {
        // Kill relink's connection while this batch is in flight.
        await admin.sendCommand(['CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes']);
      }
      await Promise.all(batch);
    }
    const counter = Number(await admin.get('counter'));
    t.diagnostic(`counter ${counter}: ${acknowledged} acknowledged, ${unknown} unknown, ${notApplied} not applied`);
    assert.ok(counter >= acknowledged, `counter ${counter} < acknowledged ${acknowledged}`);
    assert.ok(counter <= acknowledged + unknown, `counter ${counter} > acknowledged ${acknowledged} + unknown ${unknown}`);
    assert.equal(acknowledged + unknown + notApplied, 1000);
    assert.ok(c.stats().reconnects >= 1, 'the kills cost a reconnect');
    await admin.destroy();
    await c.quit();
  });

  test('a GET cut off in flight is retried transparently; an INCR is not', async () => {
    const s = await server();
    const proxy = await FaultProxy.start(s);
    try {
      const c = client(proxy.url);
      await c.connect();
      await c.set('k', 'v');
      proxy.hold();
      const get = c.get('k');
      await waitFor(() => proxy.heldBytes > 0, { what: 'the GET to be written' });
      proxy.cut();
      proxy.release();
      assert.equal(await get, 'v');
      assert.ok(c.stats().retries >= 1);

      proxy.hold();
      const incr = c.incr('n');
      await waitFor(() => proxy.heldBytes > 0, { what: 'the INCR to be written' });
      proxy.cut();
      proxy.release();
      await assert.rejects(incr, (err) => {
        assert.ok(err instanceof OutcomeUnknownError, String(err));
        assert.equal(err.outcome, 'unknown');
        assert.ok(err.cause instanceof Error);
        return true;
      });
      // Declared idempotent, a write is retried the same way.
      proxy.hold();
      const set = c.idempotent().set('k', 'w');
      await waitFor(() => proxy.heldBytes > 0, { what: 'the SET to be written' });
      proxy.cut();
      proxy.release();
      assert.equal(await set, 'OK');
      await c.quit();
    } finally {
      await proxy.close();
    }
  });

  test('the offline queue is bounded, and its calls go out once connected', async () => {
    const port = await freePort();
    const c = client(`redis://127.0.0.1:${port}`, { ...FAST, maxQueued: 2, policy: { queue_wait: '10s', deadline: '20s' } });
    const connected = c.connect();
    const first = c.set('a', '1');
    const second = c.get('a');
    await assert.rejects(c.get('b'), (err) => {
      assert.ok(err instanceof NotAppliedError, String(err));
      assert.equal(err.reason, 'backlog_full');
      return true;
    });
    assert.equal(c.stats().queued, 2);
    const s = RedisServer.at(port);
    servers.add(s);
    await s.spawn();
    await connected;
    assert.equal(await first, 'OK');
    assert.equal(await second, '1');
    await c.quit();
  });

  test('fail-fast with no connection: not applied at once', async () => {
    const port = await freePort();
    const c = client(`redis://127.0.0.1:${port}`, { ...FAST, policy: { queue_wait: null } });
    c.connect().catch(() => {});
    await assert.rejects(c.get('x'), (err) => err instanceof NotAppliedError && err.outcome === 'not_applied');
    c.close();
  });

  test('a queued call ends by its deadline: not applied', async (t) => {
    const port = await freePort();
    const c = client(`redis://127.0.0.1:${port}`);
    c.connect().catch(() => {});
    const started = performance.now();
    await assert.rejects(c.withDeadline(200).get('k'), (err) => {
      assert.ok(err instanceof NotAppliedError, String(err));
      assert.equal(err.outcome, 'not_applied');
      return true;
    });
    const took = performance.now() - started;
    t.diagnostic(`ended ${took.toFixed(0)} ms after it began (deadline 200 ms)`);
    assert.ok(took >= 190 && took <= 200 + 150, `ended after ${took.toFixed(0)} ms`);
    c.close();
  });

  test('quit() during an outage ends connect(), queued calls and subscribes: not applied', async () => {
    const port = await freePort();
    const c = client(`redis://127.0.0.1:${port}`);
    const connecting = c.connect();
    const queued = c.get('k');
    const subscribing = c.subscribe('news', () => {});
    await waitFor(() => c.stats().queued === 1, { what: 'the GET to be queued' });
    const started = performance.now();
    await c.quit();
    const notApplied = (err) => err instanceof NotAppliedError && err.reason === 'shutdown';
    await assert.rejects(connecting, notApplied);
    await assert.rejects(queued, notApplied);
    await assert.rejects(subscribing, notApplied);
    assert.ok(performance.now() - started < 1000, 'nothing waited out its queue time');
    assert.equal(c.state, 'shutdown');
  });

  test('Pub/Sub: a subscription restored after a restart, with its marker', async () => {
    const s = await server();
    const c = client(s.url);
    await c.connect();
    const items = [];
    await c.subscribe('news', (item) => items.push(item));
    const publish = async (message) => {
      const admin = await s.admin();
      try {
        await admin.publish('news', message);
      } finally {
        admin.destroy();
      }
    };
    await publish('one');
    await waitFor(() => items.length === 1, { what: 'the first message' });
    await s.kill();
    await s.spawn();
    await waitFor(() => items.some((i) => i.type === 'restored'), { what: 'the restored marker' });
    await publish('two');
    await waitFor(() => items.length === 3, { what: 'the message after the gap' });
    assert.deepEqual(items.map((i) => i.type), ['message', 'restored', 'message']);
    assert.equal(items[0].message, 'one');
    assert.equal(items[2].message, 'two');
    assert.ok(items[1].gapMs >= 0);
    await c.quit();
  });

  test('a busy connection (BLPOP past the heartbeat bound) is not taken for dead', async () => {
    const s = await server();
    const c = client(s.url);
    const events = [];
    c.on('event', (e) => events.push(e.type));
    await c.connect();
    const blockMs = 6 * HEARTBEAT_MS;
    const started = performance.now();
    assert.equal(await c.blPop('empty-list', blockMs / 1000), null);
    assert.ok(performance.now() - started >= blockMs - 50);
    assert.equal(c.state, 'ready');
    assert.equal(c.stats().reconnects, 0, JSON.stringify(events));
    assert.ok(!events.includes('disconnected'), JSON.stringify(events));
    assert.ok(events.includes('busy_confirmed'), `the engine asked and the side check said busy: ${JSON.stringify(events)}`);
    await c.quit();
  });

  test('a wrong password is a misconfiguration: connect() and calls fail at once', async () => {
    const s = await server(['--requirepass', 'secret']);
    const c = client(s.url, FAST, { password: 'wrong' });
    await assert.rejects(c.connect(), (err) => {
      assert.ok(err instanceof NotAppliedError, String(err));
      assert.equal(err.reason, 'misconfigured');
      assert.match(err.message, /auth/);
      return true;
    });
    assert.equal(c.health().misconfigured, true);
    const started = performance.now();
    await assert.rejects(c.get('k'), (err) => err instanceof NotAppliedError && err.reason === 'misconfigured');
    assert.ok(performance.now() - started < 100, 'failed at once, not after the queue wait');
    c.close();
    const good = client(s.url, FAST, { password: 'secret' });
    await good.connect();
    assert.equal(await good.ping(), 'PONG');
    await good.quit();
  });

  test('health(), stats() and the async iterator of health events', async () => {
    const s = await server();
    const c = client(s.url);
    const iterator = c.events();
    await c.connect();
    assert.equal(c.health().state, 'ready');
    const seen = [];
    for await (const event of iterator) {
      seen.push(event.state);
      if (event.state === 'ready') break;
    }
    assert.deepEqual(seen, ['connecting', 'ready']);
    const stats = c.stats();
    assert.equal(stats.state, 'ready');
    assert.equal(typeof stats.calls, 'number');
    const ended = c.events();
    await c.quit();
    const last = await ended.next();
    assert.equal(last.value?.state, 'shutdown');
    assert.deepEqual(await ended.next(), { done: true, value: undefined });
  });

  test('bad options: each error names its field', () => {
    const field = (options) => {
      try {
        createClient(options);
      } catch (err) {
        assert.ok(err instanceof OptionsError, String(err));
        assert.equal(err.code, 'ERR_RELINK_INVALID_OPTION');
        assert.ok(err.message.includes(err.field), err.message);
        return err.field;
      }
      return assert.fail(`accepted ${JSON.stringify(options)}`);
    };
    assert.equal(field('redis://x'), 'options');
    assert.equal(field({ socket: { reconnectStrategy: () => 100 } }), 'socket.reconnectStrategy');
    assert.equal(field({ pingInterval: 1000 }), 'pingInterval');
    assert.equal(field({ disableOfflineQueue: false }), 'disableOfflineQueue');
    assert.equal(field({ clientSideCache: { ttl: 0, maxEntries: 0 } }), 'clientSideCache');
    assert.equal(field({ url: 6379 }), 'url');
    assert.equal(field({ url: 'http://127.0.0.1:6379' }), 'url');
    assert.equal(field({ relink: { maxQueued: -1 } }), 'relink.maxQueued');
    assert.equal(field({ relink: { hearbeat: {} } }), 'relink.hearbeat');
    assert.equal(field({ relink: { supervisor: { heartbeat: { interval: 'soon' } } } }), 'relink.supervisor.heartbeat.interval');
    assert.equal(field({ relink: { policy: { max_retries: 'x' } } }), 'relink.policy.max_retries');
    assert.equal(field({ relink: { retryBudget: { max_tokens: 0 } } }), 'relink.retryBudget.max_tokens');
    const c = createClient();
    assert.throws(() => c.withDeadline(-1), RangeError);
    // What would escape the call policy or a reconnect is refused by name.
    for (const method of ['multi', 'select', 'duplicate', 'scanIterator']) {
      assert.throws(() => c[method](), (err) => err instanceof TypeError && err.message.includes(method), method);
    }
    assert.equal(c.noSuchCommand, undefined);
    c.close();
  });

  test('quit() leaves nothing open: node exits by itself', async () => {
    const s = await server();
    const script = `
      import { createClient } from 'relink-redis';
      const c = createClient({ url: '${s.url}' });
      await c.connect();
      await c.set('exit', 'yes');
      await c.subscribe('x', () => {});
      await c.quit();
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'inherit', 'inherit'] });
    // A bound, not a wait: a child that never exits is killed, and the
    // exit code below then fails the test.
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    const code = await new Promise((resolve) => { child.on('exit', (c) => resolve(c)); });
    clearTimeout(killer);
    assert.equal(code, 0, 'node exited by itself, with success');
    const admin = await s.admin();
    assert.equal(await admin.get('exit'), 'yes');
    admin.destroy();
  });
});
