// Types of relink-redis's public API.
import type { RedisClientOptions, RedisClientType } from 'redis';

/** The gRPC connectivity states. */
export type HealthState = 'idle' | 'connecting' | 'ready' | 'transient_failure' | 'shutdown';

/** A health change, as `'health'` events and `events()` give it. */
export interface HealthEvent {
  state: HealthState;
  from: HealthState;
  /** `Date.now()` when it was seen. */
  at: number;
}

/** A failure kind, as the engine names it. */
export type FailureKind =
  | 'io' | 'closed' | 'timeout' | 'auth' | 'protocol' | 'moved' | 'command'
  | { server_busy: 'loading' | 'busy' | 'master_down' | 'read_only' | 'try_again' };

/** What a call that ended without a reply may have done. */
export type Outcome = 'not_applied' | 'unknown' | 'rejected';

/** The engine's snapshot of the connection (times in ms on the client's clock). */
export interface Health {
  state: HealthState;
  since: number;
  attempt: number;
  last_failure: FailureKind | null;
  heartbeat_misses: number;
  rtt: number | null;
  next_attempt_at: number | null;
  busy_since: number | null;
  /** Since when a Sentinel failover of the master holds writes back (the engine's; not set by this client, which does not follow Sentinel). */
  failover_since?: number;
  last_attempt_failure: { attempt: number; cause: unknown; evidence: string } | null;
  misconfigured: boolean;
  [field: string]: unknown;
}

/** Counters since the client was made. */
export interface ClientStats {
  calls: number;
  succeeded: number;
  notApplied: number;
  unknown: number;
  rejected: number;
  retries: number;
  reconnects: number;
  queued: number;
  inFlight: number;
  state: HealthState;
  retryTokens: number;
}

/** A duration as the engine reads it: `"250ms"`, `"1s"`, `"2m"`. */
export type Duration = string;

/** A backoff policy in the engine's shape; missing fields take the defaults. */
export interface BackoffPolicy {
  strategy?: 'exponential' | 'constant' | 'linear';
  multiplier?: number;
  initial_delay?: Duration;
  max_delay?: Duration;
  jitter?: 'none' | 'full' | 'equal' | 'decorrelated' | 'proportional';
  max_attempts?: number | null;
  max_elapsed?: Duration | null;
}

/** The Supervisor's settings: reconnects and heartbeats. */
export interface SupervisorConfig {
  backoff?: BackoffPolicy;
  heartbeat?: { interval?: Duration; timeout?: Duration; misses_allowed?: number };
  connect_timeout?: Duration;
  backoff_reset_after?: Duration;
  misconfigured_backoff?: BackoffPolicy;
  refused_max_delay?: Duration;
  /** How long writes are held back during a failover with no further word. */
  failover_hold?: Duration;
}

/** The per-call policy: outage queueing, retries, response timeout, deadline. */
export interface CallPolicyConfig {
  /** How long a call may wait for a connection; `null`: fail fast. */
  queue_wait?: Duration | null;
  max_retries?: number;
  max_redirects?: number;
  response_timeout?: Duration;
  /** The total bound on a call; `null`: none. */
  deadline?: Duration | null;
  busy_backoff?: BackoffPolicy;
}

