//! Durable acknowledgements on a multiplexed connection: a write (or a
//! pipeline, or a transaction) goes out followed by `WAIT <replicas>
//! <timeout>` in the same round trip, or `WAITAOF 1 <replicas> <timeout>`
//! when the core's [`Durability`] asks for the append-only file and the
//! server has that command (Redis 7.2+; detected at connect, never
//! assumed). What the answer means is the core's
//! [`Durability::confirm`]: confirmed, the write's own reply is passed on;
//! not, the caller gets [`Error::NotReplicated`] ("outcome unknown:
//! replicated to N of M"), which the call policy never retries unless the
//! write is idempotent.
//!
//! `WAIT` blocks the connection it runs on until the replicas answer (at
//! most its timeout): on the shared connection, commands behind it wait
//! too. That is the price of the guarantee (the bench measures it).

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::SingleNodeRoutingInfo;
use redis::{Cmd, Pipeline, RedisError, Value};
use relink_core::{Confirmation, Durability};

use crate::calls::Request;
use crate::classify::Redirect;
use crate::Error;

/// Sends `request` with its `WAIT`; `waitaof`: the server has `WAITAOF`.
pub(crate) async fn send(
    conn: &mut MultiplexedConnection,
    request: Request<'_>,
    durable: Durability,
    waitaof: bool,
) -> Result<Value, RedisError> {
    let (pipe, offset, count) = with_wait(request, false, wait_command(&durable, waitaof));
    let values = conn.send_packed_commands(&pipe, offset, count).await?;
    settle(request, values, durable, waitaof)
}

/// Sends `request` with its `WAIT` on a cluster, as one pipeline, so both
/// run on the same node and the `WAIT` counts the replicas of the node
/// that applied the write: redis-rs routes the pipeline by its first keyed
/// command (to the slot's master, for a write), or to the node a redirect
/// named (`ASKING` first for an `ASK`). A command a cluster runs on many
/// nodes is refused before this ([`fans_out_on_cluster`](relink_core::commands::fans_out_on_cluster)).
/// `WAIT` only: whether each node has `WAITAOF` is not asked.
pub(crate) async fn send_cluster(
    conn: &mut ClusterConnection,
    request: Request<'_>,
    redirect: Option<&Redirect>,
    durable: Durability,
) -> Result<Value, RedisError> {
    let asking = redirect.is_some_and(|to| to.ask);
    let (pipe, offset, count) = with_wait(request, asking, wait_command(&durable, false));
    let values = match redirect {
        Some(to) => {
            let node = SingleNodeRoutingInfo::ByAddress {
                host: to.host.clone(),
                port: to.port,
            };
            conn.route_pipeline(pipe, offset, count, node).await?
        }
        None => redis::aio::ConnectionLike::req_packed_commands(conn, &pipe, offset, count).await?,
    };
    settle(request, values, durable, false)
}

/// `request` followed by `wait` as one pipeline, with the offset and count
/// of the replies to read: the request's own, then the wait's. (The
/// cache's fence uses it too, with a `PING`.)
pub(crate) fn with_wait(request: Request<'_>, asking: bool, wait: Cmd) -> (Pipeline, usize, usize) {
    let mut pipe = Pipeline::new();
    if asking {
        pipe.cmd("ASKING");
    }
    let skip = usize::from(asking);
    match request {
        Request::Cmd(cmd) => {
            pipe.add_command(cmd.clone()).add_command(wait);
            (pipe, skip, 2)
        }
        Request::Pipeline {
            pipeline,
            offset,
            count,
        } => {
            // The same commands the pipeline packs (a transaction's MULTI
            // and EXEC written out), then WAIT: one reply more to read.
            if pipeline.is_transaction() {
                pipe.cmd("MULTI");
            }
            for cmd in pipeline.cmd_iter() {
                pipe.add_command(cmd.clone());
            }
            if pipeline.is_transaction() {
                pipe.cmd("EXEC");
            }
            pipe.add_command(wait);
            (pipe, offset + skip, count + 1)
        }
    }
}

