//! The server-certificate checks rustls does not ship, for tidepool's TLS clients
//! (`tidepool cat`, the load tool, the PostgreSQL store, the MQTT input): one verifier,
//! three ways of judging the certificate; handshake signatures are always checked.

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;

/// How the server's certificate is judged.
#[derive(Debug)]
enum Check {
    /// Any certificate (an explicit `verify = "none"` / `--insecure`): the session is
    /// still with whoever holds the certificate's key, nothing more.
    Any,
    /// The chain must lead to these CAs; the name is not compared (libpq's
    /// `verify-ca`, for a server reached by a name its certificate does not carry).
    ChainOnly(Arc<rustls::RootCertStore>),
    /// Full WebPKI verification, but against a configured name instead of the host
    /// dialled (a broker reached by IP whose certificate names it by DNS name).
    Named {
        inner: Arc<WebPkiServerVerifier>,
        name: ServerName<'static>,
    },
}

/// A [`ServerCertVerifier`] for the checks above.
#[derive(Debug)]
pub(crate) struct ServerCheck {
    check: Check,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCheck {
    /// Accepts any certificate; only for settings that say so in as many words.
    pub(crate) fn any(algs: WebPkiSupportedAlgorithms) -> ServerCheck {
        ServerCheck {
            check: Check::Any,
            algs,
        }
    }

    /// The chain must lead to `roots`; the host name is not compared.
    pub(crate) fn chain_only(
        roots: Arc<rustls::RootCertStore>,
        algs: WebPkiSupportedAlgorithms,
    ) -> ServerCheck {
        ServerCheck {
            check: Check::ChainOnly(roots),
            algs,
        }
    }

    /// `inner`'s full verification, with `name` in place of the host dialled.
    pub(crate) fn named(
        inner: Arc<WebPkiServerVerifier>,
        name: ServerName<'static>,
        algs: WebPkiSupportedAlgorithms,
    ) -> ServerCheck {
        ServerCheck {
            check: Check::Named { inner, name },
            algs,
        }
    }
}

impl ServerCertVerifier for ServerCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.check {
            Check::Any => Ok(ServerCertVerified::assertion()),
            Check::ChainOnly(roots) => {
                let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_cert_signed_by_trust_anchor(
                    &cert,
                    roots,
                    intermediates,
                    now,
                    self.algs.all,
                )?;
                Ok(ServerCertVerified::assertion())
            }
            Check::Named { inner, name } => {
                inner.verify_server_cert(end_entity, intermediates, name, ocsp_response, now)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