/** relink's own options. */
export interface RelinkSettings {
  supervisor?: SupervisorConfig;
  policy?: CallPolicyConfig;
  retryBudget?: { max_tokens?: number; token_ratio?: number };
  /** Calls that may wait for a connection at once (default 1024). */
  maxQueued?: number;
  /** The jitter's seed (default: random). */
  seed?: bigint | number;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** node-redis's options, minus those whose decisions relink makes, plus `relink`. */
export type ClientOptions = DistributiveOmit<
  RedisClientOptions,
  'pingInterval' | 'disableOfflineQueue' | 'commandsQueueMaxLength' | 'socket'
> & {
  socket?: DistributiveOmit<NonNullable<RedisClientOptions['socket']>, 'reconnectStrategy' | 'connectTimeout' | 'socketTimeout'>;
  relink?: RelinkSettings;
};

/** What a subscription's listener gets. */
export type PubSubItem =
  | { type: 'message'; channel: string; message: string; pattern?: string }
  /** Messages of the last `gapMs` ms may have been missed; the subscription is in place again. */
  | { type: 'restored'; gapMs: number };

export interface Subscription {
  readonly kind: 'channel' | 'pattern';
  readonly names: string[];
  unsubscribe(): Promise<void>;
}

type Own =
  | 'connect' | 'quit' | 'close' | 'destroy' | 'disconnect' | 'duplicate' | 'subscribe' | 'pSubscribe'
  | 'sendCommand' | 'on' | 'once' | 'off' | 'addListener' | 'removeListener' | 'removeAllListeners'
  | 'emit' | 'listeners' | 'listenerCount' | 'isReady' | 'isOpen' | 'options' | 'withTypeMapping'
  | 'withCommandOptions' | 'withAbortSignal' | 'asap' | 'multi' | 'MULTI' | 'executeIsolated'
  | 'QUIT' | 'select' | 'SELECT' | 'watch' | 'WATCH' | 'unwatch' | 'UNWATCH' | 'reset' | 'RESET'
  | 'monitor' | 'MONITOR' | 'scanIterator' | 'hScanIterator' | 'hScanValuesIterator'
  | 'hScanNoValuesIterator' | 'sScanIterator' | 'zScanIterator' | 'ref' | 'unref';

/** node-redis's command methods, each run through relink's call policy. */
export type CommandMethods = Omit<RedisClientType, Own>;

export interface RelinkClient extends CommandMethods {
  /** Starts connecting; resolves once ready, rejects on a misconfiguration or when the backoff gives up. */
  connect(): Promise<void>;
  /** Ends gracefully: calls in flight finish, waiting calls fail (not applied); nothing stays open. */
  quit(): Promise<void>;
  /** Ends now: nothing stays open. */
  close(): void;
  health(): Health;
  stats(): ClientStats;
  /** Health changes until the client closes. */
  events(): AsyncIterableIterator<HealthEvent>;
  readonly state: HealthState;
  readonly isReady: boolean;
  /** A handle whose calls count as safe to apply twice (retried after an unknown outcome). */
  idempotent(): RelinkClient;
  /** A handle whose calls end within `ms` (queueing, attempts and retries); `null`: no bound. */
  withDeadline(ms: number | null): RelinkClient;
  /** Subscribes on the subscriber connection. */
  subscribe(channels: string | string[], listener: (item: PubSubItem) => void): Promise<Subscription>;
  pSubscribe(patterns: string | string[], listener: (item: PubSubItem) => void): Promise<Subscription>;
  /** A raw command (`['GET', 'k']`), through the call policy. */
  sendCommand<T = unknown>(args: ReadonlyArray<string | Buffer>): Promise<T>;
  on(event: 'health', listener: (event: HealthEvent) => void): this;
  on(event: 'event' | 'subscriberEvent', listener: (event: { type: string; [field: string]: unknown }) => void): this;
  once(event: 'health', listener: (event: HealthEvent) => void): this;
  once(event: 'event' | 'subscriberEvent', listener: (event: { type: string; [field: string]: unknown }) => void): this;
  off(event: string, listener: (...args: any[]) => void): this;
}

/** A client with node-redis's command methods, kept connected by relink. */
export function createClient(options?: ClientOptions): RelinkClient;

/** A call that ended without a reply. */
export class RelinkError extends Error {
  readonly outcome: Outcome;
  /** Why: `"deadline_exceeded"`, `"queue_timeout"`, `"backlog_full"`, `"not_retry_safe"`, ... */
  readonly reason: string;
  readonly kind: FailureKind | null;
  readonly command: string | undefined;
  readonly cause?: unknown;
}
/** Certainly not applied: safe to try again. */
export class NotAppliedError extends RelinkError {
  readonly outcome: 'not_applied';
}
/** Sent, no reply: it may have been applied. `cause` is the error that cut it off. */
export class OutcomeUnknownError extends RelinkError {
  readonly outcome: 'unknown';
}
/** A bad option; `field` names it. */
export class OptionsError extends TypeError {
  readonly code: 'ERR_RELINK_INVALID_OPTION';
  readonly field: string;
}
