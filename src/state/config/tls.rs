//! `[server.tls]`: the service's certificate chain, its private key and the optional client CA,
//! read and checked into a [`TlsMaterial`] that the listeners serve. Loaded at start-up, on every
//! reload, and whenever the files change on disk; every error names the field, the file and the
//! reason, so a refused start or a refused rotation says what to fix.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject as _};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::key::resolve;
use super::raw::RawTls;

/// Where the TLS files are, with relative paths resolved against the data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// `server.tls.cert_file`: the PEM chain, leaf first.
    pub cert_file: PathBuf,
    /// `server.tls.key_file`: the leaf's private key (PKCS#8, SEC1 or PKCS#1 PEM).
    pub key_file: PathBuf,
    /// `server.tls.client_ca_file`: the CA client certificates are checked against.
    pub client_ca_file: Option<PathBuf>,
}

/// What the files hold, checked: the key matches the leaf certificate, the client CA parses.
pub struct TlsMaterial {
    files: TlsFiles,
    certified_key: Arc<CertifiedKey>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    fingerprint: Fingerprint,
    leaf: LeafSummary,
}

/// A digest over the bytes of every TLS file (or why it could not be read), to notice a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

/// The leaf certificate as `config check` and the logs describe it.
#[derive(Clone, Debug)]
pub struct LeafSummary {
    /// The subject distinguished name, as text.
    pub subject: String,
    /// DNS names and IP addresses the certificate is for.
    pub names: Vec<String>,
    /// The end of its validity, as RFC 3339.
    pub not_after: String,
    /// How many certificates the chain holds, the leaf included.
    pub chain_len: usize,
}

/// The crypto every TLS part of the service uses: rustls' ring provider, and nothing else.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsFiles {
    pub(super) fn resolve(raw: &RawTls, data_dir: &Path) -> TlsFiles {
        TlsFiles {
            cert_file: resolve(data_dir, &raw.cert_file),
            key_file: resolve(data_dir, &raw.key_file),
            client_ca_file: raw.client_ca_file.as_deref().map(|p| resolve(data_dir, p)),
        }
    }

    /// Reads and checks the files; the error names the field, the file and the reason.
    pub fn load(&self) -> anyhow::Result<TlsMaterial> {
        let provider = crypto_provider();
        let cert_bytes = read("server.tls.cert_file", &self.cert_file)?;
        let key_bytes = read("server.tls.key_file", &self.key_file)?;
        let ca_bytes = match &self.client_ca_file {
            Some(path) => Some(read("server.tls.client_ca_file", path)?),
            None => None,
        };
        let in_cert = || format!("server.tls.cert_file {}", self.cert_file.display());
        let in_key = || format!("server.tls.key_file {}", self.key_file.display());
        let chain = certificates(&cert_bytes).with_context(in_cert)?;
        let leaf = summarize(&chain).with_context(in_cert)?;
        let key = PrivateKeyDer::from_pem_slice(&key_bytes)
            .map_err(|e| {
                pem_error(
                    e,
                    "private key block (PKCS#8 PRIVATE KEY, SEC1 EC PRIVATE KEY or PKCS#1 RSA PRIVATE KEY)",
                )
            })
            .with_context(in_key)?;
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| anyhow!("not a private key rustls can sign with: {e}"))
            .with_context(in_key)?;
        let certified_key = CertifiedKey::new(chain, signing_key);
        certified_key.keys_match().map_err(|e| {
            anyhow!(
                "{}: the key does not match the first (leaf) certificate of {} ({e}); the key file must hold the private key of that certificate",
                in_key(),
                in_cert()
            )
        })?;
        let client_verifier = match (&self.client_ca_file, &ca_bytes) {
            (Some(path), Some(bytes)) => Some(
                client_verifier(bytes, provider)
                    .with_context(|| format!("server.tls.client_ca_file {}", path.display()))?,
            ),
            _ => None,
        };
        Ok(TlsMaterial {
            fingerprint: fingerprint_of(&[Ok(&cert_bytes), Ok(&key_bytes), ca_result(&ca_bytes)]),
            files: self.clone(),
            certified_key: Arc::new(certified_key),
            client_verifier,
            leaf,
        })
    }

    /// A digest of what the files hold now; an unreadable file counts as its own content, so a
    /// file that disappears is a change too.
    pub fn fingerprint(&self) -> Fingerprint {
        let cert = std::fs::read(&self.cert_file);
        let key = std::fs::read(&self.key_file);
        let ca = self.client_ca_file.as_ref().map(std::fs::read);
        let mut parts = vec![content(&cert), content(&key)];
        parts.push(match &ca {
            Some(read) => content(read),
            None => ca_result(&None),
        });
        fingerprint_of(&parts)
    }
}

