"""The ctypes wrapper against a real redis-server: connect, binary values,
a restart in the middle, and the golden backoff vectors.

Run by `cargo xtask test` (with REDIS_SERVER and RELINK_LIB set), or:
    REDIS_SERVER=redis-server python3 -m unittest discover -s bindings/python
"""

import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import relink

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A redis-server of the test's own, killed by its PID."""

    def __init__(self, port):
        self.port = port
        self.dir = tempfile.TemporaryDirectory()
        self.start()

    def start(self):
        program = os.environ.get("REDIS_SERVER", "redis-server")
        self.proc = subprocess.Popen(
            [program, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir.name],
            stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.025)
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

    def test_a_restart_in_the_middle(self):
        c = self.client
        c.command("SET", "py:before", "1")
        self.server.stop()
        time.sleep(0.3)
        self.server.start()
        # Queued while down; a write that met the dying connection may come
        # back "maybe applied", which relink does not retry on its own.
        for _ in range(20):
            try:
                self.assertEqual(c.command("SET", "py:after", b"back\x00"), "OK")
                break
            except relink.RelinkError as e:
                self.assertIn(e.code_name, ("RELINK_MAYBE_APPLIED", "RELINK_NOT_APPLIED",
                                            "RELINK_QUEUE_TIMEOUT"))
                self.assertNotEqual(e.outcome, relink.OUTCOME_NONE)
                time.sleep(0.1)
        else:
            self.fail("no command succeeded after the restart")
        c.wait_ready(10)
        self.assertEqual(c.command("GET", "py:after"), b"back\x00")
        self.assertIsNone(c.command("GET", "py:before"))  # a fresh server: no persistence
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with self.lock:
                if self.transitions and self.transitions[-1][1] == "ready":
                    break
            time.sleep(0.02)
        with self.lock:
            self.assertTrue(any(old == "ready" for old, _ in self.transitions), self.transitions)
            self.assertEqual(self.transitions[-1][1], "ready", self.transitions)


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
        self.assertEqual(caught.exception.code, relink.INVALID_ARGUMENT)

    def test_fail_fast_while_down(self):
        with relink.Client(f"redis://127.0.0.1:{free_port()}", outage_policy=relink.OUTAGE_FAIL_FAST) as c:
            with self.assertRaises(relink.RelinkError) as caught:
                c.command("GET", "k")
            self.assertEqual(caught.exception.code, relink.NOT_CONNECTED)
            self.assertEqual(caught.exception.outcome, relink.OUTCOME_NOT_APPLIED)


    def test_a_call_ends_by_its_deadline(self):
        # Nothing listens: the call waits in the backlog (5 s by default),
        # but its 300 ms deadline ends it first, unsent.
        with relink.Client(f"redis://127.0.0.1:{free_port()}", deadline_ms=300) as c:
            with self.assertRaises(relink.RelinkError) as caught:
                c.command("GET", "k")
            self.assertEqual(caught.exception.code, relink.DEADLINE_EXCEEDED)
            self.assertEqual(caught.exception.outcome, relink.OUTCOME_NOT_APPLIED)


class GoldenVectorTest(unittest.TestCase):
    def test_backoff_vectors(self):
        strategies = {"constant": 0, "linear": 1, "exponential": 2}
        jitters = {"none": 0, "full": 1, "equal": 2, "decorrelated": 3, "proportional": 4}
        units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}

        def ms(text):
            digits = text.rstrip("hms")
            return int(digits) * units[text[len(digits):]]

        with open(os.path.join(ROOT, "tests", "vectors", "backoff.json")) as f:
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
