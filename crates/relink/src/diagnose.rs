//! Why a connection attempt failed, with the evidence: the one place where a
//! failed connect becomes the core's [`ConnectCause`], and where the server's
//! own words (or a stranger's first bytes) are fetched when redis-rs's error
//! does not carry them.
//!
//! redis-rs reports a wrong password under RESP2 as a bare
//! "authentication failed" (the server's `WRONGPASS ...` is dropped), a full
//! server (`ERR max number of clients reached`, written before it closes) as
//! a broken pipe, and a web server on the port as a parse error. In those
//! cases relink asks again on a raw socket (one request, packed by redis-rs,
//! and the first line that comes back, within a timeout) and lets the core
//! read the answer ([`ConnectCause::from_first_bytes`]). The doctor uses the
//! same functions.

use std::io;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, RedisError};
use relink_core::ConnectCause;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use crate::classify::connect_cause;

/// The cause of a failed connection attempt and its evidence (redacted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// Why it failed.
    pub cause: ConnectCause,
    /// The server's words, the peer's first bytes, or the error's text.
    pub evidence: String,
}

impl std::fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.cause.describe())?;
        if !self.evidence.is_empty() {
            write!(f, ": {}", self.evidence)?;
        }
        Ok(())
    }
}

/// What the error alone says of a failed attempt: its cause, and the
/// server's words or the error's text (redacted of `password`).
pub fn from_error(err: &RedisError, password: Option<&str>) -> Diagnosis {
    Diagnosis {
        cause: connect_cause(err),
        evidence: redact(
            &crate::classify::server_words(err).unwrap_or_else(|| err.to_string()),
            password,
        ),
    }
}

/// Explains a failed attempt to connect to `info`: the cause the error
/// names, made precise by asking the server again on a raw socket when the
/// error hides the server's words (see the module docs); `timeout` bounds
/// that question. The evidence never holds the password.
pub async fn explain(info: &ConnectionInfo, err: &RedisError, timeout: Duration) -> Diagnosis {
    let settings = info.redis_settings();
    let password = settings.password();
    let mut cause = connect_cause(err);
    if let ConnectionAddr::TcpTls { host, port, .. } = info.addr() {
        return explain_tls(host, *port, cause, err, password, timeout).await;
    }
    let words = crate::classify::server_words(err);
    let worth_asking = match cause {
        // redis-rs dropped the server's answer to AUTH (under RESP2 it
        // reports any error reply to AUTH this way, `-BUSY` and a full
        // server's refusal included).
        ConnectCause::Auth => words.is_none(),
        ConnectCause::Closed | ConnectCause::Protocol | ConnectCause::Io => true,
        _ => false,
    };
    let mut evidence = match (cause, words) {
        (_, Some(words)) => words,
        // Its own text names its kind, not the server's answer.
        (ConnectCause::Auth, None) => String::new(),
        (_, None) => err.to_string(),
    };
    if worth_asking {
        // Log in when the config has a password (a server that requires
        // one answers anything else with NOAUTH, which would say nothing
        // about these credentials); else PING.
        let request = match password {
            Some(password) => {
                let mut auth = redis::cmd("AUTH");
                if let Some(user) = settings.username() {
                    auth.arg(user);
                }
                auth.arg(password).get_packed_command()
            }
            None => redis::cmd("PING").get_packed_command(),
        };
        if let Ok(bytes) = first_reply(info.addr(), &request, timeout).await {
            match ConnectCause::from_first_bytes(&bytes) {
                // The server's own words (or a stranger's first bytes).
                Some(found) => {
                    cause = found;
                    evidence = first_line(&bytes);
                }
                // A Redis answer that is no error: the server is there and
                // took these credentials, so they were not what failed.
                None if !bytes.is_empty() => {
                    if cause == ConnectCause::Auth {
                        cause = ConnectCause::ServerError;
                        evidence = "the handshake failed, but a second connection logged in \
                                    with the same credentials"
                            .to_owned();
                    } else if cause == ConnectCause::Protocol {
                        evidence =
                            format!("{evidence} (the server answered `{}`)", first_line(&bytes));
                    }
                }
                None => {}
            }
        }
    }
    Diagnosis {
        cause,
        evidence: redact(&evidence, password),
    }
}

