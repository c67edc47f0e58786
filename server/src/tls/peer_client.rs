//! The client side of connections to members: the message stream, the
//! snapshot chunks, forwarded writes and a joiner's requests all present
//! the peer certificate and accept only a member certificate chaining to
//! the peer CA. The configuration is built once; its certificate and its
//! verifier are looked up in [`Tls`] on every handshake, so a reload
//! reaches new connections without rebuilding the clients that hold it.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{Tls, TlsError, PEER_ALPN};

/// The newest peer certificate and verifier of a [`Tls`].
#[derive(Debug)]
struct Current(Arc<Tls>);

impl ResolvesClientCert for Current {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().peer_key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

// Every check is the WebPKI verifier's, built from the peer CA file as last
// read: nothing here accepts a certificate that verifier would refuse.
impl ServerCertVerifier for Current {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.current().peer_verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .peer_verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .peer_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().peer_verifier.supported_verify_schemes()
    }
}

/// The client configuration of connections to members (ALPN
/// [`PEER_ALPN`]).
pub fn config(tls: &Arc<Tls>) -> Result<ClientConfig, TlsError> {
    let current = Arc::new(Current(tls.clone()));
    let mut config = ClientConfig::builder_with_provider(tls.provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS versions: {e}")))?
        // `dangerous` is only the name of the hook for a custom verifier:
        // `Current` hands every check to rustls's WebPKI verifier.
        .dangerous()
        .with_custom_certificate_verifier(current.clone())
        .with_client_cert_resolver(current);
    config.alpn_protocols = vec![PEER_ALPN.to_vec()];
    Ok(config)
}

/// The client configuration of a node without TLS: it trusts no server
/// (members speak plain HTTP). Clients are always given a configuration:
/// reqwest, built without a default crypto provider, would otherwise panic.
pub fn plain_config() -> Result<ClientConfig, TlsError> {
    Ok(ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS versions: {e}")))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}

/// The configuration of connections to members: [`config`] with TLS,
/// [`plain_config`] without.
pub fn config_or_plain(tls: Option<&Arc<Tls>>) -> Result<ClientConfig, TlsError> {
    match tls {
        Some(tls) => config(tls),
        None => plain_config(),
    }
}

/// A reqwest client builder that speaks to members (see [`config_or_plain`]).
pub fn reqwest_builder(tls: Option<&Arc<Tls>>) -> Result<reqwest::ClientBuilder, TlsError> {
    Ok(reqwest::Client::builder().tls_backend_preconfigured(config_or_plain(tls)?))
}
