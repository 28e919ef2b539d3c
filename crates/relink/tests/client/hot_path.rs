//! The hot path's shape, and what a handle keeps from one call to the next.

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

/// A handle keeps its reply waits' timer from one call to the next, and a
/// timer belongs to the runtime it was made on: polling one whose runtime
/// has shut down panics, and one whose runtime is idle does not fire. A
/// handle whose calls run on runtimes that come and go (a blocking
/// wrapper's runtime per call; a task per call, or `block_on` itself) must
/// go on working after the runtime its last call ran on is gone.
#[test]
fn a_handle_outlives_the_runtime_its_last_call_ran_on() {
    use redis::AsyncCommands;
    let server = relink_testkit::RedisServer::start();
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    };
    // The client's own task runs on a runtime that lasts the whole test.
    let home = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut client =
        home.block_on(async { crate::ready_client(crate::fast_config(&server.url())).await });
    for round in 0..4i64 {
        let calls = runtime();
        let set_and_get = |mut client: relink::Client| async move {
            let value = async {
                client.set::<_, _, ()>("k", round).await?;
                client.get::<_, i64>("k").await
            }
            .await;
            (client, value)
        };
        // In a task of that runtime, or in its `block_on` (no task).
        let (back, value) = if round % 2 == 0 {
            calls.block_on(async { tokio::spawn(set_and_get(client)).await.expect("the task") })
        } else {
            calls.block_on(set_and_get(client))
        };
        client = back;
        assert_eq!(value.expect("a call on a runtime of its own"), round);
        // Its timers fire as it shuts down.
        drop(calls);
    }
    home.block_on(client.shutdown());
}

/// A handle sends on its own clone of the connection, kept from one call to
/// the next. Once the connection is replaced, the handle's next call goes
/// out on the new one at once: not on the old one, closed, which would fail
/// it over to a retry and report the new connection broken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handles_next_call_after_a_reconnect_goes_out_on_the_new_connection() {
    use redis::AsyncCommands;
    let server = relink_testkit::RedisServer::start();
    let mut client = crate::ready_client(crate::fast_config(&server.url())).await;
    let mut events = client.events();
    let mut admin = redis::Client::open(server.url())
        .expect("url")
        .get_connection()
        .expect("an admin connection");
    for round in 0..3i64 {
        client.set::<_, _, ()>("k", round).await.expect("SET");
        assert!(crate::kill_other_clients(&mut admin) >= 1);
        crate::events_until(&mut events, |e| {
            matches!(e, relink::Event::Reconnected { .. })
        })
        .await;
        let got: i64 = client.get("k").await.expect("GET after the reconnect");
        assert_eq!(got, round);
    }
    let stats = client.stats();
    assert_eq!(
        (stats.retried, stats.succeeded),
        (0, 6),
        "every call went out once, on the connection of its time: {stats:?}"
    );
    client.shutdown().await;
}
