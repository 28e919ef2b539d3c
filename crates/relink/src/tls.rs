//! TLS settings as data ([`TlsConfig`]: whom to trust, whom to present, which
//! name to check), and, with the `tls-rustls` feature, how they become a
//! rustls client config and a TLS stream under a relink connection.
//!
//! Owns reading and checking certificates and keys (PEM files or inline
//! PEM), the trust roots and the one switch that turns verification off. It
//! knows nothing of the supervisor or of retries: a TLS failure leaves here
//! as an error whose source marks it as TLS, and `classify.rs` names its
//! cause.
//!
//! Choices, and why:
//!
//! - **Provider: `ring`.** rustls needs a `CryptoProvider`; `aws-lc-rs` (its
//!   default) builds a large C library with cmake (and nasm elsewhere), while
//!   ring is small, builds with a C compiler alone, and is already what
//!   redis-rs's webpki verifies with. relink's own connections use the
//!   process's default provider when the application installed one (a FIPS
//!   build, say), else ring, without installing anything. redis-rs's own TLS
//!   paths (a `ClusterClient`, Sentinel discovery) ask rustls for the
//!   process default, which panics when none can be chosen; before those
//!   relink installs ring as the default, only if there is none
//!   (`ensure_default_provider`).
//! - **Roots: the operating system's** (rustls-native-certs, as redis-rs's
//!   `tls-rustls` uses), not a bundled Mozilla list (webpki-roots): the
//!   roots operators manage (a corporate CA added with
//!   `update-ca-certificates`) are trusted, and none go stale inside a
//!   binary. A configured CA replaces them: a private CA is trusted alone.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use crate::config::Secret;
use crate::Error;

/// PEM text, or the path of a file holding it.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pem {
    /// A file, read when the config is checked and again at each connect
    /// (so a rotated certificate is picked up by the next reconnect).
    File(PathBuf),
    /// The PEM text itself.
    Inline(String),
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::File(path) => f.debug_tuple("File").field(path).finish(),
            // Certificates are public, but a config printed in a log needs
            // no wall of base64.
            Pem::Inline(text) => write!(f, "Inline(<{} bytes of PEM>)", text.len()),
        }
    }
}

impl Pem {
    /// The field naming this PEM in config: `<prefix><name>_file` or `<prefix><name>_pem`.
    #[cfg_attr(not(feature = "tls-rustls"), allow(dead_code))]
    fn field(&self, prefix: &str, name: &str) -> String {
        match self {
            Pem::File(_) => format!("{prefix}{name}_file"),
            Pem::Inline(_) => format!("{prefix}{name}_pem"),
        }
    }
}

/// A client key: a file, or inline PEM that is a secret (shown as `***`).
#[derive(Clone, PartialEq, Eq)]
enum Key {
    File(PathBuf),
    Inline(Secret),
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::File(path) => f.debug_tuple("File").field(path).finish(),
            Key::Inline(secret) => f.debug_tuple("Inline").field(secret).finish(),
        }
    }
}

impl Key {
    fn field(&self, prefix: &str) -> String {
        match self {
            Key::File(_) => format!("{prefix}key_file"),
            Key::Inline(_) => format!("{prefix}key_pem"),
        }
    }
}

/// How a TLS connection (`rediss://`) is made: the CA to trust (by default
/// the operating system's roots), the client certificate and key to present
/// (mutual TLS), the name the server's certificate must carry (by default
/// the URL's host), and, for development only, no verification at all.
///
/// ```
/// # use relink::config::Config;
/// # use relink::tls::TlsConfig;
/// let tls = TlsConfig::new()
///     .with_ca_file("/etc/redis/ca.pem")
///     .with_client_cert_files("/etc/redis/client.pem", "/etc/redis/client.key")
///     .with_server_name("redis.internal");
/// # #[cfg(feature = "tls-rustls")] // (a `rediss://` URL needs the feature)
/// let config = Config::new("rediss://10.0.0.7:6380")?.with_tls(tls);
/// // Checked by `config.build()`: the files must exist, hold PEM, and the
/// // key must belong to the certificate.
/// # Ok::<(), relink::Error>(())
/// ```
///
/// Serde form, the `[tls]` table of a [`Config`](crate::Config) (every field
/// optional; `_file` and `_pem` of one item exclude each other):
///
/// ```toml
/// [tls]
/// ca_file = "/etc/redis/ca.pem"        # or ca_pem = """-----BEGIN CERTIFICATE-----..."""
/// cert_file = "/etc/redis/client.pem"  # or cert_pem
/// key_file = "/etc/redis/client.key"   # or key_pem (a secret: never shown)
/// server_name = "redis.internal"
/// danger_accept_invalid_certs = false  # true: NO verification (development only)
/// ```
///
/// An inline key is shown as `***` in `Debug`; serializing writes it (as a
/// password is written: treat serialized configs as secrets).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    ca: Option<Pem>,
    cert: Option<Pem>,
    key: Option<Key>,
    server_name: Option<String>,
    danger_accept_invalid_certs: bool,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("server_name", &self.server_name)
            .field(
                "danger_accept_invalid_certs",
                &self.danger_accept_invalid_certs,
            )
            .finish()
    }
}

