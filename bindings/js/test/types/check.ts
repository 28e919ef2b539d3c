// Type-checked (tsc --noEmit) against the installed package's declarations.
import { createClient, NotAppliedError, OutcomeUnknownError, OptionsError, type HealthEvent, type PubSubItem } from 'relink-redis';
import { Backoff, CallPolicy, classifyNodeError } from 'relink-redis/engine';

async function main(): Promise<void> {
  const client = createClient({
    url: 'redis://127.0.0.1:6379',
    relink: { supervisor: { heartbeat: { interval: '1s' } }, policy: { deadline: '2s' }, maxQueued: 100 },
  });
  client.on('health', (e: HealthEvent) => console.log(e.state, e.from));
  await client.connect();
  const value: string | null = await client.get('k');
  const n: number = await client.incr('n');
  await client.withDeadline(300).idempotent().set('k', 'v');
  const raw = await client.sendCommand<string>(['PING']);
  const sub = await client.subscribe('news', (item: PubSubItem) => {
    if (item.type === 'restored') console.log(item.gapMs);
    else console.log(item.channel, item.message);
  });
  await sub.unsubscribe();
  for await (const event of client.events()) if (event.state === 'ready') break;
  console.log(value, n, raw, client.health().state, client.stats().retries);
  try {
    await client.incr('n');
  } catch (err) {
    if (err instanceof OutcomeUnknownError) console.log(err.cause, err.outcome);
    if (err instanceof NotAppliedError) console.log(err.reason);
    if (err instanceof OptionsError) console.log(err.field);
  }
  await client.quit();
  const delay: number | undefined = new Backoff(undefined, 1n).nextDelay(undefined);
  console.log(delay, new CallPolicy(undefined), classifyNodeError(new Error('x')));
}

void main();
