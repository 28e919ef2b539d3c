//! A private CA and certificates made at test time (with rcgen), written to a
//! temp dir, for TLS redis-servers and the clients that reach them. Nothing
//! private is checked in: every run makes its own keys.
//!
//! Knows how to issue certificates; knows nothing about what a test proves
//! with them.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::server::TempDir;

/// The names the default server certificate carries.
const SERVER_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// A CA (its certificate and key in memory, its certificate on disk) and the
/// certificates it issued, as PEM files in a temp dir removed on drop:
/// `ca.pem`, `server.pem` / `server.key` (for `127.0.0.1` and `localhost`),
/// `client.pem` / `client.key`, and whatever [`issue`](Self::issue) adds.
#[derive(Debug)]
pub struct TlsFiles {
    dir: TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A server's certificate (`serverAuth`).
    Server,
    /// A client's certificate (`clientAuth`).
    Client,
}

/// How [`TlsFiles::issue`] makes a certificate.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// DNS names and IP addresses it carries.
    pub names: Vec<String>,
    /// Server or client.
    pub usage: Usage,
    /// Expired in 2001 (valid 2000..2001) instead of valid now.
    pub expired: bool,
}

impl Leaf {
    /// A server certificate for these names, valid now.
    pub fn server(names: &[&str]) -> Leaf {
        Leaf {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            usage: Usage::Server,
            expired: false,
        }
    }

    /// A client certificate, valid now.
    pub fn client() -> Leaf {
        Leaf {
            names: vec!["relink-test-client".to_owned()],
            usage: Usage::Client,
            expired: false,
        }
    }

    /// The same certificate, expired.
    pub fn expired(mut self) -> Leaf {
        self.expired = true;
        self
    }
}

impl TlsFiles {
    /// A new CA named `relink test CA`, with a server and a client
    /// certificate.
    ///
    /// # Panics
    /// When a key or certificate cannot be made or written.
    pub fn generate() -> TlsFiles {
        Self::generate_named("relink test CA")
    }

    /// A new CA with this common name (two CAs with different names do not
    /// trust each other's certificates), with a server and a client
    /// certificate.
    ///
    /// # Panics
    /// When a key or certificate cannot be made or written.
    pub fn generate_named(common_name: &str) -> TlsFiles {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("generate the CA's key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("self-sign the CA");
        let files = TlsFiles {
            dir: TempDir::new(),
            ca,
        };
        write(&files.ca_cert(), &files.ca.pem());
        files.issue("server", &Leaf::server(&SERVER_NAMES));
        files.issue("client", &Leaf::client());
        files
    }

    /// Issues a certificate and writes `<stem>.pem` and `<stem>.key`;
    /// returns their paths.
    ///
    /// # Panics
    /// When it cannot be made or written.
    pub fn issue(&self, stem: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(leaf.names.clone()).expect("a certificate's names");
        params.distinguished_name.push(
            DnType::CommonName,
            leaf.names.first().map_or(stem, String::as_str),
        );
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![match leaf.usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        if leaf.expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().expect("generate a key");
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("sign a certificate");
        let cert_path = self.path(&format!("{stem}.pem"));
        let key_path = self.path(&format!("{stem}.key"));
        write(&cert_path, &cert.pem());
        write(&key_path, &key.serialize_pem());
        (cert_path, key_path)
    }

    /// The directory of the files.
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// A file in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    /// The CA's certificate file.
    pub fn ca_cert(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// The CA's certificate, PEM text.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// The server's certificate file (for `127.0.0.1` and `localhost`).
    pub fn server_cert(&self) -> PathBuf {
        self.path("server.pem")
    }

    /// The server's key file.
    pub fn server_key(&self) -> PathBuf {
        self.path("server.key")
    }

    /// The client's certificate file.
    pub fn client_cert(&self) -> PathBuf {
        self.path("client.pem")
    }

    /// The client's key file.
    pub fn client_key(&self) -> PathBuf {
        self.path("client.key")
    }
}

/// The TLS side of a spawned redis-server: its certificate and key, the CA
/// its clients' certificates must come from, and whether it requires one
/// (`tls-auth-clients`).
#[derive(Debug, Clone)]
pub struct TlsServer {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) ca: PathBuf,
    pub(crate) require_client_cert: bool,
}

impl TlsServer {
    /// `files`'s server certificate, no client certificate required.
    pub fn new(files: &TlsFiles) -> TlsServer {
        TlsServer {
            cert: files.server_cert(),
            key: files.server_key(),
            ca: files.ca_cert(),
            require_client_cert: false,
        }
    }

    /// Serves this certificate and key instead (see [`TlsFiles::issue`]).
    pub fn with_cert(mut self, cert: PathBuf, key: PathBuf) -> TlsServer {
        self.cert = cert;
        self.key = key;
        self
    }

    /// Requires a client certificate signed by the CA (mutual TLS).
    pub fn require_client_cert(mut self, require: bool) -> TlsServer {
        self.require_client_cert = require;
        self
    }
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
