//! Reading the PEM files: certificate chains, private keys, CA bundles.
//! Every error names the file.

use std::path::Path;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

fn named(path: &Path) -> impl Fn(String) -> TlsError + '_ {
    move |e| TlsError(format!("{}: {e}", path.display()))
}

/// Every certificate in a PEM file; at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| named(path)(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| named(path)(e.to_string()))?;
    if certs.is_empty() {
        return Err(named(path)("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// A certificate chain and its key, checked to belong together (a key
/// replaced before its certificate is caught here, and the old pair kept).
pub fn certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert)?;
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| named(key)(e.to_string()))?;
    CertifiedKey::from_der(chain, der, provider).map_err(|e| {
        TlsError(format!(
            "{} and {}: not a certificate and its private key: {e}",
            cert.display(),
            key.display()
        ))
    })
}

/// The CAs of a bundle.
pub fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| named(path)(format!("not a CA certificate: {e}")))?;
    }
    Ok(roots)
}