fn content(read: &std::io::Result<Vec<u8>>) -> Result<&[u8], std::io::ErrorKind> {
    match read {
        Ok(bytes) => Ok(bytes),
        Err(e) => Err(e.kind()),
    }
}

impl TlsMaterial {
    /// The files this was read from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The chain and key new handshakes present.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified_key
    }

    /// Checks client certificates against `client_ca_file`; `None` when none is configured.
    pub fn client_verifier(&self) -> Option<&Arc<dyn ClientCertVerifier>> {
        self.client_verifier.as_ref()
    }

    /// The digest of the bytes this was loaded from, to compare with [`TlsFiles::fingerprint`].
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The leaf certificate, described.
    pub fn leaf(&self) -> &LeafSummary {
        &self.leaf
    }
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No key material; the files and the leaf say which certificate this is.
        f.debug_struct("TlsMaterial")
            .field("files", &self.files)
            .field("leaf", &self.leaf)
            .finish_non_exhaustive()
    }
}

fn read(field: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| anyhow!("{field} {}: cannot read the file: {e}", path.display()))
}

fn ca_result(bytes: &Option<Vec<u8>>) -> Result<&[u8], std::io::ErrorKind> {
    match bytes {
        Some(b) => Ok(b),
        // Not configured: a constant, so it never looks like a change.
        None => Err(std::io::ErrorKind::NotFound),
    }
}

fn fingerprint_of(parts: &[Result<&[u8], std::io::ErrorKind>]) -> Fingerprint {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        match part {
            Ok(bytes) => {
                digest.update(b"ok");
                digest.update(&(bytes.len() as u64).to_be_bytes());
                digest.update(bytes);
            }
            Err(kind) => {
                digest.update(b"err");
                digest.update(kind.to_string().as_bytes());
            }
        }
    }
    let mut out = [0; 32];
    out.copy_from_slice(digest.finish().as_ref());
    Fingerprint(out)
}

/// Every CERTIFICATE block of a PEM file, in order; at least one.
fn certificates(bytes: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e, "CERTIFICATE block"))?;
    if chain.is_empty() {
        bail!("no PEM CERTIFICATE block in the file");
    }
    Ok(chain)
}

fn pem_error(e: pem::Error, wanted: &str) -> anyhow::Error {
    match e {
        pem::Error::NoItemsFound => anyhow!("no PEM {wanted} in the file"),
        other => anyhow!("not valid PEM: {other}"),
    }
}

/// The leaf described; an error if it is not an X.509 certificate at all.
fn summarize(chain: &[CertificateDer<'_>]) -> anyhow::Result<LeafSummary> {
    use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};
    let (_, leaf) = X509Certificate::from_der(&chain[0])
        .map_err(|e| anyhow!("the first certificate does not parse as X.509: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push((*dns).to_owned()),
                GeneralName::IPAddress(ip) => names.push(match ip.len() {
                    4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap_or_default())
                        .to_string(),
                    16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap_or_default())
                        .to_string(),
                    _ => "(malformed IP address)".to_owned(),
                }),
                _ => {}
            }
        }
    }
    Ok(LeafSummary {
        subject: leaf.subject().to_string(),
        names,
        not_after: u64::try_from(leaf.validity().not_after.timestamp()).map_or_else(
            |_| leaf.validity().not_after.to_string(),
            |secs| {
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
                )
                .to_string()
            },
        ),
        chain_len: chain.len(),
    })
}

/// A verifier of client certificates against every CA certificate in `bytes`.
fn client_verifier(
    bytes: &[u8],
    provider: Arc<CryptoProvider>,
) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let cas = certificates(bytes)?;
    let mut roots = RootCertStore::empty();
    for (i, ca) in cas.into_iter().enumerate() {
        roots
            .add(ca)
            .map_err(|e| anyhow!("certificate {} is not a usable CA certificate: {e}", i + 1))?;
    }
    // The handshake never requires a certificate: a caller without one (a probe, a relying
    // party fetching JWKS) must still reach the service, and calls are refused later with a
    // reason. `allow_unauthenticated` only keeps this verifier from insisting.
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| anyhow!("cannot check client certificates against it: {e}"))
}