impl TlsConfig {
    /// The defaults: the operating system's roots, no client certificate,
    /// the URL's host as the name to verify.
    pub fn new() -> TlsConfig {
        TlsConfig::default()
    }

    /// Trusts the CA certificates (PEM, one or more) in this file instead
    /// of the operating system's roots.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca = Some(Pem::File(path.into()));
        self
    }

    /// Trusts these CA certificates (PEM text) instead of the operating
    /// system's roots.
    pub fn with_ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.ca = Some(Pem::Inline(pem.into()));
        self
    }

    /// Presents this client certificate (chain) and key, PEM files, to a
    /// server that asks for one (`tls-auth-clients`).
    pub fn with_client_cert_files(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.cert = Some(Pem::File(cert.into()));
        self.key = Some(Key::File(key.into()));
        self
    }

    /// Presents this client certificate (chain) and key, PEM text.
    pub fn with_client_cert_pem(mut self, cert: impl Into<String>, key: impl Into<String>) -> Self {
        self.cert = Some(Pem::Inline(cert.into()));
        self.key = Some(Key::Inline(Secret(key.into())));
        self
    }

    /// Verifies the server's certificate against this name (a DNS name or
    /// an IP address) instead of the URL's host: for a server reached by an
    /// address its certificate does not name (an IP, a tunnel, a name
    /// Sentinel hands out).
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// **Development only.** `true` accepts any certificate from any server:
    /// no CA, no name, no expiry is checked, so anyone on the path can read
    /// and change the traffic, credentials included. Logged as a warning at
    /// every connect. The URL form is `rediss://...#insecure`.
    pub fn with_danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.danger_accept_invalid_certs = accept;
        self
    }

    /// The CA to trust instead of the system's roots, if set.
    pub fn ca(&self) -> Option<&Pem> {
        self.ca.as_ref()
    }

    /// The client certificate, if set (its key is not handed out).
    pub fn client_cert(&self) -> Option<&Pem> {
        self.cert.as_ref()
    }

    /// The name the server's certificate is verified against, if not the URL's host.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// Whether verification is off (development only).
    pub fn danger_accept_invalid_certs(&self) -> bool {
        self.danger_accept_invalid_certs
    }

    /// Checks the settings; fields are named after `prefix` (`tls.`,
    /// `sentinel.tls.`): a certificate without its key, an empty server
    /// name and, with the `tls-rustls` feature, a file that cannot be read,
    /// text that holds no PEM certificate or key, and a key that does not
    /// belong to the certificate.
    pub fn validate_as(&self, prefix: &str) -> Result<(), Error> {
        match (&self.cert, &self.key) {
            (Some(_), None) => {
                return Err(Error::config(
                    format!("{prefix}key_file"),
                    "is required with a client certificate: the certificate's private key",
                ))
            }
            (None, Some(key)) => {
                return Err(Error::config(
                    key.field(prefix),
                    format!("a client key needs its certificate: set `{prefix}cert_file`"),
                ))
            }
            _ => {}
        }
        if let Some(name) = &self.server_name {
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(Error::config(
                    format!("{prefix}server_name"),
                    "must be a DNS name or an IP address; leave it out to verify the URL's host",
                ));
            }
        }
        #[cfg(feature = "tls-rustls")]
        self.rustls_config(prefix, false).map(drop)?;
        Ok(())
    }

    /// The certificates in redis-rs's form, for its own TLS paths (a
    /// cluster, Sentinel discovery), read now.
    #[cfg(feature = "tls-rustls")]
    pub(crate) fn certificates(&self, prefix: &str) -> Result<redis::TlsCertificates, Error> {
        let root_cert = match &self.ca {
            Some(ca) => Some(read_pem(ca, &ca.field(prefix, "ca"))?),
            None => None,
        };
        let client_tls = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read_pem(cert, &cert.field(prefix, "cert"))?,
                client_key: read_key(key, &key.field(prefix))?,
            }),
            _ => None,
        };
        Ok(redis::TlsCertificates {
            client_tls,
            root_cert,
        })
    }
}

// ---- serde ------------------------------------------------------------------------

/// The serde shape of [`TlsConfig`].
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cert_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_file: Option<PathBuf>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::config::ser_password",
        deserialize_with = "de_key_pem"
    )]
    key_pem: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server_name: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    danger_accept_invalid_certs: bool,
}

