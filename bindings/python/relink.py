"""relink from Python through the C ABI (librelink.so) with ctypes.

A small, dependency-free wrapper: proof that "any language with a C FFI"
is real. The library is found through $RELINK_LIB, else next to the
workspace's target/debug or target/release.

    from relink import Client
    with Client("redis://127.0.0.1:6379", heartbeat_interval_ms=250) as client:
        client.wait_ready(5.0)
        client.command("SET", "greeting", b"hello\\x00world")
        print(client.command("GET", "greeting"))
"""

import ctypes
import os
from ctypes import (
    POINTER,
    c_bool,
    c_char_p,
    c_double,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)

# Codes, outcomes, states, reply types: the values of relink.h.
OK = 0
INVALID_ARGUMENT = 1
INVALID_CONFIG = 2
NOT_CONNECTED = 100
MAYBE_APPLIED = 103
TIMEOUT = 106
DEADLINE_EXCEEDED = 108
REDIS_ERROR = 107
MISCONFIGURED = 109
OUTCOME_NONE, OUTCOME_NOT_APPLIED, OUTCOME_UNKNOWN, OUTCOME_REJECTED = range(4)
STATES = ("idle", "connecting", "ready", "transient_failure", "shutdown")
OUTAGE_QUEUE, OUTAGE_FAIL_FAST = 0, 1
(REPLY_NIL, REPLY_INTEGER, REPLY_DOUBLE, REPLY_STRING, REPLY_STATUS, REPLY_ERROR,
 REPLY_ARRAY, REPLY_MAP, REPLY_BOOLEAN) = range(9)


class BackoffPolicy(ctypes.Structure):
    _fields_ = [
        ("strategy", c_uint32),
        ("initial_delay_ms", c_uint64),
        ("max_delay_ms", c_uint64),
        ("multiplier", c_double),
        ("step_ms", c_uint64),
        ("jitter", c_uint32),
        ("jitter_factor", c_double),
        ("max_attempts", c_uint32),
        ("max_elapsed_ms", c_uint64),
    ]


class Options(ctypes.Structure):
    _fields_ = [
        ("backoff", BackoffPolicy),
        ("heartbeat_interval_ms", c_uint64),
        ("heartbeat_timeout_ms", c_uint64),
        ("heartbeat_misses_allowed", c_uint32),
        ("connect_timeout_ms", c_uint64),
        ("backoff_reset_after_ms", c_uint64),
        ("response_timeout_ms", c_uint64),
        ("deadline_ms", c_uint64),
        ("outage_policy", c_uint32),
        ("queue_capacity", c_size_t),
        ("queue_max_wait_ms", c_uint64),
        ("max_retries", c_uint32),
        ("client_name", c_char_p),
        ("wait_for_connection", c_uint32),
        ("tls_ca_file", c_char_p),
        ("tls_cert_file", c_char_p),
        ("tls_key_file", c_char_p),
        ("tls_server_name", c_char_p),
        ("tls_danger_accept_invalid_certs", c_uint32),
    ]

# The options that are text (C strings), set from str (or os.PathLike for files).
_TEXT_OPTIONS = ("client_name", "tls_ca_file", "tls_cert_file", "tls_key_file", "tls_server_name")


def _find_library():
    if os.environ.get("RELINK_LIB"):
        return os.environ["RELINK_LIB"]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for profile in ("debug", "release"):
        path = os.path.join(root, "target", profile, "librelink.so")
        if os.path.exists(path):
            return path
    raise OSError("librelink.so not found: build it with `cargo build -p relink-ffi` or set RELINK_LIB")


_lib = ctypes.CDLL(_find_library())
_P = c_void_p  # every opaque relink pointer
STATE_CALLBACK = ctypes.CFUNCTYPE(None, c_void_p, c_uint32, c_uint32)


def _sig(name, restype, *argtypes):
    fn = getattr(_lib, name)
    fn.restype, fn.argtypes = restype, list(argtypes)


_sig("relink_version", c_char_p)
_sig("relink_error_code", c_uint32, _P)
_sig("relink_error_outcome", c_uint32, _P)
_sig("relink_error_message", c_char_p, _P)
_sig("relink_error_free", None, _P)
_sig("relink_code_name", c_char_p, c_uint32)
_sig("relink_options_default", c_uint32, POINTER(Options))
_sig("relink_client_connect", c_uint32, c_char_p, POINTER(Options), POINTER(_P), POINTER(_P))
_sig("relink_client_command", c_uint32, _P, c_size_t, POINTER(c_char_p), POINTER(c_size_t),
     POINTER(_P), POINTER(_P))
