"""relink for Python: a blocking Redis client that rides out outages.

relink keeps the connection alive (reconnect with backoff, heartbeats that
notice a hung server, a bounded backlog during outages, retries only when
they are safe) and tells what a failed command may have done. This package
is a thin, dependency-free ctypes layer over librelink, the C library built
from the same Rust engine; the wheel carries the library.

    import relink_redis

    with relink_redis.Client("redis://127.0.0.1:6379", heartbeat_interval_ms=250) as client:
        client.wait_ready(5.0)
        client.command("SET", "greeting", b"hello\\x00world")   # bytes in
        print(client.command("GET", "greeting"))               # bytes out
        try:
            client.command("INCR", "visits")
        except relink_redis.OutcomeUnknown:
            ...  # sent, no reply: it may have run (relink never retries an INCR)
        except relink_redis.NotApplied:
            ...  # certainly not run: safe to try again
        with client.subscribe("news") as news:           # restored after reconnects
            for item in news:                            # Message, Restored(gap_s) or Lagged
                ...

Failures form a hierarchy that mirrors what may have happened on the server:
RelinkError > CommandFailed > NotApplied / OutcomeUnknown / Rejected (>
ServerError for an error reply); InvalidArgument and InvalidConfig (also
ValueErrors) for bad input; NotReady when wait_ready runs
out of time; Misconfigured when the first connection fails for a cause
retrying will not fix.

$RELINK_LIB, when set, names another librelink.so to load (development).
"""

from __future__ import annotations

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
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Type, Union

__all__ = [
    "Client",
    "CacheStats",
    "Subscription",
    "Message",
    "Restored",
    "Lagged",
    "RelinkError",
    "InvalidArgument",
    "InvalidConfig",
    "NotReady",
    "Misconfigured",
    "CommandFailed",
    "NotApplied",
    "OutcomeUnknown",
    "Rejected",
    "ServerError",
    "backoff_delays",
    "version",
]

# Codes, outcomes, states, reply types: the values of relink.h.
OK = 0
INVALID_ARGUMENT = 1
INVALID_CONFIG = 2
PANIC = 3
REENTRANT_CALL = 4
STRUCT_SIZE = 5
NOT_CONNECTED = 100
BACKLOG_FULL = 101
QUEUE_TIMEOUT = 102
MAYBE_APPLIED = 103
NOT_APPLIED = 104
SHUTDOWN = 105
TIMEOUT = 106
REDIS_ERROR = 107
DEADLINE_EXCEEDED = 108
MISCONFIGURED = 109
OUTCOME_NONE, OUTCOME_NOT_APPLIED, OUTCOME_UNKNOWN, OUTCOME_REJECTED = range(4)
STATES = ("idle", "connecting", "ready", "transient_failure", "shutdown")
OUTAGE_QUEUE, OUTAGE_FAIL_FAST = 0, 1
CACHE_OFF, CACHE_ON, CACHE_BROADCAST = range(3)
CACHE_STATES = ("off", "suspended", "serving")
SUBSCRIBE_CHANNELS, SUBSCRIBE_PATTERNS, SUBSCRIBE_SHARD_CHANNELS = range(3)
ITEM_MESSAGE, ITEM_RESTORED, ITEM_LAGGED = 1, 2, 3
(REPLY_NIL, REPLY_INTEGER, REPLY_DOUBLE, REPLY_STRING, REPLY_STATUS, REPLY_ERROR,
 REPLY_ARRAY, REPLY_MAP, REPLY_BOOLEAN) = range(9)

#: What a command may return: bytes for strings, str for a status (``"OK"``),
#: int, float, bool, None, and lists and dicts of these.
Reply = Any
#: What a command argument may be: bytes as they are, str as UTF-8, numbers as text.
Arg = Union[bytes, str, int, float]


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
    # relink_options: struct_size first (the ABI rule of relink.h), filled by
    # relink_options_default with this layout's size.
    _fields_ = [
        ("struct_size", c_size_t),
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
        ("cache", c_uint32),
        ("cache_max_entries", c_uint32),
        ("cache_max_bytes", c_uint64),
        ("cache_ttl_ms", c_uint64),
        ("cache_prefixes", POINTER(c_char_p)),
        ("cache_prefix_count", c_size_t),
    ]