fn de_key_pem<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    crate::config::de_secret(d, "tls.key_pem")
}

impl RawTls {
    /// The config, or an error naming the field (after `prefix`).
    pub(crate) fn into_config(self, prefix: &str) -> Result<TlsConfig, Error> {
        let one = |file: Option<PathBuf>, pem: Option<String>, name: &str| match (file, pem) {
            (Some(_), Some(_)) => Err(Error::config(
                format!("{prefix}{name}_pem"),
                format!("give `{prefix}{name}_file` or `{prefix}{name}_pem`, not both"),
            )),
            (Some(path), None) => Ok(Some(Pem::File(path))),
            (None, Some(text)) => Ok(Some(Pem::Inline(text))),
            (None, None) => Ok(None),
        };
        let ca = one(self.ca_file, self.ca_pem, "ca")?;
        let cert = one(self.cert_file, self.cert_pem, "cert")?;
        let key = match (self.key_file, self.key_pem) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    format!("{prefix}key_pem"),
                    format!("give `{prefix}key_file` or `{prefix}key_pem`, not both"),
                ))
            }
            (Some(path), None) => Some(Key::File(path)),
            (None, Some(secret)) => Some(Key::Inline(secret)),
            (None, None) => None,
        };
        let config = TlsConfig {
            ca,
            cert,
            key,
            server_name: self.server_name,
            danger_accept_invalid_certs: self.danger_accept_invalid_certs,
        };
        config.validate_as(prefix)?;
        Ok(config)
    }
}

impl From<TlsConfig> for RawTls {
    fn from(c: TlsConfig) -> RawTls {
        let mut raw = RawTls {
            server_name: c.server_name,
            danger_accept_invalid_certs: c.danger_accept_invalid_certs,
            ..RawTls::default()
        };
        match c.ca {
            Some(Pem::File(p)) => raw.ca_file = Some(p),
            Some(Pem::Inline(t)) => raw.ca_pem = Some(t),
            None => {}
        }
        match c.cert {
            Some(Pem::File(p)) => raw.cert_file = Some(p),
            Some(Pem::Inline(t)) => raw.cert_pem = Some(t),
            None => {}
        }
        match c.key {
            Some(Key::File(p)) => raw.key_file = Some(p),
            Some(Key::Inline(s)) => raw.key_pem = Some(s),
            None => {}
        }
        raw
    }
}

impl Serialize for TlsConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RawTls::from(self.clone()).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TlsConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<TlsConfig, D::Error> {
        RawTls::deserialize(deserializer)?
            .into_config("tls.")
            .map_err(de::Error::custom)
    }
}

// ---- rustls (the `tls-rustls` feature) ---------------------------------------------

#[cfg(feature = "tls-rustls")]
pub(crate) use with_rustls::{connect, ensure_default_provider, TlsFailure};

#[cfg(feature = "tls-rustls")]
mod with_rustls {
    use std::sync::{Arc, OnceLock};

    use redis::RedisError;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
    use tokio::net::TcpStream;
    use tokio_rustls::client::TlsStream;

    use super::{Key, Pem, TlsConfig};
    use crate::Error;

    /// A TLS failure of relink's own making (a certificate that cannot be
    /// read at connect, a failed handshake), carried as the source of the
    /// `io::Error` inside a `RedisError`, so that `classify.rs` can tell it
    /// from a transport failure.
    #[derive(Debug)]
    pub(crate) struct TlsFailure(pub(crate) String);

    impl std::fmt::Display for TlsFailure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for TlsFailure {}

    fn failure(text: String) -> RedisError {
        crate::classify::tls_failure(TlsFailure(text))
    }

    /// The provider of relink's own connections: the process default when
    /// the application installed one, else ring (see the module docs).
    fn provider() -> Arc<CryptoProvider> {
        CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
    }

    /// Installs ring as rustls's process-wide provider unless one is
    /// installed already: redis-rs's own TLS paths (cluster, Sentinel
    /// discovery) ask for the process default and panic without one.
    pub(crate) fn ensure_default_provider() {
        if CryptoProvider::get_default().is_none() {
            // Losing a race to another installer is fine: there is one now.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    }

    /// The operating system's roots, read once per process.
    fn system_roots() -> Result<Arc<RootCertStore>, String> {
        static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
        ROOTS
            .get_or_init(|| {
                let found = rustls_native_certs::load_native_certs();
                let mut store = RootCertStore::empty();
                let (added, _) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    let why = found
                        .errors
                        .first()
                        .map_or_else(|| "none installed".to_owned(), ToString::to_string);
                    return Err(format!(
                        "no root certificates found in the operating system's store ({why}); \
                         set `tls.ca_file` to the CA that signed the server's certificate"
                    ));
                }
                Ok(Arc::new(store))
            })
            .clone()
    }

    pub(super) fn read_pem(pem: &Pem, field: &str) -> Result<Vec<u8>, Error> {
        match pem {
            Pem::Inline(text) => Ok(text.as_bytes().to_vec()),
            Pem::File(path) => std::fs::read(path).map_err(|e| {
                Error::config(field, format!("cannot read `{}`: {e}", path.display()))
            }),
        }
    }

    pub(super) fn read_key(key: &Key, field: &str) -> Result<Vec<u8>, Error> {
        match key {
            Key::Inline(secret) => Ok(secret.0.as_bytes().to_vec()),
            Key::File(path) => std::fs::read(path).map_err(|e| {
                Error::config(field, format!("cannot read `{}`: {e}", path.display()))
            }),
        }
    }

    fn certificates(pem: &Pem, field: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
        let bytes = read_pem(pem, field)?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::config(field, format!("is not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(Error::config(
                field,
                "holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
            ));
        }
        Ok(certs)
    }

