// Pub/Sub on a connection of its own (the command connection stays a normal
// client), kept by a Supervisor of its own with the client's settings. A new
// connection is subscribed to everything wanted before it is reported
// connected; every subscription that lived through a gap (its connection
// lost, or subscribed while there was none) gets one `restored` marker when
// it is in place again, ahead of any message from the new connection.
import { Link, at, now } from './link.js';

/** One subscribe call's names and listener; `unsubscribe()` ends it. */
export class Subscription {
  #subscriber;
  constructor(subscriber, kind, names, listener) {
    this.#subscriber = subscriber;
    this.kind = kind;
    this.names = names;
    this.listener = listener;
    /** Since when (ms on the client's clock) a marker is owed, or null. */
    this.owedSince = null;
  }

  /** Stops the listener; the last subscription to a name unsubscribes it on the server. */
  unsubscribe() {
    return this.#subscriber.remove(this);
  }
}

export class Subscriber {
  #wanted = new Map(); // `${kind}:${name}` → Set<Subscription>
  #current = null; // the connection whose messages count
  #closed = false;
  #waiters = new Set(); // subscribe calls waiting for a connection

  constructor({ createRedis, redisOptions, supervisor, seed }) {
    this.link = new Link({ createRedis, redisOptions, supervisor, seed, prepare: (conn) => this.#restore(conn) });
    this.link.on('lost', () => this.#owe());
    this.link.on('event', (event) => {
      if (event.type === 'connected' || event.type === 'reconnected') this.#payAll();
    });
    this.link.start();
  }

  /** Resolves once a connection is in place, or at `until` (ms on the client's clock). */
  waitReady(until) {
    return new Promise((resolve) => {
      const done = () => {
        this.link.off('ready', done);
        this.#waiters.delete(done);
        cancel();
        resolve();
      };
      const cancel = at(until, done);
      this.link.on('ready', done);
      this.#waiters.add(done);
    });
  }

  async subscribe(kind, names, listener) {
    const list = Array.isArray(names) ? names : [names];
    if (list.length === 0 || list.some((n) => typeof n !== 'string' && !Buffer.isBuffer(n))) {
      throw new TypeError(`${kind === 'channel' ? 'subscribe' : 'pSubscribe'}: give a name or an array of names (strings)`);
    }
    if (typeof listener !== 'function') throw new TypeError('subscribe: the listener must be a function');
    const sub = new Subscription(this, kind, list.map(String), listener);
    const fresh = [];
    for (const name of sub.names) {
      const key = `${kind}:${name}`;
      if (!this.#wanted.has(key)) {
        this.#wanted.set(key, new Set());
        fresh.push(name);
      }
      this.#wanted.get(key).add(sub);
    }
    const conn = this.link.conn;
    if (!conn) {
      // In place once a connection is: a gap from now until then.
      sub.owedSince = now();
      return sub;
    }
    try {
      for (const name of fresh) await this.#subscribeOn(conn, kind, name);
    } catch {
      // The connection failed under the subscribe: the next one restores it.
      if (sub.owedSince === null) sub.owedSince = now();
    }
    return sub;
  }

  async remove(sub) {
    const conn = this.link.conn;
    for (const name of sub.names) {
      const key = `${sub.kind}:${name}`;
      const subs = this.#wanted.get(key);
      if (!subs) continue;
      subs.delete(sub);
      if (subs.size > 0) continue;
      this.#wanted.delete(key);
      if (!conn) continue;
      try {
        await (sub.kind === 'channel' ? conn.unsubscribe(name) : conn.pUnsubscribe(name));
      } catch {
        // The connection is gone, and with it the subscription on the server.
      }
    }
  }

  shutdown() {
    this.#closed = true;
    this.#wanted.clear();
    this.link.shutdown();
    for (const wake of [...this.#waiters]) wake();
  }

  #subscribeOn(conn, kind, name) {
    const listener = (message, channel) => this.#deliver(conn, kind, name, message, channel);
    return kind === 'channel' ? conn.subscribe(name, listener) : conn.pSubscribe(name, listener);
  }

  // A new connection: everything wanted is subscribed before it counts as connected.
  async #restore(conn) {
    this.#current = conn;
    for (const key of this.#wanted.keys()) {
      const [kind, ...rest] = key.split(':');
      await this.#subscribeOn(conn, kind, rest.join(':'));
    }
  }

  #owe() {
    const at = now();
    for (const subs of this.#wanted.values()) {
      for (const sub of subs) if (sub.owedSince === null) sub.owedSince = at;
    }
  }

  #pay(sub) {
    if (sub.owedSince === null) return;
    const gapMs = Math.max(0, now() - sub.owedSince);
    sub.owedSince = null;
    sub.listener({ type: 'restored', gapMs });
  }

  #payAll() {
    const seen = new Set();
    for (const subs of this.#wanted.values()) {
      for (const sub of subs) {
        if (!seen.has(sub)) this.#pay(sub);
        seen.add(sub);
      }
    }
  }

  #deliver(conn, kind, name, message, channel) {
    if (this.#closed || conn !== this.#current) return;
    const subs = this.#wanted.get(`${kind}:${name}`);
    if (!subs) return;
    for (const sub of subs) {
      this.#pay(sub);
      sub.listener(kind === 'channel'
        ? { type: 'message', channel, message }
        : { type: 'message', channel, pattern: name, message });
    }
  }
}
