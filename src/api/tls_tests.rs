//! What a client certificate proves: [`classify`] over certificates made with rcgen, and the
//! same outcomes carried through a real handshake into a [`Conn`]'s [`PeerInfo`].

use std::sync::Arc;
use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::*;
use crate::core::clock::ManualClock;
use crate::state::config::Config;

const SPIFFE: &str = "spiffe://example.org/ns/prod/sa/billing";

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

struct Leaf {
    der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(&self, edit: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn("client");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        edit(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
            .allow_unauthenticated()
            .build()
            .unwrap()
    }
}

fn uri(text: &str) -> SanType {
    SanType::URI(text.try_into().unwrap())
}

fn dns(text: &str) -> SanType {
    SanType::DnsName(text.try_into().unwrap())
}

fn now() -> UnixTime {
    unix_time(SystemTime::now())
}

fn refused(outcome: &ClientCertificate) -> &str {
    match outcome {
        ClientCertificate::Refused { reason } => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_certificate_from_the_client_ca_is_verified_with_its_uri_and_dns_sans_in_order() {
    let ca = Ca::new("client CA");
    let leaf = ca.leaf(|p| {
        p.subject_alt_names = vec![dns("billing.internal"), uri(SPIFFE), dns("b.internal")];
    });
    let outcome = classify(Some(&*ca.verifier()), Some(&[leaf.der]), now());
    let ClientCertificate::Verified { uri_sans, dns_sans } = outcome else {
        panic!("not verified: {outcome:?}");
    };
    assert_eq!(uri_sans, [SPIFFE]);
    assert_eq!(dns_sans, ["billing.internal", "b.internal"]);
}

#[test]
fn an_expired_certificate_is_refused_saying_it_expired_and_when() {
    let ca = Ca::new("client CA");
    let leaf = ca.leaf(|p| {
        p.subject_alt_names = vec![uri(SPIFFE)];
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let outcome = classify(Some(&*ca.verifier()), Some(&[leaf.der]), now());
    let reason = refused(&outcome);
    assert!(
        reason.starts_with("client certificate has expired"),
        "{reason}"
    );
    assert!(reason.contains("2021-01-01"), "{reason}");
}

#[test]
fn a_certificate_not_valid_yet_is_refused_saying_so() {
    let ca = Ca::new("client CA");
    let leaf = ca.leaf(|p| p.not_before = rcgen::date_time_ymd(4000, 1, 1));
    let outcome = classify(Some(&*ca.verifier()), Some(&[leaf.der]), now());
    let reason = refused(&outcome);
    assert!(
        reason.starts_with("client certificate is not valid yet"),
        "{reason}"
    );
}

#[test]
fn a_certificate_from_another_ca_is_refused_as_not_issued_by_the_client_ca() {
    let (ca, other) = (Ca::new("client CA"), Ca::new("other CA"));
    let leaf = other.leaf(|p| p.subject_alt_names = vec![uri(SPIFFE)]);
    let outcome = classify(Some(&*ca.verifier()), Some(&[leaf.der]), now());
    assert_eq!(
        refused(&outcome),
        "client certificate is not issued by the configured client CA"
    );
}

#[test]
fn a_certificate_without_client_auth_usage_is_refused_for_its_purpose() {
    let ca = Ca::new("client CA");
    let leaf = ca.leaf(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]);
    let outcome = classify(Some(&*ca.verifier()), Some(&[leaf.der]), now());
    let reason = refused(&outcome);
    assert!(reason.contains("not for client authentication"), "{reason}");
}

#[test]
fn garbage_in_place_of_a_certificate_is_refused_not_a_panic() {
    let ca = Ca::new("client CA");
    let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
    let outcome = classify(Some(&*ca.verifier()), Some(&[garbage]), now());
    assert!(refused(&outcome).starts_with("client certificate"));
}

#[test]
fn no_chain_or_no_client_ca_is_absent() {
    let ca = Ca::new("client CA");
    let leaf = ca.leaf(|_| {});
    assert!(matches!(
        classify(Some(&*ca.verifier()), None, now()),
        ClientCertificate::Absent
    ));
    assert!(matches!(
        classify(Some(&*ca.verifier()), Some(&[]), now()),
        ClientCertificate::Absent
    ));
    assert!(matches!(
        classify(None, Some(&[leaf.der]), now()),
        ClientCertificate::Absent
    ));
}

/// A live state serving TLS with a server certificate from `ca` and `ca` as the client CA.
fn live_with_tls(dir: &std::path::Path, ca: &Ca) -> Arc<Live> {
    let server = ca.leaf(|p| {
        p.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    });
    std::fs::write(dir.join("server.pem"), &server.cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), &server.key_pem).unwrap();
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    std::fs::write(dir.join("k.secret"), "a-secret-of-thirty-two-bytes-ok!").unwrap();
    let toml = r#"
[server.tls]
cert_file = "server.pem"
key_file = "server.key"
client_ca_file = "ca.pem"

[[keys]]
id = "k"
algorithm = "HS256"
secret_file = "k.secret"

[profiles.default]
signing_key = "k"
"#;
    let config = Config::from_toml(toml, "test", dir).unwrap();
    Live::start(config, Arc::new(ManualClock::new(SystemTime::now()))).unwrap()
}

/// Connects to `addr` over TLS trusting `ca`, presenting `client` if given, and returns the
/// connection as the server's accept loop hands it over.
async fn accepted(incoming: &mut Incoming, ca: &Ca, client: Option<&Leaf>) -> Conn {
    accepted_with(incoming, ca, client, rustls::DEFAULT_VERSIONS).await
}

/// [`accepted`], the client offering only `versions`.
async fn accepted_with(
    incoming: &mut Incoming,
    ca: &Ca,
    client: Option<&Leaf>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Conn {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![leaf.der.clone()],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let addr = incoming.local_addr();
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let mut stream = connector.connect(name, tcp).await.unwrap();
        // Held open until the server has its end, then closed.
        let mut byte = [0u8; 1];
        let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut byte).await;
    });
    let conn = incoming.next_conn().await.unwrap();
    client.abort();
    conn
}

#[tokio::test]
async fn a_handshake_fills_peer_info_with_the_remote_address_and_what_the_certificate_proved() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("client CA");
    let live = live_with_tls(dir.path(), &ca);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = Tls::for_listener(&live, Alpn::H2).unwrap();
    let mut incoming = Incoming::new(listener, tls).unwrap();

