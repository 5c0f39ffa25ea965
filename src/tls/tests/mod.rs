//! TLS tests over real loopback sockets: a tokio-rustls server built by
//! [`server_config`](super::server_config) and a rustls client built here, pinned to a
//! CA the way a device is.

mod fixtures;
mod generated;
mod handshake;
mod info;
mod keys;

use crate::config::{TlsConfig, TlsVersion};
use crate::tls::test_ca::TestCa;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{
    ClientConfig, ProtocolVersion, RootCertStore, SignatureScheme, SupportedProtocolVersion,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A TLS config using generated certificates for `names`, TLS 1.2..1.3.
fn generated_tls(names: &[&str]) -> TlsConfig {
    TlsConfig {
        common_names: strings(names),
        min_version: TlsVersion::Tls12,
        max_version: TlsVersion::Tls13,
        ..TlsConfig::default()
    }
}

/// A TLS config using the given certificate and key files.
fn file_tls(cert: &Path, key: &Path, passphrase: Option<&str>) -> TlsConfig {
    TlsConfig {
        cert: Some(cert.to_path_buf()),
        key: Some(key.to_path_buf()),
        passphrase: passphrase.map(str::to_string),
        min_version: TlsVersion::Tls12,
        max_version: TlsVersion::Tls13,
        ..TlsConfig::default()
    }
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// Every certificate in a PEM file, as a device or client would pin them.
fn roots_from(pem_path: &Path) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pem_path).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

/// What a client should be like.
struct Client {
    roots: RootCertStore,
    versions: Vec<&'static SupportedProtocolVersion>,
    provider: CryptoProvider,
    auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

impl Client {
    /// A default rustls client (TLS 1.2 + 1.3) pinned to the CA(s) in `ca_pem`.
    fn pinned(ca_pem: &Path) -> Client {
        Client {
            roots: roots_from(ca_pem),
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            provider: ring::default_provider(),
            auth: None,
        }
    }

    fn versions(mut self, versions: &[&'static SupportedProtocolVersion]) -> Client {
        self.versions = versions.to_vec();
        self
    }

    fn provider(mut self, provider: CryptoProvider) -> Client {
        self.provider = provider;
        self
    }

    fn auth(mut self, chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Client {
        self.auth = Some((chain, key));
        self
    }

    fn build(self) -> Arc<ClientConfig> {
        let builder = ClientConfig::builder_with_provider(Arc::new(self.provider))
            .with_protocol_versions(&self.versions)
            .unwrap()
            .with_root_certificates(self.roots);
        let config = match self.auth {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }
}

/// A client like an Mbed TLS 2.x device (protocol reference section 10): TLS 1.2 only,
/// one AES-128-GCM suite, secp256r1 only, and no SHA-384/512 signatures.
fn mbed_like(suite: rustls::SupportedCipherSuite) -> CryptoProvider {
    let base = ring::default_provider();
    let wanted = [
        SignatureScheme::ECDSA_NISTP256_SHA256,
        SignatureScheme::RSA_PKCS1_SHA256,
        SignatureScheme::RSA_PSS_SHA256,
    ];
    let mapping: Vec<_> = base
        .signature_verification_algorithms
        .mapping
        .iter()
        .filter(|(scheme, _)| wanted.contains(scheme))
        .copied()
        .collect();
    let all: Vec<_> = mapping
        .iter()
        .flat_map(|(_, algs)| algs.iter().copied())
        .collect();
    CryptoProvider {
        cipher_suites: vec![suite],
        kx_groups: vec![ring::kx_group::SECP256R1],
        signature_verification_algorithms: WebPkiSupportedAlgorithms {
            all: Box::leak(all.into_boxed_slice()),
            mapping: Box::leak(mapping.into_boxed_slice()),
        },
        ..base
    }
}

/// What a completed exchange negotiated, seen from the client.
#[derive(Debug)]
struct Negotiated {
    version: ProtocolVersion,
    suite: rustls::CipherSuite,
    peer_chain_len: usize,
}

/// The result of one connection: the server's and the client's view.
struct Exchange {
    server: Result<(), String>,
    client: Result<Negotiated, String>,
}

impl Exchange {
    /// Both sides completed the handshake and swapped application data.
    fn expect_ok(self) -> Negotiated {
        if let Err(e) = &self.server {
            panic!("server side failed: {e}");
        }
        match self.client {
            Ok(n) => n,
            Err(e) => panic!("client side failed: {e}"),
        }
    }

    /// The server refused the peer: its handshake failed and the client got no data.
    fn expect_refused(self) -> String {
        assert!(
            self.client.is_err(),
            "client unexpectedly completed an exchange: {:?}",
            self.client
        );
        match self.server {
            Err(e) => e,
            Ok(()) => panic!("server unexpectedly completed an exchange"),
        }
    }
}

/// Runs one TLS connection over loopback: the client sends `ping`, the server answers
/// `pong`. Reading `pong` proves the server accepted the client, which matters for
/// TLS 1.3, where a client certificate is judged after the client's handshake ends.
async fn exchange(
    server: Arc<rustls::ServerConfig>,
    client: Arc<ClientConfig>,
    server_name: &str,
) -> Exchange {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server);
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let mut ping = [0u8; 4];
        tls.read_exact(&mut ping).await.map_err(|e| e.to_string())?;
        if &ping != b"ping" {
            return Err(format!("server read {ping:?}"));
        }
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok(())
    });
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let client_result = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tls = TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut pong = [0u8; 4];
        tls.read_exact(&mut pong).await.map_err(|e| e.to_string())?;
        if &pong != b"pong" {
            return Err(format!("client read {pong:?}"));
        }
        let (_, conn) = tls.get_ref();
        Ok(Negotiated {
            version: conn.protocol_version().ok_or("no version")?,
            suite: conn.negotiated_cipher_suite().ok_or("no suite")?.suite(),
            peer_chain_len: conn.peer_certificates().map_or(0, <[_]>::len),
        })
    }
    .await;
    let server_result = server_task.await.unwrap();
    Exchange {
        server: server_result,
        client: client_result,
    }
}

/// Reads all four generated files, to compare them across calls.
fn snapshot(dir: &Path) -> [Vec<u8>; 4] {
    [
        super::CA_CERT_FILE,
        super::CA_KEY_FILE,
        super::SERVER_CERT_FILE,
        super::SERVER_KEY_FILE,
    ]
    .map(|f| std::fs::read(dir.join(f)).unwrap())
}