class _CacheStats(ctypes.Structure):
    # relink_cache_stats: written by the library.
    _fields_ = [
        ("state", c_uint32),
        ("hits", c_uint64),
        ("misses", c_uint64),
        ("invalidations", c_uint64),
        ("gap_flushes", c_uint64),
        ("evictions", c_uint64),
        ("entries", c_uint64),
        ("bytes", c_uint64),
    ]


class CacheStats(NamedTuple):
    """The client-side cache's figures (``Client.cache_stats()``), counted
    since the client was made; ``entries`` and ``bytes`` as they are now."""

    #: ``"off"`` (no cache: every figure is 0), ``"suspended"`` (no
    #: connection with tracking on: reads go to the server) or ``"serving"``.
    state: str
    #: Reads answered from the cache.
    hits: int
    #: Cacheable reads sent to the server while serving.
    misses: int
    #: Keys the server invalidated (a FLUSHALL or FLUSHDB counts one).
    invalidations: int
    #: Times the cache was emptied because its connection was lost.
    gap_flushes: int
    #: Entries dropped to stay within ``cache_max_entries`` / ``cache_max_bytes``.
    evictions: int
    #: Entries now.
    entries: int
    #: Bytes now.
    bytes: int


# The options that are text (C strings), set from str (or os.PathLike for files).
_TEXT_OPTIONS = ("client_name", "tls_ca_file", "tls_cert_file", "tls_key_file", "tls_server_name")


class PubSubItem(ctypes.Structure):
    # relink_pubsub_item: written by the library; its pointers are the
    # subscription's until the next call on it.
    _fields_ = [
        ("kind", c_uint32),
        ("channel", c_void_p),
        ("channel_len", c_size_t),
        ("pattern", c_void_p),
        ("pattern_len", c_size_t),
        ("payload", c_void_p),
        ("payload_len", c_size_t),
        ("gap_ms", c_uint64),
        ("missed", c_uint64),
    ]


def _library_path() -> str:
    configured = os.environ.get("RELINK_LIB")
    if configured:
        return configured
    bundled = os.path.join(os.path.dirname(os.path.abspath(__file__)), "librelink.so")
    if os.path.exists(bundled):
        return bundled
    raise OSError(
        f"librelink.so is not in {os.path.dirname(bundled)}: install relink-redis from its wheel "
        "(pip install relink-redis, or pip install ./bindings/python in a relink checkout), "
        "or set RELINK_LIB to a librelink.so"
    )


_lib = ctypes.CDLL(_library_path())
_P = c_void_p  # every opaque relink pointer
STATE_CALLBACK = ctypes.CFUNCTYPE(None, c_void_p, c_uint32, c_uint32)


def _sig(name: str, restype: Any, *argtypes: Any) -> None:
    fn = getattr(_lib, name)
    fn.restype, fn.argtypes = restype, list(argtypes)


_sig("relink_version", c_char_p)
_sig("relink_error_code", c_uint32, _P)
_sig("relink_error_outcome", c_uint32, _P)
_sig("relink_error_message", c_char_p, _P)
_sig("relink_error_free", None, _P)
_sig("relink_code_name", c_char_p, c_uint32)
_sig("relink_options_default", c_uint32, POINTER(Options), c_size_t)
_sig("relink_client_connect", c_uint32, c_char_p, POINTER(Options), POINTER(_P), POINTER(_P))
_sig("relink_client_command", c_uint32, _P, c_size_t, POINTER(c_char_p), POINTER(c_size_t),
     POINTER(_P), POINTER(_P))
_sig("relink_client_state", c_uint32, _P)
_sig("relink_client_wait_ready", c_uint32, _P, c_uint64, POINTER(_P))
_sig("relink_client_on_state_change", c_uint32, _P, STATE_CALLBACK, c_void_p, POINTER(_P))
_sig("relink_client_update_credentials", c_uint32, _P, c_char_p, c_char_p, POINTER(_P))
_sig("relink_client_cache_stats", c_uint32, _P, POINTER(_CacheStats), POINTER(_P))
_sig("relink_client_free", None, _P)
_sig("relink_client_subscribe", c_uint32, _P, c_uint32, POINTER(c_char_p), c_size_t, POINTER(_P), POINTER(_P))
_sig("relink_subscription_next", c_uint32, _P, c_uint64, POINTER(PubSubItem), POINTER(_P))
_sig("relink_subscription_unsubscribe", c_uint32, _P, POINTER(_P))
_sig("relink_subscription_free", None, _P)
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

