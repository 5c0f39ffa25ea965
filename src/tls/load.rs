//! Operator-supplied PEM files: certificate chains, private keys (PKCS#8, PKCS#1,
//! SEC1, or encrypted PKCS#8) and client-CA bundles. Every error names the file.

use anyhow::{Context, anyhow, bail};
use pkcs8::EncryptedPrivateKeyInfoOwned;
use pkcs8::der::Decode;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::Read;
use std::path::Path;

/// Largest PEM file read. Real bundles are kilobytes; the cap stops a mistaken path
/// (a log file, a device node) from being read into memory.
const MAX_PEM_FILE: u64 = 4 * 1024 * 1024;

const ENCRYPTED_BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
const ENCRYPTED_END: &str = "-----END ENCRYPTED PRIVATE KEY-----";

/// The command that turns any OpenSSL-readable key into encrypted PKCS#8, for error hints.
fn convert_hint(path: &Path) -> String {
    format!(
        "convert it with `openssl pkcs8 -topk8 -v2 aes-256-cbc -in {0} -out {0}.p8` \
         and point tls.key at the new file",
        path.display()
    )
}

/// Reads a whole PEM file, refusing anything over [`MAX_PEM_FILE`].
fn read_pem_file(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open {what} {}", path.display()))?;
    let mut buf = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    if buf.len() as u64 > MAX_PEM_FILE {
        bail!(
            "{what} {} is larger than {MAX_PEM_FILE} bytes; expected a PEM file",
            path.display()
        );
    }
    Ok(buf)
}

/// Loads every certificate in a PEM file, in order: the first is the server's own, the
/// rest are sent as its chain (as Fluentd does with `cert_path`).
pub(crate) fn cert_chain(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read_pem_file(path, "certificate file")?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("certificate file {}: invalid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        bail!(
            "certificate file {} holds no `-----BEGIN CERTIFICATE-----` block",
            path.display()
        );
    }
    for (index, cert) in certs.iter().enumerate() {
        if let Err(e) = x509_parser::parse_x509_certificate(cert) {
            bail!(
                "certificate file {}: certificate #{} is not valid X.509: {e}",
                path.display(),
                index + 1
            );
        }
    }
    Ok(certs)
}

/// Loads a private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), or encrypted PKCS#8 (PBES2)
/// decrypted with `passphrase`.
///
/// Legacy OpenSSL encryption (`Proc-Type: 4,ENCRYPTED`) is refused with the command
/// that converts it; a wrong passphrase is reported as such, naming the file.
pub(crate) fn private_key(
    path: &Path,
    passphrase: Option<&str>,
) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = read_pem_file(path, "key file")?;
    let text = String::from_utf8_lossy(&pem);
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        bail!(
            "key file {} uses legacy OpenSSL PEM encryption (Proc-Type: 4,ENCRYPTED), \
             which tidepool cannot read; {}",
            path.display(),
            convert_hint(path)
        );
    }
    if let Some(block) = encrypted_block(&text) {
        return decrypt(path, block, passphrase);
    }
    if passphrase.is_some() {
        tracing::warn!(
            key = %path.display(),
            "tls.passphrase is set but the key file is not encrypted; the passphrase is ignored"
        );
    }
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => bail!(
            "key file {} holds no private key: expected a `-----BEGIN PRIVATE KEY-----`, \
             `RSA PRIVATE KEY`, `EC PRIVATE KEY` or `ENCRYPTED PRIVATE KEY` block",
            path.display()
        ),
        Err(e) => bail!("key file {}: invalid PEM: {e}", path.display()),
    }
}

/// The `ENCRYPTED PRIVATE KEY` block of a PEM text, BEGIN and END lines included.
fn encrypted_block(text: &str) -> Option<&str> {
    let start = text.find(ENCRYPTED_BEGIN)?;
    let rest = text.get(start..)?;
    let end = rest.find(ENCRYPTED_END)?.checked_add(ENCRYPTED_END.len())?;
    rest.get(..end)
}

/// Decrypts an encrypted PKCS#8 block into a plain PKCS#8 key.
fn decrypt(
    path: &Path,
    block: &str,
    passphrase: Option<&str>,
) -> anyhow::Result<PrivateKeyDer<'static>> {
    let Some(passphrase) = passphrase else {
        bail!(
            "key file {} is encrypted: set tls.passphrase to its passphrase",
            path.display()
        );
    };
    // Normalise line endings: the PEM decoder wants one kind throughout.
    let block = block.replace("\r\n", "\n");
    let (_label, der) = pkcs8::der::pem::decode_vec(block.as_bytes())
        .map_err(|e| anyhow!("key file {}: invalid PEM: {e}", path.display()))?;
    let info = EncryptedPrivateKeyInfoOwned::from_der(&der).map_err(|e| {
        anyhow!(
            "key file {}: cannot parse the encrypted key ({e}); it may use an old \
             PKCS#12/PBES1 scheme: {}",
            path.display(),
            convert_hint(path)
        )
    })?;
    match info.decrypt(passphrase.as_bytes()) {
        Ok(doc) => Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            doc.as_bytes().to_vec(),
        ))),
        Err(pkcs8::Error::EncryptedPrivateKey(pkcs8::pkcs5::Error::DecryptFailed))
        | Err(pkcs8::Error::Asn1(_)) => bail!(
            "key file {}: wrong passphrase (tls.passphrase does not decrypt it)",
            path.display()
        ),
        Err(e) => bail!(
            "key file {}: cannot decrypt ({e}); {}",
            path.display(),
            convert_hint(path)
        ),
    }
}

/// Loads a CA bundle (every certificate of a PEM file) into a root store, for the
/// setting named `setting` (`tls.client_ca`, `tls.ca`, ...), which errors name.
pub(crate) fn root_store(path: &Path, setting: &str) -> anyhow::Result<rustls::RootCertStore> {
    let certs = cert_chain(path).map_err(|e| anyhow!("{setting}: {e:#}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for (index, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            anyhow!(
                "{setting} {}: certificate #{} cannot be a trust anchor: {e}",
                path.display(),
                index + 1
            )
        })?;
    }
    Ok(roots)
}
