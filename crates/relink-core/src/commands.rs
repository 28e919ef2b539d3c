//! Which Redis commands are safe to run twice.
//!
//! A command whose fate is unknown (sent, then the connection died) may be
//! retried only if running it twice cannot differ from running it once. That
//! holds for the commands Redis flags `readonly` in its command table, listed
//! here (Redis 7.2), plus a few harmless connection commands. Blocking reads
//! (`BLPOP`, `XREAD ... BLOCK` is still a read) and anything that writes are
//! absent: `INCR` is never on this list. The list errs on the side of
//! leaving a command out; a caller can always declare its own command idempotent.

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

/// Is `name` (any case) a read-only command, safe to run twice?
pub fn is_read_only(name: &[u8]) -> bool {
    let mut upper = [0u8; 24];
    if name.len() > upper.len() {
        return false;
    }
    for (u, b) in upper.iter_mut().zip(name) {
        *u = b.to_ascii_uppercase();
    }
    let upper = &upper[..name.len()];
    READ_ONLY
        .binary_search_by(|probe| probe.as_bytes().cmp(upper))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_upper_case() {
        assert!(READ_ONLY.windows(2).all(|w| w[0] < w[1]));
        assert!(READ_ONLY
            .iter()
            .all(|c| c.bytes().all(|b| !b.is_ascii_lowercase())));
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
            "a-very-long-command-name-indeed",
        ] {
            assert!(!is_read_only(write.as_bytes()), "{write}");
        }
    }
}
