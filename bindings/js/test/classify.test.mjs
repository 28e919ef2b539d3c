// The one classifier of the JavaScript driver: Node's and node-redis's
// errors, read by the engine (relink-wasm's classify.rs), not by JS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ClientClosedError, ClientOfflineError, ConnectionTimeoutError, DisconnectsClientError, ErrorReply,
  SimpleError, SocketClosedUnexpectedlyError, SocketTimeoutError,
} from 'redis';
import {
  asideVerdictOfNodeError, classifyErrorCode, classifyNodeError, connectCauseOfNodeError, isReadOnly,
} from 'relink-redis/engine';

const nodeError = (code, message = code) => Object.assign(new Error(message), { code });

test('classifyErrorCode: ECONNRESET is a closed connection, not a command error', () => {
  assert.equal(classifyErrorCode('ECONNRESET'), 'closed');
});

test('Node socket errors, by their code: delivery unknown', () => {
  const cases = [
    ['ECONNRESET', 'closed'], ['EPIPE', 'closed'], ['ECONNREFUSED', 'io'], ['ETIMEDOUT', 'timeout'],
  ];
  for (const [code, kind] of cases) {
    assert.deepEqual(classifyNodeError(nodeError(code, `write ${code}`)), { kind, delivery: 'maybe_sent' }, code);
  }
});

test("node-redis's error classes", () => {
  assert.deepEqual(classifyNodeError(new SocketClosedUnexpectedlyError()), { kind: 'closed', delivery: 'maybe_sent' });
  assert.deepEqual(classifyNodeError(new DisconnectsClientError()), { kind: 'closed', delivery: 'maybe_sent' });
  assert.deepEqual(classifyNodeError(new ClientOfflineError()), { kind: 'closed', delivery: 'not_sent' });
  assert.deepEqual(classifyNodeError(new ClientClosedError()), { kind: 'closed', delivery: 'not_sent' });
  assert.deepEqual(classifyNodeError(new ConnectionTimeoutError()), { kind: 'timeout', delivery: 'not_sent' });
  assert.deepEqual(classifyNodeError(new SocketTimeoutError(100)), { kind: 'timeout', delivery: 'maybe_sent' });
});

test('server error replies: answered, the kind from their code', () => {
  assert.deepEqual(classifyNodeError(new SimpleError('ERR unknown command')), { kind: 'command', delivery: 'answered' });
  assert.deepEqual(classifyNodeError(new SimpleError('WRONGTYPE Operation against a key')), { kind: 'command', delivery: 'answered' });
  assert.deepEqual(classifyNodeError(new ErrorReply('LOADING Redis is loading')), { kind: { server_busy: 'loading' }, delivery: 'answered' });
  assert.deepEqual(classifyNodeError(new SimpleError('READONLY You cannot write')), { kind: { server_busy: 'read_only' }, delivery: 'answered' });
  assert.deepEqual(classifyNodeError(new SimpleError('NOAUTH Authentication required.')), { kind: 'auth', delivery: 'answered' });
  // An ordinary Error with nothing known: the connection and the command's fate are in doubt.
  assert.deepEqual(classifyNodeError(new Error('???')), { kind: 'protocol', delivery: 'maybe_sent' });
});

test('connect causes and side-check verdicts', () => {
  assert.equal(connectCauseOfNodeError(nodeError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:1')), 'refused');
  assert.equal(connectCauseOfNodeError(nodeError('ENOTFOUND', 'getaddrinfo ENOTFOUND nowhere')), 'unknown_host');
  assert.equal(connectCauseOfNodeError(new SimpleError('WRONGPASS invalid username-password pair')), 'auth');
  assert.equal(connectCauseOfNodeError(new ConnectionTimeoutError()), 'timeout');
  assert.deepEqual(asideVerdictOfNodeError(new SimpleError('BUSY Redis is busy running a script')), { type: 'busy' });
  assert.deepEqual(asideVerdictOfNodeError(nodeError('ECONNREFUSED')), { type: 'unreachable', kind: 'io' });
});

test('read-only commands are safe to repeat; writes are not', () => {
  for (const name of ['GET', 'get', 'HGETALL', 'EXISTS']) assert.equal(isReadOnly(name), true, name);
  for (const name of ['INCR', 'SET', 'BLPOP', 'ZRANGEWITHSCORES']) assert.equal(isReadOnly(name), false, name);
});