#: The version of the loaded librelink.
version: str = _lib.relink_version().decode()


class RelinkError(Exception):
    """A relink failure: ``code`` (e.g. MAYBE_APPLIED), ``code_name``
    (``"RELINK_MAYBE_APPLIED"``), ``outcome`` (OUTCOME_*) and the message."""

    def __init__(self, code: int, outcome: int, message: str) -> None:
        self.code, self.outcome, self.message = code, outcome, message
        self.code_name: str = _lib.relink_code_name(code).decode()
        super().__init__(f"{self.code_name}: {message}")


class InvalidArgument(RelinkError, ValueError):
    """A value the C API cannot take: NULL, invalid UTF-8, a NUL inside a
    string, an unknown enumeration value, a struct of the wrong size."""


class InvalidConfig(RelinkError, ValueError):
    """A URL or option relink rejects; the message names it and says why."""


class NotReady(RelinkError):
    """``wait_ready`` ran out of time; the message names the last attempt's cause."""


class Misconfigured(RelinkError):
    """No connection, for a cause retrying will not fix (a wrong password, a
    server that is not Redis): fix the configuration (``update_credentials``)."""


class CommandFailed(RelinkError):
    """A command did not succeed; the subclass says what may have happened."""


class NotApplied(CommandFailed):
    """Certainly not applied (not sent, the client not connected, the backlog
    full, shut down, or refused before it ran): trying again is safe."""


class OutcomeUnknown(CommandFailed):
    """Sent, and no reply came: it may have been applied. relink retried it
    only if it is safe to run twice (a read, or declared idempotent)."""


class Rejected(CommandFailed):
    """The server refused it with an error; retrying gives the same error."""


class ServerError(Rejected):
    """The server answered with an error reply (``-ERR``, ``-WRONGTYPE`` ...):
    the message is the server's."""

    def __init__(self, message: str) -> None:
        super().__init__(REDIS_ERROR, OUTCOME_REJECTED, message)
        self.args = (message,)

    def __str__(self) -> str:
        return self.message


_BY_OUTCOME: Dict[int, Type[RelinkError]] = {
    OUTCOME_NOT_APPLIED: NotApplied,
    OUTCOME_UNKNOWN: OutcomeUnknown,
    OUTCOME_REJECTED: Rejected,
}
_BY_CODE: Dict[int, Type[RelinkError]] = {
    INVALID_ARGUMENT: InvalidArgument,
    STRUCT_SIZE: InvalidArgument,
    INVALID_CONFIG: InvalidConfig,
    TIMEOUT: NotReady,
    MISCONFIGURED: Misconfigured,
}


def _error(code: int, outcome: int, message: str) -> RelinkError:
    """The exception for a code and outcome: a command's failure by what may
    have happened to it, anything else by its code."""
    kind = _BY_OUTCOME.get(outcome) or _BY_CODE.get(code) or RelinkError
    return kind(code, outcome, message)


def _text(value: Union[str, bytes, None], what: str) -> Optional[bytes]:
    """`value` as the bytes of a C string: str is UTF-8 (a lone surrogate from
    os.fsdecode goes through as the byte it stood for, for relink to refuse),
    bytes go as they are, None is NULL."""
    if value is None or isinstance(value, bytes):
        data = value
    else:
        data = str(value).encode("utf-8", "surrogateescape")
    if data is not None and b"\0" in data:
        # C would see only the text before the NUL.
        raise InvalidArgument(INVALID_ARGUMENT, OUTCOME_NONE, f"`{what}` must not contain a NUL character")
    return data


