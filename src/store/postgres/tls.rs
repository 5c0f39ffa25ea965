//! TLS to PostgreSQL with rustls: tokio-postgres negotiates (the URL's `sslmode`)
//! and hands the socket to [`PgTls`], which checks the server's certificate as
//! `tls.verify` says and offers `tls-server-end-point` channel binding to SCRAM.
//!
//! The certificate is always checked unless `verify = "none"` was written: against
//! `tls.ca` when set, else against the public CAs built into tidepool (webpki-roots),
//! never skipped because a file is missing.

use crate::config::{PgTlsConfig, PgVerify};
use crate::tls::ServerCheck;
use anyhow::{Context as _, anyhow, bail};
use rustls::CertificateError;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::ServerName;
use sha2::Digest as _;
use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

#[cfg(test)]
mod tests;

/// What the server's certificate chain must lead to, for messages.
#[derive(Clone, Debug)]
enum Anchors {
    /// `tls.ca`.
    File(PathBuf),
    /// webpki-roots: the public CAs.
    Public,
    /// `verify = "none"`.
    Unchecked,
}

impl fmt::Display for Anchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anchors::File(p) => write!(f, "the CA of tls.ca ({})", p.display()),
            Anchors::Public => f.write_str("a public CA (no tls.ca is set)"),
            Anchors::Unchecked => f.write_str("anything (verify = \"none\")"),
        }
    }
}

/// The TLS side of one PostgreSQL store: a rustls client config built once (files
/// read, keys parsed) and used for every connection; cheap to clone.
#[derive(Clone)]
pub struct PgTls {
    config: Arc<rustls::ClientConfig>,
    anchors: Arc<Anchors>,
}

impl fmt::Debug for PgTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgTls({})", self.describe())
    }
}

impl PgTls {
    /// Reads `tls`'s files and builds the client config (TLS 1.2 and 1.3, ring);
    /// None means verify full against the public CAs, no client certificate. Every
    /// error names the setting and file at fault.
    pub fn new(tls: Option<&PgTlsConfig>) -> anyhow::Result<PgTls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let algs = provider.signature_verification_algorithms;
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("the ring crypto provider rejected TLS 1.2 and 1.3")?;
        let verify = tls.map_or(PgVerify::Full, |t| t.verify);
        let ca = tls.and_then(|t| t.ca.clone());
        let (verifier, anchors): (Arc<dyn ServerCertVerifier>, Anchors) = match verify {
            PgVerify::None => (Arc::new(ServerCheck::any(algs)), Anchors::Unchecked),
            PgVerify::Full | PgVerify::Ca => {
                let (roots, anchors) = match ca {
                    Some(path) => (
                        crate::tls::root_store(&path, "tls.ca")?,
                        Anchors::File(path),
                    ),
                    // Chain-only against every public CA would take any public
                    // certificate; the config refuses it too.
                    None if verify == PgVerify::Ca => {
                        bail!("tls.verify = \"ca\" needs tls.ca (the CA file of your server)")
                    }
                    None => (
                        rustls::RootCertStore {
                            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                        },
                        Anchors::Public,
                    ),
                };
                let roots = Arc::new(roots);
                let verifier: Arc<dyn ServerCertVerifier> = if verify == PgVerify::Full {
                    rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                        .build()
                        .map_err(|e| anyhow!("tls.ca: cannot build a verifier: {e}"))?
                } else {
                    Arc::new(ServerCheck::chain_only(roots, algs))
                };
                (verifier, anchors)
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match tls.map(|t| (&t.cert, &t.key, t.passphrase.as_deref())) {
            Some((Some(cert_path), Some(key_path), passphrase)) => {
                let chain =
                    crate::tls::cert_chain(cert_path).map_err(|e| anyhow!("tls.cert: {e:#}"))?;
                let key = crate::tls::private_key(key_path, passphrase)
                    .map_err(|e| anyhow!("tls.key: {e:#}"))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    anyhow!(
                        "tls.cert {} and tls.key {} do not make a client certificate: {e}",
                        cert_path.display(),
                        key_path.display()
                    )
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(PgTls {
            config: Arc::new(config),
            anchors: Arc::new(anchors),
        })
    }

    /// How the server is checked, for the start-up log line.
    pub fn describe(&self) -> String {
        match &*self.anchors {
            Anchors::Unchecked => "server certificate not checked (verify = \"none\")".into(),
            a => format!("server certificate must lead to {a}"),
        }
    }
}

impl<S> MakeTlsConnect<S> for PgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = PgTlsConnect;
    type Error = PgTlsError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<PgTlsConnect, PgTlsError> {
        // The name is checked in `connect`: for a Unix socket it is empty, and the
        // server never offers TLS there, so it must not fail here.
        Ok(PgTlsConnect {
            tls: self.clone(),
            host: domain.to_string(),
        })
    }
}

/// One TLS handshake with the host `host` names.
pub struct PgTlsConnect {
    tls: PgTls,
    host: String,
}

impl<S> TlsConnect<S> for PgTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = PgTlsError;
    type Future = Pin<Box<dyn Future<Output = Result<PgTlsStream<S>, PgTlsError>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let name = ServerName::try_from(self.host.clone()).map_err(|_| {
                PgTlsError(format!(
                    "\"{}\" is not a name TLS can check (expected a DNS name or an IP address in the url's host)",
                    self.host
                ))
            })?;
            let connector = tokio_rustls::TlsConnector::from(self.tls.config.clone());
            let inner = connector
                .connect(name, stream)
                .await
                .map_err(|e| explain(&e, &self.host, &self.tls.anchors))?;
            let binding = inner
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| end_point_hash(c));
            Ok(PgTlsStream { inner, binding })
        })
    }
}

