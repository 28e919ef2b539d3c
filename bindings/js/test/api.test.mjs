// The JavaScript API over the core: shapes, BigInts, round trips.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Backoff, Call, CallPolicy, Supervisor, SyncCursor, retrySafe, killsConnection, failureOutcome, failureName,
  classifyError, classifyErrorCode, connectCause, connectCauseFromFirstBytes,
} from 'relink-redis/engine';

/** Drains pollOutput(now) until timeout or idle. */
function drain(sup, now) {
  const outs = [];
  for (let i = 0; i < 100; i++) {
    const out = sup.pollOutput(now);
    outs.push(out);
    if (out.kind === 'timeout' || out.kind === 'idle') return outs;
  }
  throw new Error('pollOutput never said timeout or idle');
}

test('backoff: reset, attempts, giving up', () => {
  const b = new Backoff({ strategy: 'constant', initial_delay: '250ms', jitter: 'none', max_attempts: 2 }, 0);
  assert.equal(b.nextDelay(0), 250);
  assert.equal(b.nextDelay(250), 250);
  assert.equal(b.nextDelay(500), undefined);
  assert.equal(b.attempts, 2);
  b.reset();
  assert.equal(b.attempts, 0);
  assert.equal(b.nextDelay(0.9), 250, 'fractional ms are truncated');
  const defaults = new Backoff(undefined, crypto.getRandomValues(new BigUint64Array(1))[0]);
  const first = defaults.nextDelay(0);
  assert.ok(first >= 50 && first <= 100, `default first delay ${first}`);
});

test('supervisor: connect, heartbeat, loss, reconnect', () => {
  const config = {
    backoff: { strategy: 'constant', initial_delay: '100ms', jitter: 'none' },
    heartbeat: { interval: '1s', timeout: '500ms', misses_allowed: 0 },
    connect_timeout: '2s',
  };
  const sup = new Supervisor(config, 7n);
  assert.equal(sup.state, 'idle');
  assert.deepEqual(drain(sup, 0), [{ kind: 'idle' }]);

  sup.handleInput(0, { type: 'start' });
  assert.deepEqual(drain(sup, 0), [
    { kind: 'event', value: { type: 'state_changed', from: 'idle', to: 'connecting' } },
    { kind: 'action', value: { type: 'connect', attempt: 1 } },
    { kind: 'timeout', value: 2000 },
  ]);

  sup.handleInput(10, { type: 'connected', attempt: 1 });
  const ready = drain(sup, 10);
  assert.deepEqual(ready.at(-1), { kind: 'timeout', value: 1010 });
  assert.equal(sup.state, 'ready');

  const ping = drain(sup, 1010);
  assert.deepEqual(ping, [
    { kind: 'action', value: { type: 'send_ping', id: 1n } },
    { kind: 'timeout', value: 1510 },
  ]);
  sup.handleInput(1020, { type: 'pong', id: ping[0].value.id });
  drain(sup, 1020);
  const health = sup.health();
  assert.equal(health.state, 'ready');
  assert.equal(health.rtt, 10);
  assert.equal(health.last_failure, null);

  sup.handleInput(1500, { type: 'connection_lost', kind: 'closed' });
  const lost = drain(sup, 1500);
  // A Ready connection's loss is retried at once (no backoff delay first).
  assert.deepEqual(lost, [
    { kind: 'action', value: { type: 'disconnect' } },
    { kind: 'event', value: { type: 'disconnected', cause: 'closed' } },
    { kind: 'event', value: { type: 'state_changed', from: 'ready', to: 'transient_failure' } },
    { kind: 'event', value: { type: 'reconnect_scheduled', attempt: 1, delay: 0 } },
    { kind: 'event', value: { type: 'state_changed', from: 'transient_failure', to: 'connecting' } },
    { kind: 'action', value: { type: 'connect', attempt: 1 } },
    { kind: 'timeout', value: 3500 },
  ]);
  sup.handleInput(1650, { type: 'command_failed', kind: { server_busy: 'loading' } });
  sup.handleInput(1650, { type: 'connected', attempt: 1 });
  assert.deepEqual(drain(sup, 1650).find((o) => o.value?.type === 'reconnected'), {
    kind: 'event', value: { type: 'reconnected', downtime: 150, attempts: 1 },
  });
  sup.handleInput(1700, { type: 'shutdown' });
  assert.deepEqual(drain(sup, 1700).at(-1), { kind: 'idle' });
  assert.equal(sup.state, 'shutdown');
});

