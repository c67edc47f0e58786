//! TLS on the listener and on every connection between members (rustls
//! with the ring provider).
//!
//! One listener serves clients and peers, as member URLs name one port per
//! member. A connection's kind is decided by its ClientHello
//! ([`accept`]): a member offers the ALPN protocol [`PEER_ALPN`], is
//! answered with the peer certificate and must present a client
//! certificate that chains to the peer CA — otherwise the handshake fails,
//! so not one request (let alone a Raft message) is read from it. Any
//! other connection gets the client certificate and, with
//! `--trusted-ca-file`, must present a certificate chaining to that CA.
//! The peer routes (`/raft/*`) answer only on peer connections.
//!
//! - [`files`]: reading and checking the PEM files.
//! - [`accept`]: the listener's side of the handshake.
//! - [`peer_client`]: the client configuration of outbound member
//!   connections (stream, snapshot chunks, forwarded writes, joins).
//! - [`reload`]: the files read again when they change or on SIGHUP.
//! - [`gen_certs`]: `raft-kv-server gen-certs`, a throwaway CA and member
//!   certificates for trying TLS out.

pub mod accept;
pub mod files;
pub mod gen_certs;
pub mod peer_client;
pub mod reload;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::ServerConfig;

pub use accept::ConnectionKind;

/// The ALPN protocol a member offers on every connection to another
/// member: it selects the peer certificate and the peer CA.
pub const PEER_ALPN: &[u8] = b"raft-kv-peer/1";

/// The certificate flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// `--cert-file`: the certificate chain shown to clients.
    pub cert: PathBuf,
    /// `--key-file`: its private key.
    pub key: PathBuf,
    /// `--trusted-ca-file`: when given, clients must present a certificate
    /// chaining to one of these CAs.
    pub client_ca: Option<PathBuf>,
    /// `--peer-cert-file`: the chain shown to members, as server and as client.
    pub peer_cert: PathBuf,
    /// `--peer-key-file`: its private key.
    pub peer_key: PathBuf,
    /// `--peer-trusted-ca-file`: the CAs a member's certificate must chain to.
    pub peer_ca: PathBuf,
}

impl TlsFiles {
    /// Every file, for change detection.
    fn all(&self) -> Vec<&PathBuf> {
        let mut v = vec![
            &self.cert,
            &self.key,
            &self.peer_cert,
            &self.peer_key,
            &self.peer_ca,
        ];
        v.extend(self.client_ca.as_ref());
        v
    }
}

/// A certificate file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// What the files say, parsed and checked; replaced whole on a reload.
struct Material {
    /// For connections that are not a member's.
    client: Arc<ServerConfig>,
    /// For members' connections (ALPN [`PEER_ALPN`]).
    peer: Arc<ServerConfig>,
    /// Presented by this node's own connections to members.
    peer_key: Arc<CertifiedKey>,
    /// Checks the certificate a member answers with.
    peer_verifier: Arc<dyn ServerCertVerifier>,
}

/// The node's TLS state: the files and what was last read from them.
pub struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Material>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

/// The crypto provider of every TLS configuration here (ring only).
// rustls deprecates ring's provider for its lack of post-quantum key
// exchange; the alternative (aws-lc-rs) needs cmake and a long C build.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes [`provider`] the process's default rustls provider, unless one
/// is installed already.
pub fn install_default_provider() {
    let _ = Arc::unwrap_or_clone(provider()).install_default();
}

impl Tls {
    /// Reads and checks every file; the error names the file at fault.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, TlsError> {
        let provider = provider();
        let material = Material::read(&files, &provider)?;
        Ok(Arc::new(Tls {
            files,
            provider,
            current: RwLock::new(Arc::new(material)),
        }))
    }

    /// Reads the files again; on success new handshakes use them (open
    /// connections keep what they started with). On error nothing changes.
    pub fn reload(&self) -> Result<(), TlsError> {
        let material = Material::read(&self.files, &self.provider)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(material);
        Ok(())
    }

    fn current(&self) -> Arc<Material> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The server configuration for a connection of `kind`.
    pub fn server_config(&self, kind: ConnectionKind) -> Arc<ServerConfig> {
        let m = self.current();
        match kind {
            ConnectionKind::Peer => m.peer.clone(),
            _ => m.client.clone(),
        }
    }

    /// The files this state is read from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

impl Material {
    fn read(files: &TlsFiles, provider: &Arc<CryptoProvider>) -> Result<Material, TlsError> {
        let client_key = files::certified_key(&files.cert, &files.key, provider)?;
        let peer_key = Arc::new(files::certified_key(
            &files.peer_cert,
            &files.peer_key,
            provider,
        )?);
        let peer_roots = Arc::new(files::roots(&files.peer_ca)?);
        let verifier_error = |path: &PathBuf| {
            let path = path.display().to_string();
            move |e| TlsError(format!("{path}: no usable CA certificate: {e}"))
        };
        let client_verifier = match &files.client_ca {
            Some(path) => Some(
                WebPkiClientVerifier::builder_with_provider(
                    Arc::new(files::roots(path)?),
                    provider.clone(),
                )
                .build()
                .map_err(verifier_error(path))?,
            ),
            None => None,
        };
        let member_verifier =
            WebPkiClientVerifier::builder_with_provider(peer_roots.clone(), provider.clone())
                .build()
                .map_err(verifier_error(&files.peer_ca))?;
        let peer_verifier =
            WebPkiServerVerifier::builder_with_provider(peer_roots, provider.clone())
                .build()
                .map_err(verifier_error(&files.peer_ca))?;
        let builder = || {
            ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError(format!("TLS versions: {e}")))
        };
        let client = match client_verifier {
            Some(v) => builder()?.with_client_cert_verifier(v),
            None => builder()?.with_no_client_auth(),
        }
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(Arc::new(client_key))));
        let peer = builder()?
            .with_client_cert_verifier(member_verifier)
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(peer_key.clone())));
        Ok(Material {
            client: Arc::new(client),
            peer: Arc::new(peer),
            peer_key,
            peer_verifier,
        })
    }
}