/// A failed attempt over TLS: the error's own cause, unless the handshake
/// got nowhere (no answer, closed, a transport error) and a plain `PING` on
/// the same port is answered in Redis's protocol: then TLS was asked of a
/// plain Redis port.
async fn explain_tls(
    host: &str,
    port: u16,
    cause: ConnectCause,
    err: &RedisError,
    password: Option<&str>,
    timeout: Duration,
) -> Diagnosis {
    let mut diagnosis = from_error(err, password);
    if matches!(
        cause,
        ConnectCause::Timeout | ConnectCause::Closed | ConnectCause::Io | ConnectCause::Protocol
    ) {
        let plain = ConnectionAddr::Tcp(host.to_owned(), port);
        let ping = redis::cmd("PING").get_packed_command();
        if let Ok(bytes) = first_reply(&plain, &ping, timeout).await {
            if let Some(found) = ConnectCause::from_plain_answer_on_tls_port(&bytes) {
                diagnosis = Diagnosis {
                    cause: found,
                    evidence: format!(
                        "TLS handshake: a plain Redis answered `{}` on this port; use redis:// \
                         or the server's tls-port",
                        first_line(&bytes)
                    ),
                };
            }
        }
    }
    diagnosis
}

/// Opens a raw connection to `addr` (TCP or a Unix socket; `None` for
/// anything else, TLS among them), writes `request`, and returns the
/// first bytes that come back: up to the end of the first line, at most
/// 256 bytes, whatever arrived by `timeout`, or nothing if the peer
/// closed without a word.
pub async fn first_reply(
    addr: &ConnectionAddr,
    request: &[u8],
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    let exchange = async {
        let mut stream: Box<dyn RawStream> = match addr {
            ConnectionAddr::Tcp(host, port) => {
                Box::new(tokio::net::TcpStream::connect((host.as_str(), *port)).await?)
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
            _ => {
                return Err(io::Error::other(
                    "only plain TCP and Unix sockets are probed",
                ))
            }
        };
        // A full server has written its refusal already; a write error
        // then is no reason not to read it.
        let _ = stream.write_all(request).await;
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 256];
        // Bounded: at most 256 bytes, each read at least one.
        while buf.len() < 256 && !buf.contains(&b'\n') {
            match stream.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n.min(256 - buf.len())]),
                Err(_) if !buf.is_empty() => break,
                Err(e) => return Err(e),
            }
        }
        Ok(buf)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::other("no answer in time")),
    }
}

trait RawStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> RawStream for T {}

/// The first line of a peer's answer, as text (invalid UTF-8 replaced, a
/// leading `-` or `+` of a RESP reply dropped).
pub fn first_line(bytes: &[u8]) -> String {
    let line = bytes
        .split(|&b| b == b'\r' || b == b'\n')
        .find(|l| !l.is_empty())
        .unwrap_or(bytes);
    let line = line
        .strip_prefix(b"-")
        .or_else(|| line.strip_prefix(b"+"))
        .unwrap_or(line);
    String::from_utf8_lossy(line).trim().to_owned()
}

/// `text` with every occurrence of `secret` replaced by `***`.
pub fn redact(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(secret) if !secret.is_empty() => text.replace(secret, "***"),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_is_readable_and_redacted() {
        assert_eq!(
            first_line(b"HTTP/1.1 400 Bad Request\r\nX: y"),
            "HTTP/1.1 400 Bad Request"
        );
        assert_eq!(first_line(b"-WRONGPASS invalid\r\n"), "WRONGPASS invalid");
        assert_eq!(
            redact("auth hunter2 failed", Some("hunter2")),
            "auth *** failed"
        );
        assert_eq!(redact("x", Some("")), "x");
    }
}