    let good = ca.leaf(|p| p.subject_alt_names = vec![uri(SPIFFE)]);
    let conn = accepted(&mut incoming, &ca, Some(&good)).await;
    use tonic::transport::server::Connected as _;
    let peer = conn.connect_info();
    assert!(peer.remote.is_some_and(|a| a.ip().is_loopback()));
    assert!(
        matches!(&peer.client_certificate, ClientCertificate::Verified { uri_sans, .. } if uri_sans == &[SPIFFE]),
        "{peer:?}"
    );

    let expired = ca.leaf(|p| p.not_after = rcgen::date_time_ymd(2021, 1, 1));
    let conn = accepted(&mut incoming, &ca, Some(&expired)).await;
    assert!(refused(&conn.connect_info().client_certificate).contains("expired"));

    let other = Ca::new("other CA").leaf(|_| {});
    let conn = accepted(&mut incoming, &ca, Some(&other)).await;
    assert!(refused(&conn.connect_info().client_certificate).contains("not issued by"));

    let conn = accepted(&mut incoming, &ca, None).await;
    assert!(matches!(
        conn.connect_info().client_certificate,
        ClientCertificate::Absent
    ));
}

#[tokio::test]
async fn a_silent_client_does_not_hold_up_the_next_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("client CA");
    let live = live_with_tls(dir.path(), &ca);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = Tls::for_listener(&live, Alpn::H2).unwrap();
    let mut incoming = Incoming::new(listener, tls).unwrap();
    // Connected, but never says a word: its handshake waits in its own task.
    let _silent = TcpStream::connect(incoming.local_addr()).await.unwrap();
    let conn = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        accepted(&mut incoming, &ca, None),
    )
    .await
    .expect("a second client waited behind a silent one");
    assert!(conn.peer().remote.is_some());
}

#[tokio::test]
async fn tls_1_2_and_1_3_clients_both_complete_with_alpn_h2_and_a_verified_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("client CA");
    let live = live_with_tls(dir.path(), &ca);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut incoming =
        Incoming::new(listener, Tls::for_listener(&live, Alpn::H2).unwrap()).unwrap();
    let client = ca.leaf(|p| p.subject_alt_names = vec![dns("ops.internal")]);
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let conn = accepted_with(&mut incoming, &ca, Some(&client), &[version]).await;
        let Io::Tls(stream) = &conn.io else {
            panic!("not TLS")
        };
        let session = stream.get_ref().1;
        assert_eq!(session.protocol_version(), Some(version.version));
        assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]));
        assert!(
            matches!(&conn.peer.client_certificate, ClientCertificate::Verified { dns_sans, .. } if dns_sans == &["ops.internal"]),
            "{:?}",
            conn.peer
        );
    }
}