    fn private_key(key: &Key, field: &str) -> Result<PrivateKeyDer<'static>, Error> {
        let bytes = read_key(key, field)?;
        // The error never quotes the text: it is a key.
        PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| {
            Error::config(
                field,
                "holds no PEM private key (`-----BEGIN PRIVATE KEY-----`, or an RSA or EC key)",
            )
        })
    }

    impl TlsConfig {
        /// The rustls client config these settings make: files read now,
        /// every certificate and the key checked. `insecure_url` is the
        /// URL's `#insecure`, the same switch as
        /// `danger_accept_invalid_certs`. Errors name the field after `prefix`.
        pub(crate) fn rustls_config(
            &self,
            prefix: &str,
            insecure_url: bool,
        ) -> Result<ClientConfig, Error> {
            let provider = provider();
            let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::config(prefix.trim_end_matches('.'), e.to_string()))?;
            let builder = if self.danger_accept_invalid_certs || insecure_url {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            } else {
                let roots = match &self.ca {
                    Some(ca) => {
                        let field = ca.field(prefix, "ca");
                        let mut store = RootCertStore::empty();
                        for cert in certificates(ca, &field)? {
                            store.add(cert).map_err(|e| {
                                Error::config(&field, format!("not a usable CA certificate: {e}"))
                            })?;
                        }
                        Arc::new(store)
                    }
                    None => system_roots()
                        .map_err(|why| Error::config(prefix.trim_end_matches('.'), why))?,
                };
                builder.with_root_certificates(roots)
            };
            match (&self.cert, &self.key) {
                (Some(cert), Some(key)) => {
                    let cert_field = cert.field(prefix, "cert");
                    let key_field = key.field(prefix);
                    let chain = certificates(cert, &cert_field)?;
                    let key = private_key(key, &key_field)?;
                    builder.with_client_auth_cert(chain, key).map_err(|e| {
                        let reason = match e {
                            rustls::Error::InconsistentKeys(_) => {
                                format!("does not match the certificate of `{cert_field}`")
                            }
                            other => format!("cannot be used with `{cert_field}`: {other}"),
                        };
                        Error::config(key_field, reason)
                    })
                }
                _ => Ok(builder.with_no_client_auth()),
            }
        }
    }

    /// Opens TLS over `tcp` to `host` (or the configured server name), as
    /// `tls` says. A failure of the settings or of the handshake is a
    /// [`TlsFailure`]; the socket's own failures (reset, EOF) stay what
    /// they are.
    pub(crate) async fn connect(
        tls: &TlsConfig,
        host: &str,
        port: u16,
        insecure_url: bool,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, RedisError> {
        let config = tls
            .rustls_config("tls.", insecure_url)
            .map_err(|e| failure(e.to_string()))?;
        if tls.danger_accept_invalid_certs || insecure_url {
            tracing::warn!(
                host,
                port,
                "TLS certificate verification is OFF (danger_accept_invalid_certs or #insecure): \
                 for development only"
            );
        }
        let name = tls.server_name().unwrap_or(host);
        // An IPv6 host comes bracketed from a URL.
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(bare.to_owned()).map_err(|e| {
            failure(format!(
                "`{name}` is not a name a TLS certificate can carry ({e}); set `tls.server_name`"
            ))
        })?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(|e| {
                match e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                {
                    // Short: evidence keeps 120 bytes, and rustls's
                    // reason is the part worth keeping.
                    Some(tls_error) => failure(format!("TLS handshake: {tls_error}")),
                    None => e.into(),
                }
            })
    }

    /// `danger_accept_invalid_certs`: any certificate is accepted; the
    /// handshake's signatures are still checked (they prove nothing without
    /// a trusted certificate, but a broken peer still fails).
    #[derive(Debug)]
    struct AcceptAnyCertificate(Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

#[cfg(feature = "tls-rustls")]
use with_rustls::{read_key, read_pem};
