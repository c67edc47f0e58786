//! https to the nodes: `--cacert` (the CA the servers' certificates chain
//! to) and, for a cluster started with `--trusted-ca-file`, a client
//! certificate (`--cert`, `--key`). rustls with the ring provider; the
//! system's CA store is not used: a raft-kv cluster's CA is its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::CliError;

/// The TLS flags, global to every command.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// CA certificate(s) (PEM) that the servers' certificates chain to;
    /// needed for https:// servers.
    #[arg(long, global = true, value_name = "FILE", env = "RAFT_KV_CACERT")]
    pub cacert: Option<PathBuf>,

    /// Client certificate (PEM) to present, for a cluster that requires one
    /// (started with --trusted-ca-file).
    #[arg(
        long = "cert",
        id = "client_cert",
        global = true,
        value_name = "FILE",
        env = "RAFT_KV_CERT",
        requires = "client_key"
    )]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) of --cert.
    // Ids of their own: `key` and `cert` are positional names of commands.
    #[arg(
        long = "key",
        id = "client_key",
        global = true,
        value_name = "FILE",
        env = "RAFT_KV_KEY",
        requires = "client_cert"
    )]
    pub key: Option<PathBuf>,
}

/// The client TLS configuration, when `--cacert` is given.
pub type Tls = Option<Arc<ClientConfig>>;

fn bad(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("{}: {e}", path.display()))
}

#[allow(deprecated)] // ring: rustls's post-quantum nudge; aws-lc needs cmake.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CliError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(path, e))?;
    if certs.is_empty() {
        return Err(bad(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

impl TlsArgs {
    /// Reads the files; `None` without `--cacert`.
    pub fn load(&self) -> Result<Tls, CliError> {
        let Some(cacert) = &self.cacert else {
            if self.cert.is_some() {
                return Err(CliError::Usage(
                    "--cert needs --cacert (the CA of the servers' certificates)".into(),
                ));
            }
            return Ok(None);
        };
        let mut roots = RootCertStore::empty();
        for cert in certificates(cacert)? {
            roots
                .add(cert)
                .map_err(|e| bad(cacert, format!("not a CA certificate: {e}")))?;
        }
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| CliError::Usage(format!("TLS: {e}")))?
            .with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = certificates(cert)?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| bad(cert, format!("not a certificate and key pair: {e}")))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Some(Arc::new(config)))
    }
}

impl TlsArgs {
    /// A configuration that trusts no server: the plain-HTTP client's
    /// (its connector type has room for TLS either way).
    pub fn trust_nothing(&self) -> Result<Arc<ClientConfig>, CliError> {
        Ok(Arc::new(
            ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| CliError::Usage(format!("TLS: {e}")))?
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth(),
        ))
    }
}

/// The error for an https:// server without `--cacert`.
pub fn needs_cacert(url: &reqwest::Url) -> CliError {
    CliError::Usage(format!(
        "{url} is https: give --cacert FILE (or RAFT_KV_CACERT), the CA that signed the \
         servers' certificates"
    ))
}