test('supervisor: a busy connection is checked from the side, BigInt ids throughout', () => {
  const config = { heartbeat: { interval: '1s', timeout: '500ms', misses_allowed: 0 } };
  const sup = new Supervisor(config, 7n);
  sup.handleInput(0, { type: 'start' });
  drain(sup, 0);
  sup.handleInput(10, { type: 'connected', attempt: 1 });
  drain(sup, 10);
  const [ping] = drain(sup, 1010);
  const { id } = ping.value;
  // Commands were in flight when the PING went out: the core asks for a side check.
  sup.handleInput(1010, { type: 'work_outstanding', id });
  assert.deepEqual(drain(sup, 1010), [
    { kind: 'action', value: { type: 'check_aside', id: 1n } },
    { kind: 'timeout', value: 1510 },
  ]);
  sup.handleInput(1060, { type: 'aside_checked', id, verdict: { type: 'busy' } });
  assert.deepEqual(drain(sup, 1060), [
    { kind: 'event', value: { type: 'busy_confirmed', busy_for: 50 } },
    { kind: 'timeout', value: 2060 },
  ]);
  assert.equal(sup.health().busy_since, 1010);
  // The PING's deadline passes: still Ready. The late pong ends the busy spell.
  drain(sup, 1510);
  assert.equal(sup.state, 'ready');
  sup.handleInput(1800, { type: 'pong', id });
  drain(sup, 1800);
  assert.equal(sup.health().busy_since, null);
  // A half-open connection: the server no longer knows it.
  const [next] = drain(sup, 2800);
  sup.handleInput(2800, { type: 'work_outstanding', id: next.value.id });
  drain(sup, 2800);
  sup.handleInput(2810, { type: 'aside_checked', id: next.value.id, verdict: { type: 'gone' } });
  assert.deepEqual(drain(sup, 2810)[1], { kind: 'event', value: { type: 'disconnected', cause: 'closed' } });
  // Lost, and (a Ready connection) retried at once.
  assert.equal(sup.state, 'connecting');
});

test('supervisor: a wrong password is told, slowed down, and fixed by reconfigured', () => {
  const config = {
    backoff: { strategy: 'constant', initial_delay: '100ms', jitter: 'none' },
    misconfigured_backoff: { strategy: 'constant', initial_delay: '1s', max_delay: '1s', jitter: 'none' },
  };
  const sup = new Supervisor(config, 7n);
  sup.handleInput(0, { type: 'start' });
  drain(sup, 0);
  const reply = 'WRONGPASS invalid username-password pair or user is disabled.';
  const cause = connectCause('WRONGPASS', reply);
  assert.equal(cause, 'auth');
  sup.handleInput(5, { type: 'connect_failed', attempt: 1, cause, evidence: reply });
  const failed = drain(sup, 5);
  assert.deepEqual(failed[0], {
    kind: 'event',
    value: {
      type: 'connect_attempt_failed',
      failure: { attempt: 1, cause: 'auth', evidence: reply },
      misconfigured: true,
      retry_in: 1000,
    },
  });
  const health = sup.health();
  assert.equal(health.misconfigured, true);
  assert.deepEqual(health.last_attempt_failure, { attempt: 1, cause: 'auth', evidence: reply });
  // Commands fail at once rather than wait for a connection that will not come.
  const policy = new CallPolicy();
  const call = new Call(policy, 5, false, 1n);
  assert.deepEqual(call.decide(policy, 5, { type: 'misconfigured' }), {
    type: 'fail', failure: { outcome: 'not_applied', reason: 'misconfigured', kind: null },
  });
  // New credentials: the next attempt goes out at once.
  sup.handleInput(200, { type: 'reconfigured' });
  assert.deepEqual(drain(sup, 200).find((o) => o.kind === 'action'), {
    kind: 'action', value: { type: 'connect', attempt: 2 },
  });
  assert.equal(sup.health().misconfigured, false);
  // The old input shape still works: `kind` for `cause`; evidence optional (null: none).
  sup.handleInput(210, { type: 'connect_failed', attempt: 2, kind: 'io', evidence: null });
  const io = drain(sup, 210)[0].value;
  assert.deepEqual([io.failure, io.misconfigured, io.retry_in], [{ attempt: 2, cause: 'io', evidence: '' }, false, 100]);
  sup.handleInput(310, { type: 'shutdown' });
});

