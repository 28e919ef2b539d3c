"""relink_redis, as installed from its wheel, against real redis-servers:
connect, binary values, a restart in the middle, Pub/Sub (a restart with
one Restored item, unsubscribe), the exceptions, and the golden backoff
vectors.

`cargo xtask test` runs it in a fresh virtual environment after installing
the wheel, from outside the source tree. By hand, in a venv with
relink-redis installed:
    REDIS_SERVER=redis-server RELINK_VECTORS_DIR=tests/vectors \
        python -m unittest discover -s bindings/python/tests
"""

import ctypes
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import relink_redis as relink

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
VECTORS_DIR = os.environ.get("RELINK_VECTORS_DIR", os.path.join(ROOT, "tests", "vectors"))


def wait_until(check, seconds=10.0):
    """Polls `check` until it returns a true value or `seconds` pass (a
    bound for a slow machine, not a wait); returns its last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.025)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A redis-server of the test's own, killed by its PID."""

    def __init__(self, port, tls=None):
        """`tls`: (cert, key, ca) files: then `port` is a TLS port and the
        server has no plain one."""
        self.port = port
        self.tls = tls
        self.dir = tempfile.TemporaryDirectory()
        self.start()

    def start(self):
        program = os.environ.get("REDIS_SERVER", "redis-server")
        if self.tls is None:
            ports = ["--port", str(self.port)]
        else:
            cert, key, ca = self.tls
            ports = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", cert,
                     "--tls-key-file", key, "--tls-ca-cert-file", ca, "--tls-auth-clients", "no"]
        self.proc = subprocess.Popen(
            [program, *ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir.name],
            stdout=subprocess.DEVNULL)
        def accepts():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        if wait_until(accepts):
            return
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=10)

    def close(self):
        self.stop()
        self.dir.cleanup()


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.server = Server(free_port())
        self.addCleanup(self.server.close)
        self.transitions = []
        self.lock = threading.Lock()

        def on_state(old, new):
            with self.lock:
                self.transitions.append((old, new))

        self.client = relink.Client(f"redis://127.0.0.1:{self.server.port}", on_state_change=on_state,
                                    heartbeat_interval_ms=200, backoff_initial_delay_ms=20,
                                    backoff_max_delay_ms=200, client_name="relink-python")
        self.addCleanup(self.client.close)
        self.client.wait_ready(10)

    def test_commands_and_binary_values(self):
        c = self.client
        self.assertEqual(c.state, "ready")
        self.assertEqual(c.command("PING"), "PONG")
        value = b"\x00a\x00b\xff\r\n"
        self.assertEqual(c.command("SET", b"py:\x00key", value), "OK")
        self.assertEqual(c.command("GET", b"py:\x00key"), value)
        self.assertEqual(c.command("STRLEN", b"py:\x00key"), len(value))
        self.assertIsNone(c.command("GET", "py:missing"))
        self.assertEqual(c.command("INCRBY", "py:n", 5), 5)
        c.command("RPUSH", "py:list", "a", "b")
        self.assertEqual(c.command("LRANGE", "py:list", 0, -1), [b"a", b"b"])
        c.command("HSET", "py:h", "f", "v")
        self.assertEqual(c.command("HGETALL", "py:h"), {b"f": b"v"})
        self.assertEqual(c.command("CLIENT", "GETNAME"), b"relink-python")
        with self.assertRaisesRegex(relink.ServerError, "^WRONGTYPE"):
            c.command("INCR", "py:list")

    def test_a_wrong_password_is_told_and_fixed_live(self):
        self.client.command("CONFIG", "SET", "requirepass", "right")
        url = f"redis://:wrong@127.0.0.1:{self.server.port}"
        with self.assertRaises(relink.RelinkError) as caught:
            relink.Client(url, wait_for_connection=True)
        self.assertEqual(caught.exception.code, relink.MISCONFIGURED)
        self.assertIn("WRONGPASS", str(caught.exception))
        self.assertNotIn("wrong@", str(caught.exception))
        client = relink.Client(url, backoff_initial_delay_ms=20)
        self.addCleanup(client.close)
        deadline = time.monotonic() + 10
        while True:
            with self.assertRaises(relink.RelinkError) as caught:
                client.command("PING")
            if caught.exception.code == relink.MISCONFIGURED or time.monotonic() > deadline:
                break
        self.assertEqual(caught.exception.code, relink.MISCONFIGURED)
        self.assertIn("authentication failed", str(caught.exception))
        client.update_credentials("right")
        client.wait_ready(10)
        self.assertEqual(client.command("PING"), "PONG")
        with self.assertRaises(relink.RelinkError) as caught:
            client.update_credentials("nope")
        self.assertEqual(caught.exception.code, relink.REDIS_ERROR)
        self.assertIn("WRONGPASS", str(caught.exception))
        self.assertEqual(client.command("PING"), "PONG")

    def test_a_restart_in_the_middle(self):
        c = self.client
        c.command("SET", "py:before", "1")
        self.server.stop()  # SIGKILL, and reaped: the port is closed now
        self.server.start()
        # Queued while down; a write that met the dying connection may come
        # back "maybe applied", which relink does not retry on its own.
        for _ in range(20):
            try:
                self.assertEqual(c.command("SET", "py:after", b"back\x00"), "OK")
                break
            except relink.CommandFailed as e:
                self.assertIn(e.code_name, ("RELINK_MAYBE_APPLIED", "RELINK_NOT_APPLIED",
                                            "RELINK_QUEUE_TIMEOUT"))
                self.assertNotEqual(e.outcome, relink.OUTCOME_NONE)
                # The class says the same as the outcome.
                expected = (relink.OutcomeUnknown if e.outcome == relink.OUTCOME_UNKNOWN
                            else relink.NotApplied)
                self.assertIsInstance(e, expected)
                time.sleep(0.1)
        else:
            self.fail("no command succeeded after the restart")
        c.wait_ready(10)
        self.assertEqual(c.command("GET", "py:after"), b"back\x00")
        self.assertIsNone(c.command("GET", "py:before"))  # a fresh server: no persistence
        def ready_again():
            with self.lock:
                return bool(self.transitions) and self.transitions[-1][1] == "ready"
        wait_until(ready_again, seconds=5)
        with self.lock:
            self.assertTrue(any(old == "ready" for old, _ in self.transitions), self.transitions)
            self.assertEqual(self.transitions[-1][1], "ready", self.transitions)