/// Why a handshake failed, with what to change; the server's own words for the rest.
fn explain(e: &io::Error, host: &str, anchors: &Anchors) -> PgTlsError {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    PgTlsError(match rustls_error {
        Some(rustls::Error::InvalidCertificate(c)) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                "the certificate of PostgreSQL server {host} is refused ({c}): it is not signed \
                 by {anchors}; set tls.ca to the PEM file of the CA that signed the server's \
                 ssl_cert_file"
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the certificate of PostgreSQL server {host} is refused ({c}): it does not \
                     name the host; put a name it carries in the url, or set tls.verify = \"ca\" \
                     to check the chain only"
                )
            }
            other => format!("the certificate of PostgreSQL server {host} is refused: {other}"),
        },
        Some(other) => format!("TLS with PostgreSQL server {host} failed: {other}"),
        None => format!("TLS with PostgreSQL server {host} failed: {e}"),
    })
}

/// RFC 5929 `tls-server-end-point`: the server certificate hashed with the hash of
/// its signature algorithm, MD5 and SHA-1 replaced by SHA-256. None for algorithms
/// without one (RSASSA-PSS, Ed25519), which PostgreSQL cannot bind either; SCRAM
/// then runs without channel binding unless the URL says `channel_binding=require`.
pub(crate) fn end_point_hash(cert: &[u8]) -> Option<Vec<u8>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let oid = parsed.signature_algorithm.algorithm.to_id_string();
    Some(match oid.as_str() {
        // md5/sha1/sha256 with RSA, sha1/sha256 with ECDSA, DSA with SHA-1.
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.1"
        | "1.2.840.10045.4.3.2"
        | "1.2.840.10040.4.3" => sha2::Sha256::digest(cert).to_vec(),
        "1.2.840.113549.1.1.14" | "1.2.840.10045.4.3.1" => sha2::Sha224::digest(cert).to_vec(),
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => sha2::Sha384::digest(cert).to_vec(),
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => sha2::Sha512::digest(cert).to_vec(),
        _ => return None,
    })
}

/// A handshake that failed, said so an operator knows what to change.
#[derive(Debug)]
pub struct PgTlsError(String);

impl fmt::Display for PgTlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PgTlsError {}

/// An established TLS session and its channel-binding data.
pub struct PgTlsStream<S> {
    inner: tokio_rustls::client::TlsStream<S>,
    binding: Option<Vec<u8>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for PgTlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        match &self.binding {
            Some(hash) => ChannelBinding::tls_server_end_point(hash.clone()),
            None => ChannelBinding::none(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