test('connect causes: the core classifies codes, replies and first bytes', () => {
  assert.equal(connectCause('ECONNREFUSED'), 'refused');
  assert.equal(connectCause('ENOTFOUND', 'getaddrinfo ENOTFOUND redis.invalid'), 'unknown_host');
  assert.equal(connectCause('ERR', 'ERR max number of clients reached'), 'server_full');
  assert.equal(connectCause('NOPERM', null), 'no_perm');
  assert.deepEqual(connectCause('LOADING', 'LOADING Redis is loading'), { server_busy: 'loading' });
  assert.equal(connectCauseFromFirstBytes(Buffer.from('HTTP/1.1 400 Bad Request\r\n')), 'not_redis');
  assert.equal(connectCauseFromFirstBytes(new TextEncoder().encode('-DENIED protected mode\r\n')), 'denied');
  assert.equal(connectCauseFromFirstBytes(Buffer.from('+PONG\r\n')), null);
  assert.equal(connectCauseFromFirstBytes(new Uint8Array()), null);
  const sup = new Supervisor(undefined, 1n);
  sup.handleInput(0, { type: 'start' });
  drain(sup, 0);
  sup.handleInput(1, { type: 'connect_failed', attempt: 1, cause: 'not_redis', evidence: 'x'.repeat(500) });
  const { evidence } = sup.health().last_attempt_failure;
  assert.ok(evidence.length <= 120 && evidence.endsWith('…'), evidence);
});

