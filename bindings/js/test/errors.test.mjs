// Bad input from JavaScript: a JS Error with a `code`, naming the field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Backoff, Call, CallPolicy, Supervisor, SyncCursor, retrySafe, killsConnection, classifyError,
  classifyErrorCode, connectCause, connectCauseFromFirstBytes,
} from 'relink-redis/engine';

const CONFIG = 'ERR_RELINK_INVALID_CONFIG';
const ARGUMENT = 'ERR_RELINK_INVALID_ARGUMENT';

/** Asserts that `fn` throws an Error with `code` whose message mentions every one of `names`. */
function throwsNaming(fn, code, ...names) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof Error, `an Error, got ${err}`);
    assert.equal(err.code, code, err.message);
    for (const name of names) assert.match(err.message, new RegExp(`\\b${name}\\b`), err.message);
    return true;
  });
}

test('backoff policy: wrong types name the field', () => {
  throwsNaming(() => new Backoff({ initial_delay: 100 }, 1n), CONFIG, 'initial_delay');
  throwsNaming(() => new Backoff({ multiplier: 'two' }, 1n), CONFIG, 'multiplier');
  throwsNaming(() => new Backoff({ jitter: 'lots' }, 1n), CONFIG, 'jitter');
  throwsNaming(() => new Backoff({ max_attempts: 'many' }, 1n), CONFIG, 'max_attempts');
  throwsNaming(() => new Backoff('100ms', 1n), CONFIG, 'policy');
});

test('backoff policy: negative and nonsensical values name the field', () => {
  throwsNaming(() => new Backoff({ initial_delay: '-5ms' }, 1n), CONFIG, 'initial_delay', 'negative');
  throwsNaming(() => new Backoff({ max_elapsed: '-1s' }, 1n), CONFIG, 'max_elapsed');
  throwsNaming(() => new Backoff({ max_delay: '10ms' }, 1n), CONFIG, 'max_delay');
  throwsNaming(() => new Backoff({ max_attempts: -1 }, 1n), CONFIG, 'max_attempts');
  throwsNaming(() => new Backoff({ multiplier: 0.5 }, 1n), CONFIG, 'multiplier');
});

test('backoff policy: missing and unknown fields name the field', () => {
  throwsNaming(() => new Backoff({ strategy: 'linear' }, 1n), CONFIG, 'step');
  throwsNaming(() => new Backoff({ initial_dely: '1s' }, 1n), CONFIG, 'initial_dely');
  const err = (() => { try { new Backoff({ max_delay: 5000 }, 1n); } catch (e) { return e; } })();
  assert.equal(err.field, 'policy.max_delay');
});

test('seed and times are checked, never coerced', () => {
  throwsNaming(() => new Backoff(undefined), ARGUMENT, 'seed');
  throwsNaming(() => new Backoff(undefined, -1n), ARGUMENT, 'seed');
  throwsNaming(() => new Backoff(undefined, 2n ** 64n), ARGUMENT, 'seed');
  throwsNaming(() => new Backoff(undefined, 1.5), ARGUMENT, 'seed');
  throwsNaming(() => new Backoff(undefined, '7'), ARGUMENT, 'seed');
  const b = new Backoff(undefined, 2n ** 64n - 1n);
  throwsNaming(() => b.nextDelay(-1), ARGUMENT, 'elapsedMs');
  throwsNaming(() => b.nextDelay('5'), ARGUMENT, 'elapsedMs');
  throwsNaming(() => b.nextDelay(NaN), ARGUMENT, 'elapsedMs');
  const s = new Supervisor(undefined, 1n);
  throwsNaming(() => s.handleInput(-5, { type: 'start' }), ARGUMENT, 'nowMs');
  throwsNaming(() => s.pollOutput(null), ARGUMENT, 'nowMs');
  throwsNaming(() => s.pollOutput(2 ** 53), ARGUMENT, 'nowMs');
});