def _set_option(struct: ctypes.Structure, name: str, value: Any, shown: str) -> None:
    """Sets a field of relink_options; an integer that the C field cannot
    hold (negative, or too large) is an error naming the option, not a
    silent wrap-around."""
    kind = {field[0]: field[1] for field in struct._fields_}[name]
    if kind in (c_uint32, c_uint64, c_size_t) and isinstance(value, int) and not isinstance(value, bool):
        bits = 8 * ctypes.sizeof(kind)
        if value < 0:
            raise InvalidConfig(INVALID_CONFIG, OUTCOME_NONE, f"`{shown}` is {value}: must not be negative")
        if value >= 1 << bits:
            raise InvalidConfig(INVALID_CONFIG, OUTCOME_NONE,
                                f"`{shown}` is {value}: must be less than 2**{bits}")
    setattr(struct, name, value)


def _check(code: int, err: Optional[c_void_p]) -> None:
    if code != OK:
        message = _lib.relink_error_message(err).decode("utf-8", "replace")
        outcome = _lib.relink_error_outcome(err)
        _lib.relink_error_free(err)
        raise _error(code, outcome, message)


def _convert(reply: c_void_p) -> Reply:
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


class Message:
    """A published message: ``channel`` (str), ``payload`` (bytes), and the
    ``pattern`` (str) that matched, for a pattern subscription."""

    __slots__ = ("channel", "payload", "pattern")

    def __init__(self, channel: str, payload: bytes, pattern: Optional[str]) -> None:
        self.channel, self.payload, self.pattern = channel, payload, pattern

    def __repr__(self) -> str:
        return f"Message(channel={self.channel!r}, payload={self.payload!r}, pattern={self.pattern!r})"


class Restored:
    """The subscription's connection was lost and is back (or a subscription
    made without a connection is now in place): messages published during
    the last ``gap_s`` seconds were not received. Pub/Sub has no replay."""

    __slots__ = ("gap_s",)

    def __init__(self, gap_s: float) -> None:
        self.gap_s = gap_s

    def __repr__(self) -> str:
        return f"Restored(gap_s={self.gap_s})"


class Lagged:
    """The reader fell behind: ``missed`` messages were dropped here."""

    __slots__ = ("missed",)

    def __init__(self, missed: int) -> None:
        self.missed = missed

    def __repr__(self) -> str:
        return f"Lagged(missed={self.missed})"


#: What a subscription yields.
Item = Union[Message, Restored, Lagged]