_sig("relink_client_state", c_uint32, _P)
_sig("relink_client_wait_ready", c_uint32, _P, c_uint64, POINTER(_P))
_sig("relink_client_on_state_change", c_uint32, _P, STATE_CALLBACK, c_void_p, POINTER(_P))
_sig("relink_client_update_credentials", c_uint32, _P, c_char_p, c_char_p, POINTER(_P))
_sig("relink_client_free", None, _P)
_sig("relink_reply_type", c_uint32, _P)
_sig("relink_reply_integer", c_int64, _P)
_sig("relink_reply_double", c_double, _P)
_sig("relink_reply_bytes", c_void_p, _P, POINTER(c_size_t))
_sig("relink_reply_len", c_size_t, _P)
_sig("relink_reply_element", _P, _P, c_size_t)
_sig("relink_reply_free", None, _P)
_sig("relink_backoff_policy_default", c_uint32, POINTER(BackoffPolicy))
_sig("relink_backoff_new", c_uint32, POINTER(BackoffPolicy), c_uint64, POINTER(_P), POINTER(_P))
_sig("relink_backoff_next_delay", c_bool, _P, c_uint64, POINTER(c_uint64))
_sig("relink_backoff_free", None, _P)

version = _lib.relink_version().decode()


class RelinkError(Exception):
    """A relink failure: `code` (e.g. MAYBE_APPLIED), `code_name`, `outcome`."""

    def __init__(self, code, outcome, message):
        self.code, self.outcome = code, outcome
        self.code_name = _lib.relink_code_name(code).decode()
        super().__init__(f"{self.code_name}: {message}")


class ServerError(Exception):
    """The server answered with an error reply (-ERR, -WRONGTYPE ...)."""


def _text(value, what):
    """`value` as the bytes of a C string: str is UTF-8 (a lone surrogate from
    os.fsdecode goes through as the byte it stood for, for relink to refuse),
    bytes go as they are, None is NULL."""
    if value is None or isinstance(value, bytes):
        data = value
    else:
        data = str(value).encode("utf-8", "surrogateescape")
    if data is not None and b"\0" in data:
        # C would see only the text before the NUL.
        raise RelinkError(INVALID_ARGUMENT, OUTCOME_NONE, f"`{what}` must not contain a NUL character")
    return data


def _set_option(struct, name, value, shown):
    """Sets a field of relink_options; an integer that the C field cannot
    hold (negative, or too large) is an error naming the option, not a
    silent wrap-around."""
    kind = dict(struct._fields_)[name]
    if kind in (c_uint32, c_uint64, c_size_t) and isinstance(value, int) and not isinstance(value, bool):
        bits = 8 * ctypes.sizeof(kind)
        if value < 0:
            raise RelinkError(INVALID_CONFIG, OUTCOME_NONE, f"`{shown}` is {value}: must not be negative")
        if value >= 1 << bits:
            raise RelinkError(INVALID_CONFIG, OUTCOME_NONE,
                              f"`{shown}` is {value}: must be less than 2**{bits}")
    setattr(struct, name, value)


def _check(code, err):
    if code != OK:
        message = _lib.relink_error_message(err).decode("utf-8", "replace")
        outcome = _lib.relink_error_outcome(err)
        _lib.relink_error_free(err)
        raise RelinkError(code, outcome, message)


def _convert(reply):
    kind = _lib.relink_reply_type(reply)
    if kind == REPLY_NIL:
        return None
    if kind == REPLY_INTEGER:
        return _lib.relink_reply_integer(reply)
    if kind == REPLY_BOOLEAN:
        return bool(_lib.relink_reply_integer(reply))
    if kind == REPLY_DOUBLE:
        return _lib.relink_reply_double(reply)
    if kind in (REPLY_STRING, REPLY_STATUS, REPLY_ERROR):
        n = c_size_t()
        data = ctypes.string_at(_lib.relink_reply_bytes(reply, ctypes.byref(n)), n.value)
        if kind == REPLY_ERROR:
            return ServerError(data.decode("utf-8", "replace"))
        return data.decode() if kind == REPLY_STATUS else data
    items = [_convert(_lib.relink_reply_element(reply, i)) for i in range(_lib.relink_reply_len(reply))]
    if kind == REPLY_MAP:
        return dict(zip(items[::2], items[1::2]))
    return items


