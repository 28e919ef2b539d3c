//! The README's TLS example: connect to a TLS redis-server whose certificate
//! a private CA signed. `cargo run -p relink-examples --features tls-rustls
//! --example tls -- rediss://127.0.0.1:6380 ca.pem` (the README's TLS section
//! makes the CA and starts such a server).

use redis::AsyncCommands;
use relink::config::Config;
use relink::tls::TlsConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "rediss://127.0.0.1:6380".into());
    let ca = args.next().unwrap_or_else(|| "ca.pem".into());

    let config = Config::new(&url)?.with_tls(TlsConfig::new().with_ca_file(ca));
    // Fails at once, naming the TLS failure (an unknown CA, a name that
    // does not match, ...), rather than retrying a misconfiguration.
    let mut client = relink::Client::connect(config).await?;
    let _: () = client.set("greeting", "hello over TLS").await?;
    let greeting: String = client.get("greeting").await?;
    println!("{greeting}");
    client.shutdown().await;
    Ok(())
}