test('sync cursor: BigInts in and out, exact beyond 2^53', () => {
  const epoch = 2n ** 64n - 3n; // an epoch is a random u64: no JS number holds it
  const c = new SyncCursor();
  assert.equal(c.epoch, undefined);
  assert.equal(c.seq, 0n);
  assert.deepEqual(c.resumePlan({ epoch, first: 1n, last: 5n }), { plan: 'full_resync', reason: 'initial' });
  assert.deepEqual(c.offer(epoch, 1n), { verdict: 'apply' });
  assert.equal(c.epoch, epoch);
  assert.deepEqual(c.offer(epoch, 1n), { verdict: 'duplicate' });
  assert.deepEqual(c.offer(epoch, 3n), { verdict: 'gap', expected: 2n, got: 3n });
  assert.deepEqual(c.offer(5n, 2n), { verdict: 'wrong_epoch', expected: epoch, got: 5n });
  assert.deepEqual(c.offer(epoch, 2), { verdict: 'apply' }, 'a safe-integer number is accepted');
  assert.deepEqual(c.resumePlan({ epoch, first: 1n, last: 9n }), { plan: 'incremental', after: 2n });
  assert.deepEqual(c.resumePlan({ epoch, first: null, last: 2n }), { plan: 'up_to_date' });
  assert.deepEqual(c.resumePlan({ epoch, first: 5n, last: 9n }), { plan: 'full_resync', reason: 'trimmed' });
  assert.deepEqual(c.resumePlan({ epoch: 1n, first: 1n, last: 9n }), { plan: 'full_resync', reason: 'epoch_changed' });
  assert.deepEqual(c.resumePlan({ epoch, first: 1n, last: 1n }), { plan: 'full_resync', reason: 'server_behind' });

  const text = JSON.stringify(c);
  assert.equal(text, `{"epoch":"${epoch}","seq":"2"}`);
  const back = SyncCursor.fromJSON(JSON.parse(text));
  assert.equal(back.epoch, epoch);
  assert.equal(back.seq, 2n);
  assert.equal(SyncCursor.fromJSON(text).epoch, epoch, 'JSON text is accepted too');
  assert.deepEqual(SyncCursor.fromJSON({ epoch: 42, seq: 1000 }).toJSON(), { epoch: '42', seq: '1000' });
  assert.deepEqual(new SyncCursor().toJSON(), { epoch: null, seq: '0' });
  const max = SyncCursor.fromJSON({ epoch: 18446744073709551615n, seq: '18446744073709551615' });
  assert.deepEqual(max.toJSON(), { epoch: '18446744073709551615', seq: '18446744073709551615' }, 'u64s exact');
  assert.deepEqual(SyncCursor.fromJSON({ epoch: null, seq: '5' }).toJSON(), { epoch: null, seq: '5' },
    'any position the JSON form can say comes back as it was');
  const at = SyncCursor.at(7n, 10n);
  at.resetTo(8n, 20n);
  assert.deepEqual(at.toJSON(), { epoch: '8', seq: '20' });
});

test('failure kinds: the core answers', () => {
  assert.deepEqual(classifyErrorCode('LOADING'), { server_busy: 'loading' });
  assert.equal(classifyErrorCode('WRONGPASS'), 'auth');
  assert.equal(classifyErrorCode('WRONGTYPE'), 'command');
  assert.equal(killsConnection('io'), true);
  assert.equal(killsConnection('timeout'), false);
  assert.equal(killsConnection({ server_busy: 'read_only' }), true);
  assert.equal(retrySafe('io', 'maybe_sent', false), false, 'an INCR of unknown fate is never retried');
  assert.equal(retrySafe('io', 'maybe_sent', true), true);
  assert.equal(retrySafe(classifyErrorCode('LOADING'), 'answered', false), true);
  assert.equal(failureOutcome('closed', 'not_sent'), 'not_applied');
  assert.equal(failureOutcome('command', 'answered'), 'rejected');
  assert.equal(failureName({ server_busy: 'master_down' }), 'server_busy:master_down');
});

test('classifyError: Node transport codes', () => {
  // A connection that existed and ended.
  for (const code of ['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ENOTCONN', 'ECANCELED', 'ERR_STREAM_DESTROYED']) {
    assert.equal(classifyError(code), 'closed', code);
    assert.equal(classifyErrorCode(code), 'closed', `${code} (classifyErrorCode)`);
  }
  // No connection to speak of: refused, unreachable, unresolvable, out of addresses.
  for (const code of ['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL', 'EPROTO']) {
    assert.equal(classifyError(code), 'io', code);
  }
  assert.equal(classifyError('ETIMEDOUT'), 'timeout');
  for (const code of ['ECONNRESET', 'ECONNREFUSED']) assert.equal(killsConnection(classifyError(code)), true, code);
  assert.equal(retrySafe(classifyError('ECONNRESET'), 'maybe_sent', false), false, 'an INCR cut off is not retried');
  assert.equal(retrySafe(classifyError('ECONNREFUSED'), 'not_sent', false), true);
});

