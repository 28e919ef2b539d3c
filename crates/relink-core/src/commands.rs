//! Which Redis commands are safe to run twice, and which block their
//! connection (and for how long).
//!
//! A command whose fate is unknown (sent, then the connection died) may be
//! retried only if running it twice cannot differ from running it once. That
//! holds for the commands Redis flags `readonly` in its command table, listed
//! here (Redis 7.2), plus a few harmless connection commands. Blocking reads
//! (`BLPOP`, `XREAD ... BLOCK` is still a read) and anything that writes are
//! absent: `INCR` is never on this list. The list errs on the side of
//! leaving a command out; a caller can always declare its own command idempotent.

use core::time::Duration;

/// Read-only commands, upper case, sorted (for binary search).
const READ_ONLY: &[&str] = &[
    "BITCOUNT",
    "BITFIELD_RO",
    "BITPOS",
    "DBSIZE",
    "DUMP",
    "ECHO",
    "EVALSHA_RO",
    "EVAL_RO",
    "EXISTS",
    "EXPIRETIME",
    "FCALL_RO",
    "GEODIST",
    "GEOHASH",
    "GEOPOS",
    "GEORADIUSBYMEMBER_RO",
    "GEORADIUS_RO",
    "GEOSEARCH",
    "GET",
    "GETBIT",
    "GETRANGE",
    "HEXISTS",
    "HGET",
    "HGETALL",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HRANDFIELD",
    "HSCAN",
    "HSTRLEN",
    "HVALS",
    "INFO",
    "KEYS",
    "LASTSAVE",
    "LCS",
    "LINDEX",
    "LLEN",
    "LPOS",
    "LRANGE",
    "MEMORY",
    "MGET",
    "OBJECT",
    "PEXPIRETIME",
    "PFCOUNT",
    "PING",
    "PTTL",
    "RANDOMKEY",
    "ROLE",
    "SCAN",
    "SCARD",
    "SDIFF",
    "SINTER",
    "SINTERCARD",
    "SISMEMBER",
    "SMEMBERS",
    "SMISMEMBER",
    "SORT_RO",
    "SRANDMEMBER",
    "SSCAN",
    "STRLEN",
    "SUBSTR",
    "SUNION",
    "TIME",
    "TTL",
    "TYPE",
    "XINFO",
    "XLEN",
    "XPENDING",
    "XRANGE",
    "XREAD",
    "XREVRANGE",
    "ZCARD",
    "ZCOUNT",
    "ZDIFF",
    "ZINTER",
    "ZINTERCARD",
    "ZLEXCOUNT",
    "ZMSCORE",
    "ZRANDMEMBER",
    "ZRANGE",
    "ZRANGEBYLEX",
    "ZRANGEBYSCORE",
    "ZRANK",
    "ZREVRANGE",
    "ZREVRANGEBYLEX",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCAN",
    "ZSCORE",
    "ZUNION",
];

#[cfg(not(target_arch = "wasm32"))]
/// A command name of at most [`KEY_BYTES`] bytes as three integers that
/// compare as its upper-case bytes do (big-endian, zero-padded), with its
/// length in the last byte: every call asks [`is_read_only`], and comparing
/// three integers costs no `memcmp` per probe.
const fn name_key(name: &[u8]) -> [u64; 3] {
    let mut key = [0u64; 3];
    let mut i = 0;
    while i < name.len() && i < KEY_BYTES {
        key[i / 8] |= (name[i].to_ascii_uppercase() as u64) << (56 - 8 * (i % 8));
        i += 1;
    }
    key[2] |= name.len() as u64 & 0xff;
    key
}

/// The longest name [`name_key`] keys (the 24th byte holds the length).
const KEY_BYTES: usize = 23;

#[cfg(not(target_arch = "wasm32"))]
/// [`READ_ONLY`] as [`name_key`]s, in the same order.
const READ_ONLY_KEYS: [[u64; 3]; READ_ONLY.len()] = {
    let mut keys = [[0u64; 3]; READ_ONLY.len()];
    let mut i = 0;
    while i < READ_ONLY.len() {
        keys[i] = name_key(READ_ONLY[i].as_bytes());
        i += 1;
    }
    keys
};

#[cfg(not(target_arch = "wasm32"))]
/// Slots of [`READ_ONLY_SLOTS`]: under half of them taken, so a probe
/// sequence is short.
const SLOTS: usize = 256;