class Client:
    """A blocking Redis client that rides out outages. Keyword arguments set
    fields of relink_options (heartbeat_interval_ms=250, outage_policy=...).

    TLS (a `rediss://` URL): tls_ca_file="ca.pem" trusts a private CA instead
    of the system's roots; tls_cert_file= and tls_key_file= present a client
    certificate (mutual TLS); tls_server_name= verifies another name than the
    URL's host; tls_danger_accept_invalid_certs=True turns verification off
    (development only).

    `url` is `redis://[user[:password]@]host[:port][/db]`, `rediss://...`
    (TLS, when librelink was built with it) or `redis+unix:///path?db=N`;
    `valkey://` and `valkeys://` are the same as `redis://` and `rediss://`.
    A URL or option relink rejects raises RelinkError (code INVALID_CONFIG,
    or INVALID_ARGUMENT for a value C cannot even pass) whose message says
    what is wrong."""

    def __init__(self, url, on_state_change=None, **options):
        self._handle = None
        opts = Options()
        _check(_lib.relink_options_default(ctypes.byref(opts)), None)
        for name, value in options.items():
            if name.startswith("backoff_") and hasattr(opts.backoff, name[len("backoff_"):]):
                _set_option(opts.backoff, name[len("backoff_"):], value, name)
            elif name in _TEXT_OPTIONS:
                path = os.fspath(value) if isinstance(value, os.PathLike) else value
                setattr(opts, name, _text(path, name))
            elif name == "tls_danger_accept_invalid_certs":
                opts.tls_danger_accept_invalid_certs = 1 if value else 0
            else:
                if not hasattr(opts, name):
                    raise TypeError(f"unknown option {name}")
                _set_option(opts, name, value, name)
        handle, err = _P(), _P()
        _check(_lib.relink_client_connect(_text(url, "url"), ctypes.byref(opts), ctypes.byref(handle),
                                          ctypes.byref(err)), err)
        self._handle = handle
        self._callback = None
        if on_state_change is not None:
            # Called on relink's thread; ctypes takes the GIL for it. Keep it short.
            self._callback = STATE_CALLBACK(lambda _ud, a, b: on_state_change(STATES[a], STATES[b]))
            err = _P()
            _check(_lib.relink_client_on_state_change(handle, self._callback, None, ctypes.byref(err)), err)

    def command(self, *args):
        """Runs one command; str arguments are UTF-8, bytes are sent as they are.
        Returns bytes / int / float / str (status) / None / list / dict, or
        raises ServerError for an error reply and RelinkError for a failure."""
        raw = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        argv = (c_char_p * len(raw))(*raw)
        argvlen = (c_size_t * len(raw))(*(len(a) for a in raw))
        reply, err = _P(), _P()
        _check(_lib.relink_client_command(self._handle, len(raw), argv, argvlen, ctypes.byref(reply),
                                          ctypes.byref(err)), err)
        try:
            value = _convert(reply)
        finally:
            _lib.relink_reply_free(reply)
        if isinstance(value, ServerError):
            raise value
        return value

    @property
    def state(self):
        return STATES[_lib.relink_client_state(self._handle)]

    def wait_ready(self, timeout_s):
        err = _P()
        _check(_lib.relink_client_wait_ready(self._handle, int(timeout_s * 1000), ctypes.byref(err)), err)

    def update_credentials(self, password, username=None):
        """Changes the credentials on the live client (a password rotation
        without a restart): the live connection re-authenticates at once and
        reconnects use them; a client stuck on a wrong password (MISCONFIGURED)
        tries again at once. A refusal (WRONGPASS) changes nothing and raises
        RelinkError with code REDIS_ERROR."""
        err = _P()
        _check(_lib.relink_client_update_credentials(self._handle, _text(username, "username"),
                                                     _text(password, "password"), ctypes.byref(err)), err)

    def close(self):
        if self._handle:
            _lib.relink_client_free(self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


def backoff_delays(policy_fields, seed, count):
    """The first `count` delays (ms) of a backoff policy (fields of
    relink_backoff_policy over relink's default), elapsed = their running sum."""
    policy = BackoffPolicy()
    _check(_lib.relink_backoff_policy_default(ctypes.byref(policy)), None)
    for name, value in policy_fields.items():
        setattr(policy, name, value)
    backoff, err = _P(), _P()
    _check(_lib.relink_backoff_new(ctypes.byref(policy), seed, ctypes.byref(backoff), ctypes.byref(err)), err)
    delays, elapsed, delay = [], 0, c_uint64()
    try:
        while len(delays) < count and _lib.relink_backoff_next_delay(backoff, elapsed, ctypes.byref(delay)):
            delays.append(delay.value)
            elapsed += delay.value
    finally:
        _lib.relink_backoff_free(backoff)
    return delays