test('classifyError: server error replies, by code or whole message', () => {
  assert.deepEqual(classifyError('LOADING Redis is loading the dataset in memory'), { server_busy: 'loading' });
  assert.deepEqual(classifyError('BUSY Redis is busy running a script.'), { server_busy: 'busy' });
  assert.deepEqual(classifyError('READONLY'), { server_busy: 'read_only' });
  assert.deepEqual(classifyError('MASTERDOWN Link with MASTER is down'), { server_busy: 'master_down' });
  assert.deepEqual(classifyError('TRYAGAIN'), { server_busy: 'try_again' });
  assert.equal(classifyError('NOAUTH Authentication required.'), 'auth');
  assert.equal(classifyError('WRONGPASS invalid username-password pair'), 'auth');
  // Cluster refusals and redirects: answered, not applied, the connection stays.
  assert.deepEqual(classifyError('CLUSTERDOWN The cluster is down'), { server_busy: 'try_again' });
  assert.equal(classifyError('MOVED 3999 127.0.0.1:6381'), 'moved');
  assert.equal(classifyError('ASK 3999 127.0.0.1:6381'), 'moved');
  for (const reply of ['CLUSTERDOWN The cluster is down', 'MOVED 3999 127.0.0.1:6381', 'ASK 3999 127.0.0.1:6381']) {
    const kind = classifyError(reply);
    assert.equal(failureOutcome(kind, 'answered'), 'not_applied', reply);
    assert.equal(killsConnection(kind), false, reply);
  }
  // E and capitals, but Redis's: command errors, never transport.
  assert.equal(classifyError('EXECABORT Transaction discarded because of previous errors.'), 'command');
  assert.equal(classifyError('ERR unknown command'), 'command');
  assert.equal(classifyError('WRONGTYPE Operation against a key holding the wrong kind of value'), 'command');
  assert.equal(classifyError(''), 'command');
});

test('call: a read to a hung server ends at its deadline', () => {
  const policy = new CallPolicy({ response_timeout: '250ms', deadline: '300ms' });
  const call = new Call(policy, 1000, true, 7n);
  assert.equal(call.deadline, 1300);
  assert.deepEqual(call.decide(policy, 1000, { type: 'connected' }), { type: 'send', timeout: 250 });
  const hung = { type: 'failed', kind: 'timeout', delivery: 'maybe_sent', budget_allows: true };
  assert.deepEqual(call.decide(policy, 1250, hung), { type: 'retry_at', at: 1250 });
  assert.equal(call.retries, 1);
  assert.deepEqual(call.decide(policy, 1250.7, { type: 'connected' }), { type: 'send', timeout: 50 });
  const over = {
    type: 'fail',
    failure: { outcome: 'unknown', reason: 'deadline_exceeded', kind: 'timeout' },
  };
  assert.deepEqual(call.decide(policy, 1300, hung), over);
  assert.ok(call.isDone);
  assert.deepEqual(call.decide(policy, 1400, { type: 'connected' }), over, 'over for good');
});

test('call: fail-fast, own deadlines, redirects', () => {
  const failFast = new CallPolicy({ queue_wait: null, max_redirects: 1 });
  const unsent = new Call(failFast, 0, false, 1);
  assert.deepEqual(unsent.decide(failFast, 0, { type: 'not_connected' }), {
    type: 'fail',
    failure: { outcome: 'not_applied', reason: 'not_connected', kind: null },
  });
  const unbounded = Call.withDeadline(0, false, null, 2n ** 64n - 1n);
  assert.equal(unbounded.deadline, undefined);
  const own = Call.withDeadline(10, true, 100, 1);
  assert.equal(own.deadline, 110);
  assert.deepEqual(own.decide(failFast, 10, { type: 'connected' }), { type: 'send', timeout: 100 });
  assert.deepEqual(own.decide(failFast, 20, { type: 'redirected' }), { type: 'redirect', timeout: 90 });
  assert.equal(own.redirects, 1);
  // Missing fields take the defaults (a 10 s deadline); undefined is the default policy.
  const defaults = new CallPolicy();
  assert.equal(new Call(defaults, 0, false, 1).deadline, 10_000);
  assert.equal(new Call(new CallPolicy({ max_retries: 1 }), 0, false, 1).deadline, 10_000);
});