class Subscription:
    """Channels (or patterns, or shard channels) a Client subscribed to,
    restored after every reconnect. Iterate it (it ends when unsubscribed
    or when its client is closed), or call ``next(timeout_s)``. Use it as a
    context manager, or call ``unsubscribe()``/``close()``. One thread at a
    time may read it."""

    #: How long one blocking read lasts inside iteration, so that Ctrl-C and
    #: other threads get a turn (nothing is lost between reads).
    _SLICE_MS = 1000

    def __init__(self, handle: c_void_p) -> None:
        self._handle: Optional[c_void_p] = handle

    def next(self, timeout_s: float) -> Optional[Item]:
        """The next item, or None when none came within ``timeout_s``
        seconds. Raises RelinkError (code SHUTDOWN) once the subscription
        has ended."""
        if timeout_s < 0:
            raise InvalidArgument(INVALID_ARGUMENT, OUTCOME_NONE, f"`timeout_s` is {timeout_s}: must not be negative")
        if not self._handle:
            raise RelinkError(SHUTDOWN, OUTCOME_NONE, "the subscription is closed")
        item, err = PubSubItem(), _P()
        code = _lib.relink_subscription_next(self._handle, int(timeout_s * 1000), ctypes.byref(item),
                                             ctypes.byref(err))
        if code == TIMEOUT:
            _lib.relink_error_free(err)
            return None
        _check(code, err)
        if item.kind == ITEM_RESTORED:
            return Restored(item.gap_ms / 1000.0)
        if item.kind == ITEM_LAGGED:
            return Lagged(item.missed)
        channel = ctypes.string_at(item.channel, item.channel_len).decode("utf-8", "replace")
        pattern = (ctypes.string_at(item.pattern, item.pattern_len).decode("utf-8", "replace")
                   if item.pattern else None)
        return Message(channel, ctypes.string_at(item.payload, item.payload_len), pattern)

    def __iter__(self) -> "Subscription":
        return self

    def __next__(self) -> Item:
        # Bounded by the subscription: it ends when unsubscribed or its
        # client is closed.
        while True:
            try:
                item = self.next(self._SLICE_MS / 1000.0)
            except RelinkError as e:
                if e.code == SHUTDOWN:
                    raise StopIteration from None
                raise
            if item is not None:
                return item

    def unsubscribe(self) -> None:
        """Ends the subscription and waits until the server confirmed the
        unsubscribe of every name no other subscription wants. Idempotent."""
        if self._handle:
            err = _P()
            _check(_lib.relink_subscription_unsubscribe(self._handle, ctypes.byref(err)), err)
        self.close()

    def close(self) -> None:
        """Frees the subscription (unsubscribing without waiting). Idempotent."""
        if self._handle:
            _lib.relink_subscription_free(self._handle)
            self._handle = None

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class Client:
    """A blocking Redis client that rides out outages. Keyword arguments set
    fields of relink_options (``heartbeat_interval_ms=250``,
    ``outage_policy=OUTAGE_FAIL_FAST``, ``backoff_max_delay_ms=...``).

    ``url`` is ``redis://[user[:password]@]host[:port][/db]``, ``rediss://...``
    (TLS, when librelink was built with it) or ``redis+unix:///path?db=N``;
    ``valkey://`` and ``valkeys://`` are the same as ``redis://`` and
    ``rediss://``. A URL or option relink rejects raises InvalidConfig (or
    InvalidArgument for a value C cannot even pass) whose message says what
    is wrong. Use it as a context manager, or call ``close()``.

    TLS (a ``rediss://`` URL): ``tls_ca_file="ca.pem"`` trusts a private CA
    instead of the system's roots; ``tls_cert_file=`` and ``tls_key_file=``
    present a client certificate (mutual TLS); ``tls_server_name=`` verifies
    another name than the URL's host; ``tls_danger_accept_invalid_certs=True``
    turns verification off (development only).

    Client-side caching: ``cache=True`` (or ``CACHE_ON``) keeps the replies
    of reads (GET, MGET, HGETALL, ...) in memory, invalidated by the server
    when a key changes and emptied whenever the connection is lost;
    ``cache=CACHE_BROADCAST`` with ``cache_prefixes=["user:", ...]`` caches
    only keys under the prefixes (every key without them). Bounds:
    ``cache_max_entries=``, ``cache_max_bytes=``, ``cache_ttl_ms=``. Needs
    RESP3 (not ``?protocol=resp2``). Figures: ``cache_stats()``."""

    def __init__(self, url: Union[str, bytes, None],
                 on_state_change: Optional[Callable[[str, str], None]] = None,
                 **options: Any) -> None:
        self._handle: Optional[c_void_p] = None
        opts = Options()
        _check(_lib.relink_options_default(ctypes.byref(opts), ctypes.sizeof(opts)), None)
        for name, value in options.items():
            if name.startswith("backoff_") and hasattr(opts.backoff, name[len("backoff_"):]):
                _set_option(opts.backoff, name[len("backoff_"):], value, name)
            elif name in _TEXT_OPTIONS:
                path = os.fspath(value) if isinstance(value, os.PathLike) else value
                setattr(opts, name, _text(path, name))
            elif name == "tls_danger_accept_invalid_certs":
                opts.tls_danger_accept_invalid_certs = 1 if value else 0
            elif name == "cache" and isinstance(value, bool):
                opts.cache = CACHE_ON if value else CACHE_OFF
            elif name == "cache_prefixes":
                if isinstance(value, (str, bytes)):
                    raise TypeError("cache_prefixes is a list of prefixes, not one string")
                texts = [_text(p, "cache_prefixes") for p in value]
                # Kept alive until relink_client_connect has copied them.
                prefixes = (c_char_p * len(texts))(*texts)
                opts.cache_prefixes = ctypes.cast(prefixes, POINTER(c_char_p))
                opts.cache_prefix_count = len(texts)
            else:
                if name == "struct_size" or not hasattr(opts, name):
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

    def command(self, *args: Arg) -> Reply:
        """Runs one command; bytes arguments are sent as they are, str as
        UTF-8, numbers as their text. Returns bytes for a string reply, str
        for a status (``"OK"``), int, float, bool, None, list or dict; raises
        ServerError for an error reply and a CommandFailed for a failure."""
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

    def subscribe(self, *channels: Union[str, bytes]) -> Subscription:
        """Subscribes to ``channels`` (SUBSCRIBE) on a connection of its own,
        restored after every reconnect with a Restored item. Returns once
        the server confirmed it (at once, with a Restored item later, when
        there is no connection)."""
        return self._subscribe(SUBSCRIBE_CHANNELS, channels)

    def psubscribe(self, *patterns: Union[str, bytes]) -> Subscription:
        """Like subscribe, for glob patterns (PSUBSCRIBE)."""
        return self._subscribe(SUBSCRIBE_PATTERNS, patterns)

    def ssubscribe(self, *channels: Union[str, bytes]) -> Subscription:
        """Like subscribe, for shard channels (SSUBSCRIBE, Redis 7, RESP3)."""
        return self._subscribe(SUBSCRIBE_SHARD_CHANNELS, channels)

    def _subscribe(self, kind: int, names: Any) -> Subscription:
        raw = [_text(n, "channels") for n in names]
        argv = (c_char_p * len(raw))(*raw)
        handle, err = _P(), _P()
        _check(_lib.relink_client_subscribe(self._handle, kind, argv, len(raw), ctypes.byref(handle),
                                            ctypes.byref(err)), err)
        return Subscription(handle)

    @property
    def state(self) -> str:
        """``"idle"``, ``"connecting"``, ``"ready"``, ``"transient_failure"`` or ``"shutdown"``."""
        return STATES[_lib.relink_client_state(self._handle)]

    def cache_stats(self) -> CacheStats:
        """The client-side cache's state and figures (state ``"off"`` and
        zeros when the client was made without ``cache``)."""
        out, err = _CacheStats(), _P()
        _check(_lib.relink_client_cache_stats(self._handle, ctypes.byref(out), ctypes.byref(err)), err)
        return CacheStats(CACHE_STATES[out.state], out.hits, out.misses, out.invalidations,
                          out.gap_flushes, out.evictions, out.entries, out.bytes)

    def wait_ready(self, timeout_s: float) -> None:
        """Waits until the client is ready, for at most ``timeout_s`` seconds:
        NotReady when time runs out, Misconfigured when the configuration is wrong."""
        err = _P()
        _check(_lib.relink_client_wait_ready(self._handle, int(timeout_s * 1000), ctypes.byref(err)), err)

    def update_credentials(self, password: Union[str, bytes], username: Union[str, bytes, None] = None) -> None:
        """Changes the credentials on the live client (a password rotation
        without a restart): the live connection re-authenticates at once and
        reconnects use them; a client stuck on a wrong password (Misconfigured)
        tries again at once. A refusal (WRONGPASS) changes nothing and raises
        RelinkError with code REDIS_ERROR."""
        err = _P()
        _check(_lib.relink_client_update_credentials(self._handle, _text(username, "username"),
                                                     _text(password, "password"), ctypes.byref(err)), err)

    def close(self) -> None:
        """Shuts the client down: waiting commands fail, the connection closes. Idempotent."""
        if self._handle:
            _lib.relink_client_free(self._handle)
            self._handle = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def backoff_delays(policy_fields: Mapping[str, Any], seed: int, count: int) -> List[int]:
    """The first `count` delays (ms) of a backoff policy (fields of
    relink_backoff_policy over relink's default), elapsed = their running sum."""
    policy = BackoffPolicy()
    _check(_lib.relink_backoff_policy_default(ctypes.byref(policy)), None)
    for name, value in policy_fields.items():
        setattr(policy, name, value)
    backoff, err = _P(), _P()
    _check(_lib.relink_backoff_new(ctypes.byref(policy), seed, ctypes.byref(backoff), ctypes.byref(err)), err)
    delays: List[int] = []
    elapsed, delay = 0, c_uint64()
    try:
        while len(delays) < count and _lib.relink_backoff_next_delay(backoff, elapsed, ctypes.byref(delay)):
            delays.append(delay.value)
            elapsed += delay.value
    finally:
        _lib.relink_backoff_free(backoff)
    return delays