GOOD_URL = "redis://127.0.0.1:6379"
INVALID_ARGUMENT, INVALID_CONFIG = relink.INVALID_ARGUMENT, relink.INVALID_CONFIG

# (url, options, code, a piece of the message): bindings/c/tests/test_bad_config.c's rows.
BAD_CONFIG = [
    # Not a string relink can read.
    (None, {}, INVALID_ARGUMENT, "`url` must not be NULL"),
    (b"redis://127.0.0.1:6379/\xff\xfe", {}, INVALID_ARGUMENT, "`url` is not valid UTF-8"),
    ("redis://127.0.0.1:6379/\udcff", {}, INVALID_ARGUMENT, "`url` is not valid UTF-8"),
    ("redis://127.0.0.1:0\0:6379", {}, INVALID_ARGUMENT, "`url` must not contain a NUL character"),
    # Not a URL, or not one of ours: the accepted schemes are named.
    ("", {}, INVALID_CONFIG, "not a URL (no `scheme://`)"),
    ("127.0.0.1:6379", {}, INVALID_CONFIG, "not a URL (no `scheme://`)"),
    ("http://127.0.0.1:6379", {}, INVALID_CONFIG, "unknown scheme `http://`; relink accepts"),
    ("tcp://127.0.0.1:6379", {}, INVALID_CONFIG, "`valkey://`, `valkeys://`"),
    # Ports.
    ("redis://127.0.0.1:0", {}, INVALID_CONFIG, "port 0 is not a port"),
    ("valkey://127.0.0.1:0", {}, INVALID_CONFIG, "port 0 is not a port"),
    ("redis://127.0.0.1:65536", {}, INVALID_CONFIG, "port 65536 is out of range (1 to 65535)"),
    ("redis://127.0.0.1:99999", {}, INVALID_CONFIG, "port 99999 is out of range"),
    ("redis://127.0.0.1:-1", {}, INVALID_CONFIG, "port `-1` is not a number"),
    ("redis://127.0.0.1:port", {}, INVALID_CONFIG, "port `port` is not a number"),
    # Hosts.
    ("redis://", {}, INVALID_CONFIG, "has no host"),
    ("redis://:s3cret@:6379", {}, INVALID_CONFIG, "has no host"),
    ("redis://0.0.0.0:6379", {}, INVALID_CONFIG, "wildcard address"),
    # Databases.
    ("redis://127.0.0.1:6379/abc", {}, INVALID_CONFIG, "database `abc` is not a number"),
    ("redis://127.0.0.1:6379/-1", {}, INVALID_CONFIG, "database -1 is negative"),
    ("redis://127.0.0.1:6379/99999999999", {}, INVALID_CONFIG, "database 99999999999 is out of range"),
    ("redis+unix:///tmp/redis.sock?db=abc", {}, INVALID_CONFIG, "database `abc` is not a number"),
    # Credentials: the password is never quoted.
    ("redis://:s3cr%zzet@127.0.0.1:6379", {}, INVALID_CONFIG, "not a percent-escape"),
    ("redis://us%4@127.0.0.1:6379", {}, INVALID_CONFIG, "not a percent-escape"),
    # Query and Unix forms.
    ("redis://127.0.0.1:6379?protocol=s3cret", {}, INVALID_CONFIG, "`protocol=resp2` or `protocol=resp3`"),
    ("unix://", {}, INVALID_CONFIG, "needs the socket's path"),
    ("redis+unix://host/tmp/redis.sock", {}, INVALID_CONFIG, "needs the socket's path"),
    # TLS options (librelink is built with TLS here; a build without it says
    # so in a C user's words, which relink-ffi's unit tests check).
    ("redis://127.0.0.1:6379", {"tls_ca_file": "/nonexistent/ca.pem"}, INVALID_CONFIG,
     "invalid option `tls_*`: applies to a TLS URL"),
    ("rediss://127.0.0.1:6379", {"tls_cert_file": "/nonexistent/client.pem"}, INVALID_CONFIG,
     "invalid option `tls_key_file`: is required with `tls_cert_file`"),
    ("valkeys://:s3cret@127.0.0.1:6379", {"tls_ca_file": "/nonexistent/ca.pem"}, INVALID_CONFIG,
     "invalid option `tls_ca_file`: cannot read `/nonexistent/ca.pem`"),
    # Options: zero durations.
    (GOOD_URL, {"heartbeat_interval_ms": 0}, INVALID_CONFIG, "invalid option `heartbeat_interval_ms`: must be at least 1ms"),
    (GOOD_URL, {"heartbeat_timeout_ms": 0}, INVALID_CONFIG, "invalid option `heartbeat_timeout_ms`: must be at least 1ms"),
    (GOOD_URL, {"connect_timeout_ms": 0}, INVALID_CONFIG, "invalid option `connect_timeout_ms`: must be at least 1ms"),
    (GOOD_URL, {"response_timeout_ms": 0}, INVALID_CONFIG, "invalid option `response_timeout_ms`: must be at least 1ms"),
    (GOOD_URL, {"queue_max_wait_ms": 0}, INVALID_CONFIG, "invalid option `queue_max_wait_ms`: must be at least 1ms"),
    (GOOD_URL, {"backoff_initial_delay_ms": 0}, INVALID_CONFIG, "`initial_delay`: must be at least 1ms"),
    # Options: negative numbers are refused by the binding (C would wrap them).
    (GOOD_URL, {"heartbeat_interval_ms": -1}, INVALID_CONFIG, "`heartbeat_interval_ms` is -1: must not be negative"),
    (GOOD_URL, {"connect_timeout_ms": -250}, INVALID_CONFIG, "`connect_timeout_ms` is -250: must not be negative"),
    (GOOD_URL, {"deadline_ms": -1}, INVALID_CONFIG, "`deadline_ms` is -1: must not be negative"),
    (GOOD_URL, {"max_retries": -1}, INVALID_CONFIG, "`max_retries` is -1: must not be negative"),
    (GOOD_URL, {"backoff_max_delay_ms": -5}, INVALID_CONFIG, "`backoff_max_delay_ms` is -5: must not be negative"),
    (GOOD_URL, {"queue_capacity": -1}, INVALID_CONFIG, "`queue_capacity` is -1: must not be negative"),
    (GOOD_URL, {"heartbeat_interval_ms": 1 << 64}, INVALID_CONFIG, "must be less than 2**64"),
    # Options: too long for relink, or out of range.
    (GOOD_URL, {"heartbeat_interval_ms": (1 << 64) - 1}, INVALID_CONFIG, "invalid option `heartbeat_interval_ms`: must be at most"),
    (GOOD_URL, {"response_timeout_ms": 1 << 63}, INVALID_CONFIG, "invalid option `response_timeout_ms`: must be at most"),
    (GOOD_URL, {"max_retries": 1000}, INVALID_CONFIG, "invalid option `max_retries`: must be at most 100"),
    (GOOD_URL, {"queue_capacity": 0}, INVALID_CONFIG, "invalid option `queue_capacity`: must be between 1 and"),
    (GOOD_URL, {"backoff_multiplier": float("nan")}, INVALID_CONFIG, "`multiplier`: must be a finite number"),
    (GOOD_URL, {"backoff_multiplier": 0.5}, INVALID_CONFIG, "`multiplier`"),
    (GOOD_URL, {"backoff_max_delay_ms": 1}, INVALID_CONFIG, "`max_delay`: must be at least `initial_delay`"),
    (GOOD_URL, {"client_name": ""}, INVALID_CONFIG, "`client_name`: must not be empty"),
    (GOOD_URL, {"client_name": "has space"}, INVALID_CONFIG, "`client_name`"),
    # Options: enumeration values and strings C can get wrong.
    (GOOD_URL, {"outage_policy": 7}, INVALID_ARGUMENT, "`outage_policy` is 7"),
    (GOOD_URL, {"backoff_strategy": 99}, INVALID_ARGUMENT, "strategy"),
    (GOOD_URL, {"backoff_jitter": 2**32 - 1}, INVALID_ARGUMENT, "jitter"),
    (GOOD_URL, {"client_name": b"\xc3\x28"}, INVALID_ARGUMENT, "`client_name` is not valid UTF-8"),
    (GOOD_URL, {"client_name": "a\0b"}, INVALID_ARGUMENT, "`client_name` must not contain a NUL character"),
    # Client-side caching.
    (GOOD_URL, {"cache": 9}, INVALID_ARGUMENT, "`cache` is 9"),
    (GOOD_URL, {"cache": True, "cache_max_entries": 0}, INVALID_CONFIG,
     "invalid option `cache_max_entries`: must be at least 1"),
    (GOOD_URL, {"cache": True, "cache_max_bytes": 0}, INVALID_CONFIG,
     "invalid option `cache_max_bytes`: must be at least 1"),
    (GOOD_URL, {"cache": relink.CACHE_BROADCAST, "cache_ttl_ms": 0}, INVALID_CONFIG,
     "invalid option `cache_ttl_ms`: must be at least 1ms"),
    (GOOD_URL, {"cache": True, "cache_max_entries": -1}, INVALID_CONFIG,
     "`cache_max_entries` is -1: must not be negative"),
    (GOOD_URL, {"cache": True, "cache_prefixes": ["user:"]}, INVALID_CONFIG,
     "invalid option `cache_prefixes`: prefixes need"),
    (GOOD_URL, {"cache": relink.CACHE_BROADCAST, "cache_prefixes": ["user:", "user:1"]}, INVALID_CONFIG,
     "invalid option `cache_prefixes`: prefixes overlap"),
    (GOOD_URL, {"cache": relink.CACHE_BROADCAST, "cache_prefixes": [b"\xc3\x28"]}, INVALID_ARGUMENT,
     "`cache_prefixes[0]` is not valid UTF-8"),
    (GOOD_URL, {"cache": relink.CACHE_BROADCAST, "cache_prefixes": ["a\0b"]}, INVALID_ARGUMENT,
     "`cache_prefixes` must not contain a NUL character"),
    (GOOD_URL, {"cache": relink.CACHE_BROADCAST, "cache_prefix_count": 1}, INVALID_ARGUMENT,
     "`cache_prefixes` must not be NULL when `cache_prefix_count` is 1"),
    ("redis://127.0.0.1:6379?protocol=resp2", {"cache": True}, INVALID_CONFIG,
     "invalid option `cache`: client-side caching needs RESP3"),
]