/// The request's reply if the wait confirmed it, else
/// [`Error::NotReplicated`].
fn settle(
    request: Request<'_>,
    mut values: Vec<Value>,
    durable: Durability,
    waitaof: bool,
) -> Result<Value, RedisError> {
    let waited = values.pop();
    let reply = match request {
        Request::Cmd(_) => {
            let reply = values.pop().unwrap_or(Value::Nil);
            if let Value::ServerError(_) = reply {
                // Refused or failed: nothing to confirm, the reply is the answer.
                return Ok(reply);
            }
            reply
        }
        Request::Pipeline { pipeline, .. } => {
            // A transaction that did not run (EXECABORT: a command refused
            // while queued; nil: a WATCHed key changed) applied nothing:
            // its answer is the answer, whatever the replicas say.
            if pipeline.is_transaction() {
                match values.last() {
                    Some(Value::ServerError(e)) => return Err(RedisError::from(e.clone())),
                    Some(Value::Nil) => return Ok(Value::Array(values)),
                    _ => {}
                }
            }
            Value::Array(values)
        }
    };
    let (replicated, fsynced_locally, detail) = read_wait(waited.as_ref(), durable.aof && waitaof);
    match durable.confirm(replicated, fsynced_locally) {
        Confirmation::Confirmed => Ok(reply),
        Confirmation::Unconfirmed {
            replicated,
            required,
        } => Err(not_replicated(durable, replicated, required, detail)),
        _ => Err(not_replicated(
            durable,
            replicated,
            durable.replicas,
            detail,
        )),
    }
}

fn not_replicated(
    durable: Durability,
    replicated: u32,
    required: u32,
    detail: String,
) -> RedisError {
    Error::NotReplicated {
        replicated,
        required,
        timeout: durable.timeout,
        detail,
    }
    .into_redis()
}

/// `WAIT <replicas> <ms>`, or `WAITAOF 1 <replicas> <ms>` when asked for
/// and available (else `WAIT`: the replicas' acknowledgement, without the
/// fsync, which the connect logged).
fn wait_command(durable: &Durability, waitaof: bool) -> Cmd {
    let mut cmd = if durable.aof && waitaof {
        let mut cmd = redis::cmd("WAITAOF");
        cmd.arg(1);
        cmd
    } else {
        redis::cmd("WAIT")
    };
    cmd.arg(durable.replicas).arg(durable.timeout_ms());
    cmd
}

/// The replicas that confirmed, the master's own fsync (WAITAOF only), and
/// the answer in words.
fn read_wait(reply: Option<&Value>, waitaof: bool) -> (u32, Option<bool>, String) {
    let count = |v: &Value| match v {
        Value::Int(n) => u32::try_from(*n).ok(),
        _ => None,
    };
    match reply {
        Some(Value::Array(counts)) if waitaof && counts.len() == 2 => {
            match (count(&counts[0]), count(&counts[1])) {
                (Some(local), Some(replicas)) => (
                    replicas,
                    Some(local > 0),
                    format!("WAITAOF answered {local} local, {replicas} replicas"),
                ),
                _ => (0, None, format!("WAITAOF answered {counts:?}")),
            }
        }
        Some(v) => match count(v) {
            Some(n) if !waitaof => (n, None, format!("WAIT answered {n}")),
            _ => (0, None, format!("the wait for replicas answered {v:?}")),
        },
        None => (0, None, "no answer to the wait for replicas".to_owned()),
    }
}

/// Does the server have `WAITAOF`? `COMMAND INFO WAITAOF` answers an
/// unknown command with a nil entry.
pub(crate) fn has_waitaof(info: &Value) -> bool {
    match info {
        Value::Array(entries) => entries.first().is_some_and(|e| !matches!(e, Value::Nil)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_answers_are_read() {
        assert_eq!(read_wait(Some(&Value::Int(2)), false).0, 2);
        let aof = Value::Array(vec![Value::Int(1), Value::Int(1)]);
        assert_eq!(read_wait(Some(&aof), true).0, 1);
        assert_eq!(read_wait(Some(&aof), true).1, Some(true));
        // (redis-rs hands a server's error reply back as a value.)
        let err = redis::parse_redis_value(b"-ERR nope\r\n").unwrap();
        assert!(matches!(err, Value::ServerError(_)));
        let (n, local, detail) = read_wait(Some(&err), false);
        assert_eq!((n, local), (0, None));
        assert!(detail.contains("nope"), "{detail}");
        assert_eq!(read_wait(None, false).0, 0);
    }

    #[test]
    fn waitaof_is_detected_from_command_info() {
        assert!(!has_waitaof(&Value::Array(vec![Value::Nil])));
        assert!(has_waitaof(&Value::Array(vec![Value::Array(vec![])])));
        assert!(!has_waitaof(&Value::Nil));
    }
}