test('supervisor config: nested fields are named by their path', () => {
  throwsNaming(() => new Supervisor({ heartbeat: { interval: 1000 } }, 1n), CONFIG, 'heartbeat.interval');
  throwsNaming(() => new Supervisor({ heartbeat: { interval: '0s' } }, 1n), CONFIG, 'heartbeat.interval');
  throwsNaming(() => new Supervisor({ connect_timeout: '-2s' }, 1n), CONFIG, 'connect_timeout', 'negative');
  throwsNaming(() => new Supervisor({ backoff: { max_delay: '1ms' } }, 1n), CONFIG, 'backoff', 'max_delay');
  throwsNaming(() => new Supervisor({ heartbeat: { misses_allowed: -1 } }, 1n), CONFIG, 'misses_allowed');
  throwsNaming(() => new Supervisor({ heartbeat: { period: '1s' } }, 1n), CONFIG, 'period');
  throwsNaming(() => new Supervisor({ reconnect: true }, 1n), CONFIG, 'reconnect');
});

test('supervisor inputs: unknown types and missing fields are refused', () => {
  const s = new Supervisor(undefined, 1n);
  throwsNaming(() => s.handleInput(0, { type: 'restart' }), ARGUMENT, 'input', 'restart');
  throwsNaming(() => s.handleInput(0, { type: 'connected' }), ARGUMENT, 'input', 'attempt');
  throwsNaming(() => s.handleInput(0, { type: 'connect_failed', attempt: 1 }), ARGUMENT, 'input', 'cause');
  throwsNaming(() => s.handleInput(0, { type: 'connect_failed', attempt: 1, cause: 'gremlins' }),
    ARGUMENT, 'input', 'gremlins');
  throwsNaming(() => s.handleInput(0, { type: 'connect_failed', attempt: 1, cause: 'auth', evidence: 42 }),
    ARGUMENT, 'input', 'evidence');
  throwsNaming(() => s.handleInput(0, { type: 'connection_lost', kind: 'gremlins' }), ARGUMENT, 'input', 'gremlins');
  throwsNaming(() => s.handleInput(0, 'start'), ARGUMENT, 'input');
  throwsNaming(() => s.handleInput(0, { type: 'work_outstanding' }), ARGUMENT, 'input', 'id');
  throwsNaming(() => s.handleInput(0, { type: 'aside_checked', id: 1n }), ARGUMENT, 'input', 'verdict');
  throwsNaming(() => s.handleInput(0, { type: 'aside_checked', id: 1n, verdict: { type: 'maybe' } }),
    ARGUMENT, 'input', 'maybe');
  throwsNaming(() => s.handleInput(0, { type: 'aside_checked', id: 1n, verdict: { type: 'unreachable' } }),
    ARGUMENT, 'input', 'kind');
  assert.equal(s.state, 'idle', 'refused inputs change nothing');
});

test('sync cursor: u64s must be exact', () => {
  const c = new SyncCursor();
  throwsNaming(() => c.offer(1n, -1n), ARGUMENT, 'seq');
  throwsNaming(() => c.offer(2 ** 60, 1n), ARGUMENT, 'epoch');
  throwsNaming(() => c.offer(1.5, 1n), ARGUMENT, 'epoch');
  throwsNaming(() => c.resumePlan({ epoch: 1n, first: 1n }), ARGUMENT, 'last');
  throwsNaming(() => c.resumePlan({ epoch: 'one', first: null, last: 1n }), ARGUMENT, 'epoch');
  throwsNaming(() => SyncCursor.fromJSON({ epoch: '1' }), ARGUMENT, 'seq');
  throwsNaming(() => SyncCursor.fromJSON({ epoch: '1', seq: '2', extra: 3 }), ARGUMENT, 'extra');
  throwsNaming(() => SyncCursor.fromJSON({ epoch: '-1', seq: '2' }), ARGUMENT, 'epoch');
  throwsNaming(() => SyncCursor.fromJSON({ epoch: null, seq: '18446744073709551616' }), ARGUMENT, 'seq');
  throwsNaming(() => SyncCursor.fromJSON('{not json'), ARGUMENT, 'json');
});