# What no message may say to a Python user.
NEVER_SAID = ("Cargo", "cargo", "feature", "tls-rustls", "InvalidClientConfig", "s3cr")


class PubSubTest(unittest.TestCase):
    def setUp(self):
        self.server = Server(free_port())
        self.addCleanup(self.server.close)
        self.client = relink.Client(f"redis://127.0.0.1:{self.server.port}", heartbeat_interval_ms=200,
                                    backoff_initial_delay_ms=20, backoff_max_delay_ms=200)
        self.addCleanup(self.client.close)
        self.client.wait_ready(10)

    def next_message(self, sub):
        item = sub.next(10)
        self.assertIsInstance(item, relink.Message)
        return item

    def test_messages_patterns_and_unsubscribe(self):
        with self.client.subscribe("py:news") as news, self.client.psubscribe("py:alerts.*") as alerts:
            # Confirmed before subscribe returned: heard at once.
            self.assertEqual(self.client.command("PUBLISH", "py:news", b"one\x00two"), 1)
            item = self.next_message(news)
            self.assertEqual((item.channel, item.payload, item.pattern), ("py:news", b"one\x00two", None))
            self.client.command("PUBLISH", "py:alerts.disk", "full")
            item = self.next_message(alerts)
            self.assertEqual((item.channel, item.pattern, item.payload), ("py:alerts.disk", "py:alerts.*", b"full"))
            self.assertIsNone(news.next(0.05), "nothing more: a bounded wait")
            alerts.unsubscribe()
            self.assertEqual(self.client.command("PUBLISH", "py:alerts.disk", "again"), 0)
            with self.assertRaises(relink.RelinkError):
                alerts.next(0)
        # Closed by the with block, which unsubscribes without waiting (the
        # UNSUBSCRIBE leaves on the subscription connection, this PUBSUB on
        # the command one): soon nobody hears it.
        numsub = lambda: self.client.command("PUBSUB", "NUMSUB", "py:news")
        wait_until(lambda: numsub() == [b"py:news", 0])
        self.assertEqual(numsub(), [b"py:news", 0])

    def test_a_restart_gives_one_restored_item(self):
        news = self.client.subscribe("py:restart")
        self.addCleanup(news.close)
        self.server.stop()
        self.server.start()
        deadline = time.monotonic() + 20
        # Bounded: publish until the restored subscription hears it.
        while self.client.command("PUBLISH", "py:restart", "back") == 0:
            self.assertLess(time.monotonic(), deadline, "the subscription was not restored")
            time.sleep(0.05)
        items = []
        for item in news:
            items.append(item)
            if isinstance(item, relink.Message) and item.payload == b"back":
                break
        restored = [i for i in items if isinstance(i, relink.Restored)]
        self.assertEqual(len(restored), 1, items)
        self.assertGreater(restored[0].gap_s, 0)

    def test_iteration_ends_when_the_client_closes(self):
        news = self.client.subscribe("py:end")
        ended = []
        reader = threading.Thread(target=lambda: ended.append(list(news)))
        reader.start()
        self.client.close()
        reader.join(20)
        self.assertFalse(reader.is_alive(), "iteration did not end")
        self.assertEqual(ended, [[]])
        news.close()

    def test_bad_subscriptions(self):
        with self.assertRaises(relink.InvalidArgument):
            self.client.subscribe()
        with self.assertRaises(relink.InvalidArgument):
            self.client.subscribe("a\0b")
        sub = self.client.subscribe("py:x")
        with self.assertRaises(relink.InvalidArgument):
            sub.next(-1)
        sub.close()
        sub.close()