#[cfg(not(target_arch = "wasm32"))]
/// Where a key's probe sequence starts in [`READ_ONLY_SLOTS`] (a
/// multiplicative hash of its three words; the rotations and the shift
/// were picked so that no name is more than two probes from its slot,
/// which a test checks).
const fn slot_of(key: &[u64; 3]) -> usize {
    let mut mixed = key[0] ^ key[1].rotate_left(5) ^ key[2].rotate_left(21);
    mixed ^= mixed >> 31;
    (mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize
}

#[cfg(not(target_arch = "wasm32"))]
/// [`READ_ONLY_KEYS`] hashed (open addressing, linear probing): 1 + the
/// key's index, 0 for an empty slot. Every call asks [`is_read_only`];
/// a binary search over the 89 names took 137 instructions, this takes
/// one or two probes. Built here by `const` evaluation rather than with
/// `phf`: the no_std core keeps its dependencies to what it cannot do
/// without, and the table is twenty lines.
const READ_ONLY_SLOTS: [u8; SLOTS] = {
    assert!(READ_ONLY.len() < SLOTS / 2 && READ_ONLY.len() < u8::MAX as usize);
    let mut slots = [0u8; SLOTS];
    let mut i = 0;
    while i < READ_ONLY_KEYS.len() {
        let mut slot = slot_of(&READ_ONLY_KEYS[i]);
        while slots[slot] != 0 {
            slot = (slot + 1) % SLOTS;
        }
        slots[slot] = i as u8 + 1;
        i += 1;
    }
    slots
};

/// Is `name` (any case) a read-only command, safe to run twice?
pub fn is_read_only(name: &[u8]) -> bool {
    if name.len() > KEY_BYTES {
        return false;
    }
    // The wasm engine searches the names themselves: the integer keys
    // would cost its 100 KiB budget 750 bytes, and a JS call's time goes
    // to node-redis and the boundary, not to this search.
    #[cfg(target_arch = "wasm32")]
    {
        let mut upper = [0u8; KEY_BYTES];
        for (u, b) in upper.iter_mut().zip(name) {
            *u = b.to_ascii_uppercase();
        }
        let upper = &upper[..name.len()];
        READ_ONLY
            .binary_search_by(|probe| probe.as_bytes().cmp(upper))
            .is_ok()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let key = name_key(name);
        let mut slot = slot_of(&key);
        // Bounded by the table: it always has an empty slot.
        for _ in 0..SLOTS {
            match READ_ONLY_SLOTS[slot] {
                0 => return false,
                i if READ_ONLY_KEYS[usize::from(i) - 1] == key => return true,
                _ => slot = (slot + 1) % SLOTS,
            }
        }
        false
    }
}

/// Commands a cluster client runs on many nodes (every master, or every
/// node), not on one slot's: `FLUSHALL`, `SCRIPT LOAD`, `CONFIG SET`, ...
/// (the writes among redis-rs's all-nodes and all-masters routes; a
/// container command is named with its subcommand). A durable write
/// (followed by `WAIT` in one pipeline, which goes to one node) cannot be
/// one of them.
const FAN_OUT: [&str; 20] = [
    "ACL DELUSER",
    "ACL SAVE",
    "ACL SETUSER",
    "CLIENT SETINFO",
    "CLIENT SETNAME",
    "CONFIG RESETSTAT",
    "CONFIG REWRITE",
    "CONFIG SET",
    "DEBUG",
    "FLUSHALL",
    "FLUSHDB",
    "FUNCTION DELETE",
    "FUNCTION FLUSH",
    "FUNCTION LOAD",
    "FUNCTION RESTORE",
    "LATENCY RESET",
    "MEMORY PURGE",
    "SCRIPT FLUSH",
    "SCRIPT LOAD",
    "SLOWLOG RESET",
];

/// Does a cluster client run `args` (name first) on many nodes, where a
/// single-node command runs on one slot's (the writes among redis-rs's all-nodes
/// and all-masters routes)?
pub fn fans_out_on_cluster<'a>(args: impl IntoIterator<Item = &'a [u8]>) -> bool {
    let mut args = args.into_iter();
    let Some(name) = args.next() else {
        return false;
    };
    let matches = |entry: &str, with_sub: Option<&[u8]>| {
        let (cmd, sub) = entry
            .split_once(' ')
            .map_or((entry, None), |(c, s)| (c, Some(s)));
        cmd.as_bytes().eq_ignore_ascii_case(name)
            && match (sub, with_sub) {
                (None, _) => true,
                (Some(s), Some(w)) => s.as_bytes().eq_ignore_ascii_case(w),
                (Some(_), None) => false,
            }
    };
    let sub = args.next();
    FAN_OUT.iter().any(|entry| matches(entry, sub))
}

