//! The one check of a pinned TLS server certificate, for jitd (its sync thread and jitctl's
//! remote verbs) and for jit-server's own client: the leaf certificate is accepted only if the
//! SHA-256 of its DER is one of the pins (current + next, for rotation); rustls still verifies
//! the handshake signatures. Behind the `tls-pin` feature so the modules never link rustls.

use std::sync::Arc;

use crate::state_doc::bytes_fingerprint;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Accepts the server's leaf certificate only if its fingerprint is one of the pinned ones
/// (current + next, for rotation); handshake signatures are still verified.
#[derive(Debug)]
pub struct PinnedVerifier {
    pins: Vec<String>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = bytes_fingerprint(end_entity);
        if self.pins.iter().any(|p| p == &fp) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server certificate {fp} is not the pinned one"
            )))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A rustls client configuration that accepts exactly the certificates in `pins`
/// (`SHA256:…`, the form `jit-server init` prints).
///
/// # Errors
/// The ring provider refused the default protocol versions.
pub fn pinned_config(pins: &[String]) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
            pins: pins.to_vec(),
            provider,
        }))
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}