def make_certs(directory):
    """A CA and a certificate for 127.0.0.1 it signed, made with the openssl
    CLI into `directory` (nothing private is checked in). Returns the paths
    (ca.pem, server.pem, server.key)."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=relink python test CA")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(directory, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return tuple(os.path.join(directory, n) for n in ("ca.pem", "server.pem", "server.key"))


@unittest.skipIf(shutil.which("openssl") is None, "the openssl CLI makes the test's certificates")
class TlsTest(unittest.TestCase):
    """A TLS redis-server with a private CA: relink connects with the CA file,
    and refuses (as a TLS misconfiguration) without it."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.ca, cert, key = make_certs(self.dir.name)
        self.server = Server(free_port(), tls=(cert, key, self.ca))
        self.addCleanup(self.server.close)
        self.port = self.server.port

    def test_connects_with_a_ca_file(self):
        with relink.Client(f"rediss://127.0.0.1:{self.port}", tls_ca_file=self.ca,
                           wait_for_connection=1) as c:
            self.assertEqual(c.command("SET", "k", "over tls"), "OK")
            self.assertEqual(c.command("GET", "k"), b"over tls")

    def test_an_unknown_ca_is_a_tls_misconfiguration(self):
        with self.assertRaises(relink.RelinkError) as caught:
            relink.Client(f"rediss://127.0.0.1:{self.port}", wait_for_connection=1,
                          connect_timeout_ms=2000)
        self.assertEqual(caught.exception.code, relink.MISCONFIGURED, caught.exception)
        self.assertIn("UnknownIssuer", str(caught.exception))

    def test_tls_options_need_a_tls_url(self):
        with self.assertRaises(relink.RelinkError) as caught:
            relink.Client(f"redis://127.0.0.1:{self.port}", tls_ca_file=self.ca)
        self.assertEqual(caught.exception.code, relink.INVALID_CONFIG)
        self.assertIn("`tls_*`", str(caught.exception))
        self.assertIn("rediss://", str(caught.exception))

    def test_a_missing_key_is_named(self):
        with self.assertRaises(relink.RelinkError) as caught:
            relink.Client(f"rediss://127.0.0.1:{self.port}", tls_cert_file=self.ca)
        self.assertEqual(caught.exception.code, relink.INVALID_CONFIG)
        self.assertIn("tls_key_file", str(caught.exception))