/// What a command does to the state of the connection it runs on, for a
/// connection leased to one user (`WATCH`/`MULTI`/`EXEC` on it): whether
/// the connection can go back to the shared set afterwards, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEffect {
    /// Nothing that outlives the command.
    None,
    /// `WATCH`: keys are watched until `EXEC`, `DISCARD` or `UNWATCH`.
    Watch,
    /// `MULTI`: a transaction is open until `EXEC` or `DISCARD`.
    Multi,
    /// `EXEC`, `DISCARD`: the transaction and the watches end.
    EndTransaction,
    /// `UNWATCH`: the watches end.
    Unwatch,
    /// State relink cannot undo cheaply (`SELECT`, `CLIENT TRACKING`,
    /// `CLIENT REPLY`, `CLIENT SETNAME`, `HELLO`, `AUTH`, `RESET`,
    /// `SUBSCRIBE`, `MONITOR`, `READONLY`, ...): the connection must not be
    /// handed to anyone else.
    Lasting,
}

/// What `args` (name first) does to its connection's state.
pub fn connection_effect<'a>(args: impl IntoIterator<Item = &'a [u8]>) -> ConnectionEffect {
    let mut args = args.into_iter();
    let Some(name) = args.next() else {
        return ConnectionEffect::None;
    };
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    if is("WATCH") {
        ConnectionEffect::Watch
    } else if is("MULTI") {
        ConnectionEffect::Multi
    } else if is("EXEC") || is("DISCARD") {
        ConnectionEffect::EndTransaction
    } else if is("UNWATCH") {
        ConnectionEffect::Unwatch
    } else if is("CLIENT") {
        // CLIENT ID, LIST, INFO, GETNAME, KILL, PAUSE... leave this
        // connection as it was; TRACKING, REPLY, SETNAME, NO-EVICT,
        // NO-TOUCH and the like change it.
        let sub = args.next().unwrap_or_default();
        let harmless = [
            "ID", "LIST", "INFO", "GETNAME", "KILL", "PAUSE", "UNPAUSE", "UNBLOCK",
        ]
        .iter()
        .any(|h| sub.eq_ignore_ascii_case(h.as_bytes()));
        if harmless {
            ConnectionEffect::None
        } else {
            ConnectionEffect::Lasting
        }
    } else if [
        "SELECT",
        "HELLO",
        "AUTH",
        "RESET",
        "SUBSCRIBE",
        "PSUBSCRIBE",
        "SSUBSCRIBE",
        "MONITOR",
        "READONLY",
        "READWRITE",
        "ASKING",
        "SYNC",
        "PSYNC",
        "REPLCONF",
    ]
    .iter()
    .any(|n| is(n))
    {
        ConnectionEffect::Lasting
    } else {
        ConnectionEffect::None
    }
}

/// Does this command (`args`, its name first) wait for the writes made on
/// its own connection (`WAIT`, `WAITAOF`)? Such a command blocks, but must
/// run on the connection whose writes it is about, never on another one.
pub fn waits_for_own_writes<'a>(args: impl IntoIterator<Item = &'a [u8]>) -> bool {
    args.into_iter().next().is_some_and(|name| {
        name.eq_ignore_ascii_case(b"WAIT") || name.eq_ignore_ascii_case(b"WAITAOF")
    })
}

/// How long a blocking command may hold the connection it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Blocking {
    /// Until something arrives (a timeout of 0).
    Forever,
    /// At most this long, by its own timeout argument.
    For {
        /// The command's own timeout.
        #[serde(with = "crate::time::millis")]
        timeout: Duration,
    },
}

/// A blocking command whose timeout argument is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{command}: the timeout `{}` is {reason}", .timeout)]
pub struct BadTimeout {
    /// The command, upper case.
    pub command: &'static str,
    /// Why it is not a timeout.
    pub reason: &'static str,
    /// The argument as given (its first 24 bytes, lossily).
    pub timeout: ShortText,
}

/// A few bytes of an argument, for an error message without allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShortText {
    bytes: [u8; 24],
    len: u8,
}

