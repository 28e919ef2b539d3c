//! The README's example: a client that rides out outages with no retry loop
//! of your own. Run it against any Redis: `cargo run -p relink-examples
//! --example basic -- redis://127.0.0.1:6379`.

use std::time::Duration;

use futures_util::StreamExt;
use relink::redis::AsyncCommands;
use relink::{Client, Config};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let config = Config::new(&url)?.with_client_name("basic-example");
    let mut client = Client::new(config)?;

    // Watch the connection's health in the background.
    let mut events = client.events();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            println!("relink: {event:?}");
        }
    });

    client.wait_ready(Duration::from_secs(5)).await?;
    // Plain redis-rs commands: relink implements ConnectionLike.
    let _: () = client.set("greeting", "hello").await?;
    let n: i64 = client.incr("visits", 1).await?;
    let greeting: String = client.get("greeting").await?;
    println!("{greeting}, visit number {n}");
    client.shutdown().await;
    Ok(())
}