class CacheTest(unittest.TestCase):
    """Client-side caching, as test_cache.c: a second read is a hit, a write
    by another client reaches the cache as an invalidation, broadcast mode
    caches its prefixes only."""

    def setUp(self):
        self.server = Server(free_port())
        self.addCleanup(self.server.close)
        self.url = f"redis://127.0.0.1:{self.server.port}"

    def client(self, **options):
        client = relink.Client(self.url, wait_for_connection=1, **options)
        self.addCleanup(client.close)
        # The cache serves once its connection has tracking on.
        if options.get("cache"):
            wait_until(lambda: client.cache_stats().state == "serving")
        return client

    def test_a_write_elsewhere_invalidates(self):
        writer = self.client()
        cached = self.client(cache=True, cache_max_entries=100, cache_ttl_ms=60_000)
        writer.command("SET", "py:cached", "v1")
        before = cached.cache_stats()
        self.assertEqual(before.state, "serving")
        self.assertEqual(cached.command("GET", "py:cached"), b"v1")
        self.assertEqual(cached.command("GET", "py:cached"), b"v1")
        after = cached.cache_stats()
        self.assertEqual(after.misses, before.misses + 1)
        self.assertEqual(after.hits, before.hits + 1)
        self.assertEqual(after.entries, 1)
        self.assertGreater(after.bytes, 0)

        writer.command("SET", "py:cached", "v2")
        wait_until(lambda: cached.command("GET", "py:cached") == b"v2")
        self.assertEqual(cached.command("GET", "py:cached"), b"v2")
        later = cached.cache_stats()
        self.assertGreaterEqual(later.invalidations, 1)
        self.assertEqual(later.gap_flushes, 0)

        self.assertEqual(writer.cache_stats(), relink.CacheStats("off", 0, 0, 0, 0, 0, 0, 0))

    def test_broadcast_caches_its_prefixes_only(self):
        cached = self.client(cache=relink.CACHE_BROADCAST, cache_prefixes=["user:", b"item:"])
        cached.command("SET", "user:1", "ada")
        cached.command("SET", "other:1", "x")
        before = cached.cache_stats()
        self.assertEqual(before.state, "serving")
        for _ in range(2):
            self.assertEqual(cached.command("GET", "user:1"), b"ada")
            self.assertEqual(cached.command("GET", "other:1"), b"x")
        after = cached.cache_stats()
        self.assertEqual(after.hits, before.hits + 1)
        self.assertEqual(after.entries, 1)

    def test_prefixes_are_a_list(self):
        with self.assertRaises(TypeError):
            relink.Client(self.url, cache=relink.CACHE_BROADCAST, cache_prefixes="user:")