impl ShortText {
    fn new(arg: &[u8]) -> ShortText {
        let mut bytes = [0u8; 24];
        let len = arg.len().min(bytes.len());
        bytes[..len].copy_from_slice(&arg[..len]);
        ShortText {
            bytes,
            len: len as u8,
        }
    }
}

impl core::fmt::Display for ShortText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for chunk in self.bytes[..usize::from(self.len)].utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{fffd}")?;
            }
        }
        Ok(())
    }
}

/// Where a blocking command keeps its timeout, and in which unit.
#[derive(Clone, Copy)]
enum TimeoutArg {
    /// Seconds (a float), the last argument: `BLPOP key [key ...] timeout`.
    LastSeconds,
    /// Seconds (a float), the first argument: `BLMPOP timeout numkeys ...`.
    FirstSeconds,
    /// Milliseconds (an integer), the last argument: `WAIT numreplicas timeout`.
    LastMillis,
    /// Milliseconds after a `BLOCK` keyword before `STREAMS`; no `BLOCK`: not blocking.
    BlockKeyword,
}

/// The blocking commands (upper case, sorted) and where their timeout is.
const BLOCKING: &[(&str, TimeoutArg)] = &[
    ("BLMOVE", TimeoutArg::LastSeconds),
    ("BLMPOP", TimeoutArg::FirstSeconds),
    ("BLPOP", TimeoutArg::LastSeconds),
    ("BRPOP", TimeoutArg::LastSeconds),
    ("BRPOPLPUSH", TimeoutArg::LastSeconds),
    ("BZMPOP", TimeoutArg::FirstSeconds),
    ("BZPOPMAX", TimeoutArg::LastSeconds),
    ("BZPOPMIN", TimeoutArg::LastSeconds),
    ("WAIT", TimeoutArg::LastMillis),
    ("WAITAOF", TimeoutArg::LastMillis),
    ("XREAD", TimeoutArg::BlockKeyword),
    ("XREADGROUP", TimeoutArg::BlockKeyword),
];

/// Does this command (`args`, its name first) block its connection, and for
/// how long? `Ok(None)` for every command that does not (and for `XREAD`
/// without `BLOCK`). A blocking command whose timeout is negative, not a
/// number, or missing is an error: it would be refused by the server, and
/// its time on the connection cannot be known.
pub fn blocking<'a>(
    args: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Option<Blocking>, BadTimeout> {
    let mut args = args.into_iter();
    let Some(name) = args.next() else {
        return Ok(None);
    };
    // Every blocking command starts with B, W or X: the hot path's GET
    // and SET leave here without a search.
    if !matches!(
        name.first().map(u8::to_ascii_uppercase),
        Some(b'B' | b'W' | b'X')
    ) {
        return Ok(None);
    }
    let mut upper = [0u8; 16];
    if name.len() > upper.len() {
        return Ok(None);
    }
    for (u, b) in upper.iter_mut().zip(name) {
        *u = b.to_ascii_uppercase();
    }
    let upper = &upper[..name.len()];
    let Ok(i) = BLOCKING.binary_search_by(|(probe, _)| probe.as_bytes().cmp(upper)) else {
        return Ok(None);
    };
    let (command, place) = BLOCKING[i];
    let bad = |reason, arg: &[u8]| BadTimeout {
        command,
        reason,
        timeout: ShortText::new(arg),
    };
    let arg = match place {
        TimeoutArg::LastSeconds | TimeoutArg::LastMillis => args.last(),
        TimeoutArg::FirstSeconds => args.next(),
        TimeoutArg::BlockKeyword => {
            let mut block = None;
            while let Some(arg) = args.next() {
                if arg.eq_ignore_ascii_case(b"STREAMS") {
                    break;
                }
                if arg.eq_ignore_ascii_case(b"BLOCK") {
                    block = Some(args.next().ok_or_else(|| bad("missing", b""))?);
                }
            }
            match block {
                Some(arg) => Some(arg),
                None => return Ok(None),
            }
        }
    };
    let arg = arg.ok_or_else(|| bad("missing", b""))?;
    let text = core::str::from_utf8(arg).map_err(|_| bad("not a number", arg))?;
    let timeout = match place {
        TimeoutArg::LastSeconds | TimeoutArg::FirstSeconds => {
            let secs: f64 = text.parse().map_err(|_| bad("not a number", arg))?;
            if secs.is_nan() || secs.is_infinite() {
                return Err(bad("not a number", arg));
            }
            if secs < 0.0 {
                return Err(bad("negative", arg));
            }
            Duration::try_from_secs_f64(secs).map_err(|_| bad("too large", arg))?
        }
        TimeoutArg::LastMillis | TimeoutArg::BlockKeyword => {
            if text.starts_with('-') && text.len() > 1 {
                return Err(bad("negative", arg));
            }
            Duration::from_millis(text.parse().map_err(|_| bad("not a number", arg))?)
        }
    };
    Ok(Some(if timeout.is_zero() {
        Blocking::Forever
    } else {
        Blocking::For { timeout }
    }))
}

