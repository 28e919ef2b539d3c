//! The hot path's shape, checked without a server.

/// The hot path's invariant (ARCHITECTURE.md): a command's future stays
/// small, since `ConnectionLike` boxes it and every call moves all of it
/// (rare branches are boxed where they are taken). 9.8 KB before that,
/// 3.0 KB after, 2.5 KB with fewer layers of `async fn`, 2.3 KB with the
/// routing a plain function (the box holds the call loop itself); raw
/// redis-rs's is 1.1 KB.
#[tokio::test]
async fn a_commands_future_stays_small() {
    use redis::aio::ConnectionLike;
    let mut client =
        relink::Client::new(relink::Config::new("redis://127.0.0.1:1").unwrap()).unwrap();
    let mut cmd = redis::cmd("GET");
    cmd.arg("k");
    let future = client.req_packed_command(&cmd);
    let size = std::mem::size_of_val(&*future);
    assert!(
        size <= 3072,
        "a GET's future is {size} bytes: box the branch that grew it"
    );
    drop(future);
    client.shutdown().await;
}