class ArgumentTest(unittest.TestCase):
    def test_bad_input_is_an_error_not_a_crash(self):
        with self.assertRaises(relink.RelinkError) as caught:
            relink.Client("redis://127.0.0.1:1", outage_policy=9)
        self.assertEqual(caught.exception.code, relink.INVALID_ARGUMENT)
        with self.assertRaises(relink.RelinkError) as caught:
            relink.Client("redis://127.0.0.1:1", heartbeat_interval_ms=0)
        self.assertEqual(caught.exception.code, relink.INVALID_CONFIG)
        with self.assertRaises(relink.RelinkError) as caught:
            relink.Client("not a url")
        self.assertEqual(caught.exception.code, relink.INVALID_CONFIG)

    def test_bad_config_table(self):
        # The table of bindings/c/tests/test_bad_config.c, from Python: each
        # row raises RelinkError with its code and a piece of its message,
        # and no message names what a Python user cannot act on (a
        # Cargo.toml, a cargo feature, redis-rs's error kinds) or the password.
        for url, options, code, needle in BAD_CONFIG:
            with self.subTest(url=url, options=options):
                with self.assertRaises(relink.RelinkError) as caught:
                    relink.Client(url, **options).close()
                e = caught.exception
                self.assertEqual((e.code, e.outcome), (code, relink.OUTCOME_NONE), str(e))
                self.assertIn(needle, str(e))
                for word in NEVER_SAID:
                    self.assertNotIn(word, str(e))
        # The accepted forms still make a client (nothing need listen there).
        for url in ("redis://127.0.0.1:1", "valkey://127.0.0.1:1/2",
                    "redis://:p%40ss@127.0.0.1:1?protocol=resp2",
                    "redis+unix:///tmp/no-such-relink.sock?db=1"):
            relink.Client(url).close()

    def test_fail_fast_while_down(self):
        with relink.Client(f"redis://127.0.0.1:{free_port()}", outage_policy=relink.OUTAGE_FAIL_FAST) as c:
            with self.assertRaises(relink.RelinkError) as caught:
                c.command("GET", "k")
            self.assertEqual(caught.exception.code, relink.NOT_CONNECTED)
            self.assertEqual(caught.exception.outcome, relink.OUTCOME_NOT_APPLIED)
            self.assertIsInstance(caught.exception, relink.NotApplied)


    def test_a_call_ends_by_its_deadline(self):
        # Nothing listens: the call waits in the backlog (5 s by default),
        # but its 300 ms deadline ends it first, unsent.
        with relink.Client(f"redis://127.0.0.1:{free_port()}", deadline_ms=300) as c:
            with self.assertRaises(relink.RelinkError) as caught:
                c.command("GET", "k")
            self.assertEqual(caught.exception.code, relink.DEADLINE_EXCEEDED)
            self.assertEqual(caught.exception.outcome, relink.OUTCOME_NOT_APPLIED)
            self.assertIsInstance(caught.exception, relink.NotApplied)

    def test_the_options_struct_carries_its_size(self):
        # The ABI rule of relink.h: the binding's Options is filled for its
        # own size; a struct of a size no release has is refused, with a
        # code of its own, before anything else is read.
        opts = relink.Options()
        relink._check(relink._lib.relink_options_default(ctypes.byref(opts), ctypes.sizeof(opts)), None)
        self.assertEqual(opts.struct_size, ctypes.sizeof(opts))
        opts.struct_size = 0
        handle, err = relink._P(), relink._P()
        with self.assertRaises(relink.InvalidArgument) as caught:
            relink._check(relink._lib.relink_client_connect(b"redis://127.0.0.1:1", ctypes.byref(opts),
                                                            ctypes.byref(handle), ctypes.byref(err)), err)
        self.assertEqual(caught.exception.code, relink.STRUCT_SIZE)
        self.assertIn("relink_options_default", str(caught.exception))
        with self.assertRaises(TypeError):
            relink.Client("redis://127.0.0.1:1", struct_size=8)

    def test_the_exceptions_mirror_the_outcomes(self):
        # Bad input is a ValueError too; a command's failure is a
        # CommandFailed whose class is its outcome; an error reply is a
        # Rejected ServerError with the server's words.
        for kind in (relink.InvalidArgument, relink.InvalidConfig):
            self.assertTrue(issubclass(kind, ValueError))
            self.assertTrue(issubclass(kind, relink.RelinkError))
        for kind in (relink.NotApplied, relink.OutcomeUnknown, relink.Rejected):
            self.assertTrue(issubclass(kind, relink.CommandFailed))
        self.assertTrue(issubclass(relink.ServerError, relink.Rejected))
        with self.assertRaises(ValueError):
            relink.Client("not a url")
        with relink.Client(f"redis://127.0.0.1:{free_port()}") as c:
            with self.assertRaises(relink.NotReady) as caught:
                c.wait_ready(0.05)
            self.assertEqual(caught.exception.code, relink.TIMEOUT)