/// Which arguments of a cacheable command are keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKeys {
    /// The first argument (`GET key`, `HGET key field`, `ZRANGE key ...`).
    First,
    /// Every argument (`MGET k1 k2`, `EXISTS k1 k2`, `SUNION k1 k2`).
    All,
}

/// Reads whose reply depends only on the keys they name and that the
/// server tracks for client-side caching (`CLIENT TRACKING`), upper case,
/// sorted: a subset of [`READ_ONLY`]'s. Left out: replies that change
/// without a write (`TTL`, `PTTL`, `EXPIRETIME`, `OBJECT`, `TIME`), random ones
/// (`SRANDMEMBER`, `HRANDFIELD`, `ZRANDMEMBER`, `RANDOMKEY`), cursors
/// (`SCAN` and kin), reads of other keys than those named (`SORT_RO` with
/// `BY`/`GET`, scripts, `KEYS`), blocking and stream-group reads, and the
/// keyless ones (`DBSIZE`, `INFO`).
const CACHEABLE: &[(&str, CacheKeys)] = &[
    ("BITCOUNT", CacheKeys::First),
    ("BITPOS", CacheKeys::First),
    ("EXISTS", CacheKeys::All),
    ("GEODIST", CacheKeys::First),
    ("GEOHASH", CacheKeys::First),
    ("GEOPOS", CacheKeys::First),
    ("GET", CacheKeys::First),
    ("GETBIT", CacheKeys::First),
    ("GETRANGE", CacheKeys::First),
    ("HEXISTS", CacheKeys::First),
    ("HGET", CacheKeys::First),
    ("HGETALL", CacheKeys::First),
    ("HKEYS", CacheKeys::First),
    ("HLEN", CacheKeys::First),
    ("HMGET", CacheKeys::First),
    ("HSTRLEN", CacheKeys::First),
    ("HVALS", CacheKeys::First),
    ("LINDEX", CacheKeys::First),
    ("LLEN", CacheKeys::First),
    ("LPOS", CacheKeys::First),
    ("LRANGE", CacheKeys::First),
    ("MGET", CacheKeys::All),
    ("SCARD", CacheKeys::First),
    ("SDIFF", CacheKeys::All),
    ("SINTER", CacheKeys::All),
    ("SISMEMBER", CacheKeys::First),
    ("SMEMBERS", CacheKeys::First),
    ("SMISMEMBER", CacheKeys::First),
    ("STRLEN", CacheKeys::First),
    ("SUBSTR", CacheKeys::First),
    ("SUNION", CacheKeys::All),
    ("TYPE", CacheKeys::First),
    ("XLEN", CacheKeys::First),
    ("XRANGE", CacheKeys::First),
    ("XREVRANGE", CacheKeys::First),
    ("ZCARD", CacheKeys::First),
    ("ZCOUNT", CacheKeys::First),
    ("ZLEXCOUNT", CacheKeys::First),
    ("ZMSCORE", CacheKeys::First),
    ("ZRANGE", CacheKeys::First),
    ("ZRANGEBYLEX", CacheKeys::First),
    ("ZRANGEBYSCORE", CacheKeys::First),
    ("ZRANK", CacheKeys::First),
    ("ZREVRANGE", CacheKeys::First),
    ("ZREVRANGEBYLEX", CacheKeys::First),
    ("ZREVRANGEBYSCORE", CacheKeys::First),
    ("ZREVRANK", CacheKeys::First),
    ("ZSCORE", CacheKeys::First),
];