test('failure helpers: kinds and deliveries are checked', () => {
  throwsNaming(() => killsConnection('gremlins'), ARGUMENT, 'kind');
  throwsNaming(() => killsConnection({ server_busy: 'gremlins' }), ARGUMENT, 'kind');
  throwsNaming(() => killsConnection({ server_busy: 'loading', also: 1 }), ARGUMENT, 'kind');
  throwsNaming(() => killsConnection('server_busy:loading'), ARGUMENT, 'kind');
  throwsNaming(() => retrySafe('io', 'sent', false), ARGUMENT, 'delivery');
  throwsNaming(() => retrySafe('io', 'maybe_sent', 'yes'), ARGUMENT, 'idempotent');
  throwsNaming(() => classifyErrorCode(42), ARGUMENT, 'code');
  throwsNaming(() => classifyError(undefined), ARGUMENT, 'codeOrMessage');
  throwsNaming(() => classifyError({ code: 'ECONNRESET' }), ARGUMENT, 'codeOrMessage');
});

test('connect causes: wrong JS types name the argument', () => {
  throwsNaming(() => connectCause(undefined), ARGUMENT, 'code');
  throwsNaming(() => connectCause(111, 'refused'), ARGUMENT, 'code');
  throwsNaming(() => connectCause('ERR', { text: 'max number of clients' }), ARGUMENT, 'message');
  throwsNaming(() => connectCauseFromFirstBytes('HTTP/1.1 400'), ARGUMENT, 'bytes');
  throwsNaming(() => connectCauseFromFirstBytes([45, 69]), ARGUMENT, 'bytes');
  throwsNaming(() => connectCauseFromFirstBytes(undefined), ARGUMENT, 'bytes');
});

test('call policy: bad fields are named by their path', () => {
  throwsNaming(() => new CallPolicy({ queue_wait: '0s' }), CONFIG, 'queue_wait');
  throwsNaming(() => new CallPolicy({ max_retries: 101 }), CONFIG, 'max_retries');
  throwsNaming(() => new CallPolicy({ response_timeout: 250 }), CONFIG, 'response_timeout');
  throwsNaming(() => new CallPolicy({ deadline: '-1s' }), CONFIG, 'deadline', 'negative');
  throwsNaming(() => new CallPolicy({ busy_backoff: { max_delay: '1ms' } }), CONFIG, 'busy_backoff', 'max_delay');
  throwsNaming(() => new CallPolicy({ retries: 3 }), CONFIG, 'retries');
  const err = (() => { try { new CallPolicy({ max_redirects: 1000 }); } catch (e) { return e; } })();
  assert.equal(err.field, 'policy.max_redirects');
  const nested = (() => { try { new CallPolicy({ busy_backoff: { intial_delay: '1ms' } }); } catch (e) { return e; } })();
  assert.equal(nested.field, 'policy.busy_backoff.intial_delay', 'an unknown nested field, by its whole path');
});

test('call: times, flags, seeds and inputs are checked, never coerced', () => {
  const policy = new CallPolicy();
  throwsNaming(() => new Call(policy, -1, false, 1n), ARGUMENT, 'nowMs');
  throwsNaming(() => new Call(policy, 0, 'yes', 1n), ARGUMENT, 'idempotent');
  throwsNaming(() => new Call(policy, 0, false, -1n), ARGUMENT, 'seed');
  throwsNaming(() => Call.withDeadline(0, false, -5, 1n), ARGUMENT, 'deadlineMs');
  const call = new Call(policy, 0, false, 1n);
  throwsNaming(() => call.decide(policy, NaN, { type: 'connected' }), ARGUMENT, 'nowMs');
  throwsNaming(() => call.decide(policy, 0, { type: 'reconnected' }), ARGUMENT, 'input', 'reconnected');
  throwsNaming(() => call.decide(policy, 0, { type: 'failed', kind: 'io' }), ARGUMENT, 'input', 'delivery');
  throwsNaming(() => call.decide(policy, 0, 'connected'), ARGUMENT, 'input');
  throwsNaming(() => call.decide(policy, 0, { type: 'misconfigure' }), ARGUMENT, 'input', 'misconfigure');
  assert.throws(() => call.decide({ queue_wait: null }, 0, { type: 'connected' }), 'a policy made with new CallPolicy');
  assert.equal(call.isDone, false, 'refused inputs change nothing');
});
