// Every golden vector in tests/vectors/, replayed through the WebAssembly
// build: the same numbers as native Rust, to the millisecond.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Backoff, Call, CallPolicy, Supervisor } from 'relink-redis/engine';

// The repository's tests/vectors/, passed by `cargo xtask js` (the tests run
// from a temporary project where the installed package is imported).
const VECTORS = process.env.RELINK_VECTORS_DIR
  ? `${process.env.RELINK_VECTORS_DIR.replace(/\/$/, '')}/`
  : fileURLToPath(new URL('../../../tests/vectors/', import.meta.url));
const read = (name) => JSON.parse(readFileSync(VECTORS + name, 'utf8'));

// The files this runner replays; a new vector file needs a runner here too.
const RUNNERS = new Set(['backoff.json', 'supervisor.json', 'call.json']);

test('every vector file has a JavaScript runner', () => {
  const files = readdirSync(VECTORS).filter((f) => f.endsWith('.json'));
  assert.ok(files.includes('backoff.json'));
  for (const file of files) {
    assert.ok(RUNNERS.has(file), `no JS runner for tests/vectors/${file}: add one in ${import.meta.url}`);
  }
});

test('backoff vectors', async (t) => {
  const { cases } = read('backoff.json');
  assert.ok(cases.length >= 10);
  for (const c of cases) {
    await t.test(c.name, () => {
      // As the Iterator: elapsed = the sum of the delays so far.
      const implicit = new Backoff(c.policy, c.seed);
      const explicit = new Backoff(c.policy, BigInt(c.seed));
      const got = [];
      let elapsed = 0;
      for (let i = 0; i < 12; i++) {
        const d = implicit.nextDelay();
        assert.equal(explicit.nextDelay(elapsed), d, 'explicit elapsedMs agrees');
        if (d === undefined) break;
        assert.equal(typeof d, 'number');
        got.push(d);
        elapsed += d;
      }
      assert.deepEqual(got, c.delays_ms);
      assert.equal(implicit.attempts, got.length);
    });
  }
});

// BigInts (ping ids) as numbers, so outputs compare with the JSON vectors.
const plain = (v) => JSON.parse(JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? Number(x) : x)));

test('supervisor vectors', async (t) => {
  if (!existsSync(VECTORS + 'supervisor.json')) {
    t.skip('tests/vectors/supervisor.json does not exist yet');
    return;
  }
  const { cases } = read('supervisor.json');
  assert.ok(cases.length > 0);
  for (const c of cases) {
    await t.test(c.name, () => {
      const sup = new Supervisor(c.config, c.seed);
      c.steps.forEach((step, i) => {
        if (step.input !== null && step.input !== undefined) sup.handleInput(step.at, step.input);
        const outputs = [];
        for (let n = 0; n < 1000; n++) {
          const out = sup.pollOutput(step.at);
          if (out.kind === 'action' && ['send_ping', 'check_aside'].includes(out.value.type)) {
            assert.equal(typeof out.value.id, 'bigint', 'ping ids are BigInts');
          }
          outputs.push(plain(out));
          if (out.kind === 'timeout' || out.kind === 'idle') break;
        }
        assert.deepEqual(outputs, step.outputs, `step ${i} (at ${step.at})`);
        assert.deepEqual(sup.health(), step.health, `health after step ${i} (at ${step.at})`);
      });
    });
  }
});

test('call vectors', async (t) => {
  const { cases } = read('call.json');
  assert.ok(cases.length >= 12);
  for (const c of cases) {
    await t.test(c.name, () => {
      const policy = new CallPolicy(c.policy);
      const call = c.own_deadline_ms === null
        ? new Call(policy, c.start_ms, c.idempotent, BigInt(c.seed))
        : Call.withDeadline(c.start_ms, c.idempotent, c.own_deadline_ms, c.seed);
      c.steps.forEach((step, i) => {
        const decision = call.decide(policy, step.at_ms, step.input);
        assert.deepEqual(decision, step.decision, `step ${i} (at ${step.at_ms})`);
        assert.equal(call.isDone, decision.type === 'fail');
      });
    });
  }
});