/// May the reply to the command `name` (any case) be cached on the client,
/// and which of its arguments are keys? `None`: never cached.
pub fn cacheable(name: &[u8]) -> Option<CacheKeys> {
    let mut upper = [0u8; 24];
    if name.len() > upper.len() {
        return None;
    }
    for (u, b) in upper.iter_mut().zip(name) {
        *u = b.to_ascii_uppercase();
    }
    let upper = &upper[..name.len()];
    CACHEABLE
        .binary_search_by(|(probe, _)| probe.as_bytes().cmp(upper))
        .ok()
        .map(|i| CACHEABLE[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(cmd: &str) -> Result<Option<Blocking>, BadTimeout> {
        blocking(cmd.split(' ').map(str::as_bytes))
    }

    fn secs(s: u64) -> Option<Blocking> {
        Some(Blocking::For {
            timeout: Duration::from_secs(s),
        })
    }

    #[test]
    fn commands_a_cluster_runs_on_many_nodes() {
        let fans = |cmd: &str| fans_out_on_cluster(cmd.split(' ').map(str::as_bytes));
        assert!(fans("flushall"));
        assert!(fans("FLUSHDB ASYNC"));
        assert!(fans("script load return 1"));
        assert!(fans("CONFIG set maxmemory 1"));
        assert!(!fans("CONFIG GET maxmemory"));
        assert!(!fans("SCRIPT"));
        assert!(!fans("SET k v"));
        assert!(!fans("INCR flushall"));
        assert!(!fans(""));
    }

    #[test]
    fn every_blocking_command_starts_with_b_w_or_x() {
        assert!(BLOCKING
            .iter()
            .all(|(name, _)| matches!(name.as_bytes()[0], b'B' | b'W' | b'X')));
    }

    #[test]
    fn the_blocking_table_is_sorted() {
        assert!(BLOCKING.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn blocking_commands_and_their_timeouts() {
        assert_eq!(block("BLPOP q1 q2 5"), Ok(secs(5)));
        assert_eq!(block("brpop q 0"), Ok(Some(Blocking::Forever)));
        assert_eq!(
            block("BLPOP q 0.25"),
            Ok(Some(Blocking::For {
                timeout: Duration::from_millis(250)
            }))
        );
        assert_eq!(block("BLMOVE a b LEFT RIGHT 2"), Ok(secs(2)));
        assert_eq!(block("BRPOPLPUSH a b 3"), Ok(secs(3)));
        assert_eq!(block("BLMPOP 4 2 a b LEFT COUNT 3"), Ok(secs(4)));
        assert_eq!(block("BZMPOP 1 1 z MIN"), Ok(secs(1)));
        assert_eq!(
            block("WAIT 1 1500"),
            Ok(Some(Blocking::For {
                timeout: Duration::from_millis(1500)
            }))
        );
        assert_eq!(block("WAITAOF 1 0 0"), Ok(Some(Blocking::Forever)));
        assert_eq!(
            block("XREADGROUP GROUP g c COUNT 10 BLOCK 2000 STREAMS s >"),
            Ok(secs(2))
        );
        assert_eq!(
            block("xread block 0 streams s $"),
            Ok(Some(Blocking::Forever))
        );
        // Not blocking: XREAD without BLOCK, a key named BLOCK after STREAMS, others.
        assert_eq!(block("XREAD COUNT 1 STREAMS s 0"), Ok(None));
        assert_eq!(block("XREAD STREAMS BLOCK 0"), Ok(None));
        assert_eq!(block("GET k"), Ok(None));
        assert_eq!(block("LPOP q"), Ok(None));
        assert_eq!(blocking(core::iter::empty()), Ok(None));
    }

    #[test]
    fn wait_waits_for_its_own_connection() {
        let own = |cmd: &str| waits_for_own_writes(cmd.split(' ').map(str::as_bytes));
        assert!(own("WAIT 1 100") && own("waitaof 1 0 100"));
        assert!(!own("BLPOP q 1") && !own("GET k"));
    }

    #[test]
    fn connection_effects() {
        let effect = |cmd: &str| connection_effect(cmd.split(' ').map(str::as_bytes));
        assert_eq!(effect("WATCH k"), ConnectionEffect::Watch);
        assert_eq!(effect("multi"), ConnectionEffect::Multi);
        assert_eq!(effect("EXEC"), ConnectionEffect::EndTransaction);
        assert_eq!(effect("DISCARD"), ConnectionEffect::EndTransaction);
        assert_eq!(effect("UNWATCH"), ConnectionEffect::Unwatch);
        assert_eq!(effect("SELECT 2"), ConnectionEffect::Lasting);
        assert_eq!(effect("CLIENT TRACKING ON"), ConnectionEffect::Lasting);
        assert_eq!(effect("CLIENT SETNAME x"), ConnectionEffect::Lasting);
        assert_eq!(effect("CLIENT ID"), ConnectionEffect::None);
        assert_eq!(effect("client list"), ConnectionEffect::None);
        assert_eq!(effect("GET k"), ConnectionEffect::None);
        assert_eq!(
            connection_effect(core::iter::empty()),
            ConnectionEffect::None
        );
    }

    #[test]
    fn bad_timeouts_are_named() {
        let e = block("BLPOP q -1").unwrap_err();
        assert_eq!((e.command, e.reason), ("BLPOP", "negative"));
        assert_eq!(alloc::format!("{e}"), "BLPOP: the timeout `-1` is negative");
        assert_eq!(block("BLPOP q soon").unwrap_err().reason, "not a number");
        assert_eq!(block("BLPOP q nan").unwrap_err().reason, "not a number");
        assert_eq!(block("BLPOP q inf").unwrap_err().reason, "not a number");
        assert_eq!(block("WAIT 1 -5").unwrap_err().reason, "negative");
        assert_eq!(
            block("XREAD BLOCK x STREAMS s 0").unwrap_err().reason,
            "not a number"
        );
        assert_eq!(block("XREAD BLOCK").unwrap_err().reason, "missing");
        assert_eq!(block("BLPOP").unwrap_err().reason, "missing");
        assert_eq!(block("BLPOP q 1e300").unwrap_err().reason, "too large");
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn every_read_only_name_is_one_or_two_probes_from_its_slot() {
        let mut longest = 0;
        for (i, key) in READ_ONLY_KEYS.iter().enumerate() {
            let start = slot_of(key);
            let at = (0..SLOTS)
                .map(|step| (start + step) % SLOTS)
                .position(|slot| usize::from(READ_ONLY_SLOTS[slot]) == i + 1)
                .expect("every key has a slot");
            longest = longest.max(at + 1);
        }
        assert!(
            longest <= 2,
            "a name takes {longest} probes: pick other constants in slot_of"
        );
        assert_eq!(
            READ_ONLY_SLOTS.iter().filter(|&&s| s != 0).count(),
            READ_ONLY.len()
        );
    }

    #[test]
    fn the_table_is_sorted_and_upper_case() {
        assert!(READ_ONLY.windows(2).all(|w| w[0] < w[1]));
        // The keys searched keep the names' order, and every name fits one.
        assert!(READ_ONLY_KEYS.windows(2).all(|w| w[0] < w[1]));
        assert!(READ_ONLY.iter().all(|n| n.len() <= KEY_BYTES));
        assert!(READ_ONLY
            .iter()
            .all(|c| c.bytes().all(|b| !b.is_ascii_lowercase())));
    }

    #[test]
    fn cacheable_reads_are_sorted_read_only_and_looked_up_in_any_case() {
        assert!(CACHEABLE.windows(2).all(|w| w[0].0 < w[1].0));
        for (name, _) in CACHEABLE {
            assert!(is_read_only(name.as_bytes()), "{name} is not read-only");
        }
        assert_eq!(cacheable(b"get"), Some(CacheKeys::First));
        assert_eq!(cacheable(b"Mget"), Some(CacheKeys::All));
        for never in [
            "TTL",
            "SRANDMEMBER",
            "SCAN",
            "SET",
            "INCR",
            "SORT_RO",
            "KEYS",
            "",
        ] {
            assert_eq!(cacheable(never.as_bytes()), None, "{never}");
        }
        assert_eq!(cacheable(&[b'G'; 40]), None);
    }

    #[test]
    fn reads_are_read_only_and_writes_are_not() {
        for read in ["GET", "get", "Hgetall", "XRANGE", "ping", "MGET"] {
            assert!(is_read_only(read.as_bytes()), "{read}");
        }
        for write in [
            "INCR",
            "SET",
            "DEL",
            "EVAL",
            "XADD",
            "BLPOP",
            "",
            "GETDEL",
            "GETEX",
            "GE",
            "GET\0",
            "a-very-long-command-name-indeed",
            "GEORADIUSBYMEMBER_RO_AND_MORE",
        ] {
            assert!(!is_read_only(write.as_bytes()), "{write:?}");
        }
        for name in READ_ONLY {
            assert!(is_read_only(name.to_ascii_lowercase().as_bytes()), "{name}");
        }
    }
}