class GoldenVectorTest(unittest.TestCase):
    def test_backoff_vectors(self):
        strategies = {"constant": 0, "linear": 1, "exponential": 2}
        jitters = {"none": 0, "full": 1, "equal": 2, "decorrelated": 3, "proportional": 4}
        units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}

        def ms(text):
            digits = text.rstrip("hms")
            return int(digits) * units[text[len(digits):]]

        with open(os.path.join(VECTORS_DIR, "backoff.json")) as f:
            cases = json.load(f)["cases"]
        for case in cases:
            p = case["policy"]
            fields = {"strategy": strategies[p["strategy"]], "jitter": jitters[p["jitter"]],
                      "initial_delay_ms": ms(p["initial_delay"]), "max_delay_ms": ms(p["max_delay"]),
                      "max_attempts": p["max_attempts"] or 0,
                      "max_elapsed_ms": ms(p["max_elapsed"]) if p["max_elapsed"] else 0}
            if "multiplier" in p:
                fields["multiplier"] = p["multiplier"]
            if "step" in p:
                fields["step_ms"] = ms(p["step"])
            if "jitter_factor" in p:
                fields["jitter_factor"] = p["jitter_factor"]
            with self.subTest(case["name"]):
                self.assertEqual(relink.backoff_delays(fields, case["seed"], 12), case["delays_ms"])


if __name__ == "__main__":
    unittest.main()
