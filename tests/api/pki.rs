//! A test PKI made at test time with rcgen: a CA, a server certificate for 127.0.0.1 and
//! localhost, and client certificates of every kind a caller may present (a SPIFFE ID as URI
//! SAN, a DNS SAN, expired, from another CA, not for client authentication). Plus what a test
//! needs to serve and call over TLS: the files a `[server.tls]` table names and client
//! channels pinned to the CA.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// A certificate authority that signs server and client certificates.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM: what `client_ca_file` and a client's `ca_certificate` hold.
    pub cert_pem: String,
}

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl CertAndKey {
    /// The tonic identity a client presents.
    pub fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}

impl TestCa {
    /// A new CA called `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The tonic form of the CA certificate, to pin a client channel to it.
    pub fn certificate(&self) -> Certificate {
        Certificate::from_pem(&self.cert_pem)
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server_cert(&self) -> CertAndKey {
        self.server_cert_named("token-authority test server")
    }

    /// A server certificate for 127.0.0.1 and localhost with common name `cn`.
    pub fn server_cert_named(&self, cn: &str) -> CertAndKey {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params.distinguished_name = dn(cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate whose URI SAN is `spiffe_id` (for example
    /// `spiffe://example.org/ns/prod/sa/billing`).
    pub fn client_with_uri(&self, spiffe_id: &str) -> CertAndKey {
        self.client(vec![SanType::URI(spiffe_id.try_into().unwrap())])
    }

    /// A client certificate whose DNS SAN is `name`.
    pub fn client_with_dns(&self, name: &str) -> CertAndKey {
        self.client(vec![SanType::DnsName(name.try_into().unwrap())])
    }

    /// A client certificate with these SANs, valid from 1975 to 4096.
    pub fn client(&self, sans: Vec<SanType>) -> CertAndKey {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn("test client");
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    /// A client certificate for `spiffe_id` that expired in 2021.
    pub fn expired_client(&self, spiffe_id: &str) -> CertAndKey {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn("expired test client");
        params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().unwrap())];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        self.sign(params)
    }

    /// A client certificate for `spiffe_id` that becomes valid only in 4000.
    pub fn future_client(&self, spiffe_id: &str) -> CertAndKey {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn("future test client");
        params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().unwrap())];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = rcgen::date_time_ymd(4000, 1, 1);
        self.sign(params)
    }

    /// A certificate for `spiffe_id` that is for servers only (no clientAuth usage).
    pub fn server_only_client(&self, spiffe_id: &str) -> CertAndKey {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn("server-only test client");
        params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().unwrap())];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> CertAndKey {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// The files of a `[server.tls]` table, written into a directory.
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Written only when a client CA is given.
    pub client_ca_file: Option<PathBuf>,
}

impl TlsFiles {
    /// Writes `server` (and `client_ca`, if any) as `server.pem`, `server.key` and `ca.pem`
    /// in `dir`.
    pub fn write(dir: &Path, server: &CertAndKey, client_ca: Option<&TestCa>) -> TlsFiles {
        let files = TlsFiles {
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
            client_ca_file: client_ca.map(|_| dir.join("client-ca.pem")),
        };
        files.replace(server);
        if let (Some(path), Some(ca)) = (&files.client_ca_file, client_ca) {
            std::fs::write(path, &ca.cert_pem).unwrap();
        }
        files
    }

    /// Replaces the certificate and key, as cert-manager rewrites them.
    pub fn replace(&self, server: &CertAndKey) {
        std::fs::write(&self.cert_file, &server.cert_pem).unwrap();
        std::fs::write(&self.key_file, &server.key_pem).unwrap();
    }

    /// The `[server.tls]` table naming these files.
    pub fn toml(&self) -> String {
        let mut toml = format!(
            "\n[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            self.cert_file, self.key_file
        );
        if let Some(ca) = &self.client_ca_file {
            toml.push_str(&format!("client_ca_file = {ca:?}\n"));
        }
        toml
    }
}

/// A TLS client setup that trusts only `ca` and presents `identity`, if any.
pub fn client_tls(ca: &TestCa, identity: Option<&CertAndKey>) -> ClientTlsConfig {
    let config = ClientTlsConfig::new().ca_certificate(ca.certificate());
    match identity {
        Some(id) => config.identity(id.identity()),
        None => config,
    }
}

/// A new connection to `addr` over TLS with `tls`.
pub async fn tls_channel(
    addr: std::net::SocketAddr,
    tls: ClientTlsConfig,
) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

/// The PKI most TLS tests share: one CA, its server certificate, and the files in `dir`.
pub struct TestPki {
    pub ca: Arc<TestCa>,
    pub server: CertAndKey,
    pub files: TlsFiles,
}

impl TestPki {
    /// A CA and server certificate written to `dir`; `client_ca` makes the same CA the client
    /// CA as well.
    pub fn new(dir: &Path, client_ca: bool) -> TestPki {
        let ca = Arc::new(TestCa::new("token-authority test CA"));
        let server = ca.server_cert();
        let files = TlsFiles::write(dir, &server, client_ca.then_some(&*ca));
        TestPki { ca, server, files }
    }
}
