//! TLS on the listeners: connections are accepted, their handshakes run concurrently (one task
//! each, with a time limit, so a slow or silent client never holds up the next), and each
//! finished connection comes out as a [`Conn`] that carries its [`PeerInfo`] to tonic and axum.
//!
//! The certificate and client CA are read from [`Live::tls`] at every handshake, so a rotated
//! certificate reaches new connections at once while established ones keep theirs. With a
//! client CA, a certificate is asked for but never required, and a bad one does not fail the
//! handshake: a handshake failure could not tell the caller why, while a call can be answered
//! `UNAUTHENTICATED` with the reason. The handshake still checks the client's signature, so a
//! certificate that reaches [`classify`] was proven to be held by the peer.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::Stream;

use crate::api::peer::{ClientCertificate, PeerInfo};
use crate::state::config::tls::crypto_provider;
use crate::state::live::Live;

/// How long a client has to finish the TLS handshake before its connection is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Finished connections waiting for the server to take them.
const ACCEPT_QUEUE: usize = 128;

/// Handshakes in progress at once; past this, new connections wait in the kernel's backlog, so
/// a flood of silent clients costs a bounded number of tasks.
const MAX_HANDSHAKES: usize = 1024;

/// The application protocol a listener speaks, offered by ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// gRPC: HTTP/2 only.
    H2,
    /// The HTTP listener (JWKS, discovery, metrics): HTTP/1.1.
    Http11,
}

/// The TLS side of one listener: rustls on ring, TLS 1.2 and 1.3, certificates from `live`.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    live: Arc<Live>,
}

impl Tls {
    /// TLS for a listener speaking `alpn`; `None` when the configuration serves plaintext.
    pub fn for_listener(live: &Arc<Live>, alpn: Alpn) -> anyhow::Result<Option<Tls>> {
        if live.tls().is_none() {
            return Ok(None);
        }
        let provider = crypto_provider();
        let algorithms = provider.signature_verification_algorithms;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_client_cert_verifier(Arc::new(AskForClientCertificate {
                live: live.clone(),
                algorithms,
            }))
            .with_cert_resolver(Arc::new(CurrentCertificate(live.clone())));
        config.alpn_protocols = vec![match alpn {
            Alpn::H2 => b"h2".to_vec(),
            Alpn::Http11 => b"http/1.1".to_vec(),
        }];
        Ok(Some(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            live: live.clone(),
        }))
    }

    /// Runs one handshake, then works out what the client's certificate proves.
    async fn handshake(&self, tcp: TcpStream, remote: SocketAddr) -> io::Result<Conn> {
        let stream = self.acceptor.accept(tcp).await?;
        let chain = stream.get_ref().1.peer_certificates();
        let material = self.live.tls();
        let verifier = material.as_ref().and_then(|m| m.client_verifier());
        let now = unix_time(self.live.clock().now());
        let client_certificate = classify(verifier.map(|v| &**v), chain, now);
        Ok(Conn {
            io: Io::Tls(Box::new(stream)),
            peer: PeerInfo {
                remote: Some(remote),
                client_certificate,
            },
        })
    }
}

fn unix_time(at: std::time::SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(at.duration_since(UNIX_EPOCH).unwrap_or_default())
}

/// Presents whatever certificate [`Live::tls`] holds at the moment of the handshake.
struct CurrentCertificate(Arc<Live>);

impl std::fmt::Debug for CurrentCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CurrentCertificate")
    }
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.tls().map(|m| m.certified_key().clone())
    }
}

/// Asks for a client certificate when a client CA is configured, checks that the client holds
/// its key (the handshake signature), and leaves the chain to [`classify`]; see the module docs.
struct AskForClientCertificate {
    live: Arc<Live>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl std::fmt::Debug for AskForClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AskForClientCertificate")
    }
}

impl ClientCertVerifier for AskForClientCertificate {
    fn offer_client_auth(&self) -> bool {
        self.live
            .tls()
            .is_some_and(|m| m.client_verifier().is_some())
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: clients then send their certificate whatever CA issued it, so one from the
        // wrong CA is refused with that reason, and the hints cannot go stale when the client
        // CA file is rotated.
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // The chain is checked after the handshake, by `classify`, so that a bad certificate
        // is answered with its reason instead of a failed handshake.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// What a client's certificate chain proves, checked by `verifier` (the client CA) at `now`:
/// [`ClientCertificate::Absent`] without a chain or without a client CA,
/// [`ClientCertificate::Verified`] with its SANs, or [`ClientCertificate::Refused`] with a
/// reason that can be sent to the caller.
pub fn classify(
    verifier: Option<&dyn ClientCertVerifier>,
    chain: Option<&[CertificateDer<'_>]>,
    now: UnixTime,
) -> ClientCertificate {
    let (Some(verifier), Some([leaf, intermediates @ ..])) = (verifier, chain) else {
        return ClientCertificate::Absent;
    };
    if let Err(e) = verifier.verify_client_cert(leaf, intermediates, now) {
        return ClientCertificate::Refused {
            reason: refusal(&e),
        };
    }
    match subject_alt_names(leaf) {
        Some((uri_sans, dns_sans)) => ClientCertificate::Verified { uri_sans, dns_sans },
        None => ClientCertificate::Refused {
            reason:
                "client certificate has a subject alternative name extension that does not parse"
                    .to_owned(),
        },
    }
}

/// The URI and DNS SANs of a certificate, in order; `None` if the extension does not parse.
fn subject_alt_names(cert: &CertificateDer<'_>) -> Option<(Vec<String>, Vec<String>)> {
    use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(cert).ok()?;
    let (mut uris, mut dns) = (Vec::new(), Vec::new());
    if let Some(san) = cert.subject_alternative_name().ok()? {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(uri) => uris.push((*uri).to_owned()),
                GeneralName::DNSName(name) => dns.push((*name).to_owned()),
                _ => {}
            }
        }
    }
    Some((uris, dns))
}

/// Why a client certificate was refused, in words for the caller.
fn refusal(error: &rustls::Error) -> String {
    let at = |t: &UnixTime| {
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t.as_secs()))
    };
    let rustls::Error::InvalidCertificate(e) = error else {
        return format!("client certificate refused: {error}");
    };
    match e {
        CertificateError::Expired => "client certificate has expired".to_owned(),
        CertificateError::ExpiredContext { not_after, .. } => {
            format!("client certificate has expired (not after {})", at(not_after))
        }
        CertificateError::NotValidYet => "client certificate is not valid yet".to_owned(),
        CertificateError::NotValidYetContext { not_before, .. } => format!(
            "client certificate is not valid yet (not before {})",
            at(not_before)
        ),
        CertificateError::UnknownIssuer => {
            "client certificate is not issued by the configured client CA".to_owned()
        }
        CertificateError::BadSignature => {
            "client certificate's signature does not verify against its issuer".to_owned()
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "client certificate is not for client authentication (its extended key usage lacks clientAuth)"
                .to_owned()
        }
        CertificateError::Revoked => "client certificate is revoked".to_owned(),
        CertificateError::BadEncoding => "client certificate does not parse".to_owned(),
        CertificateError::UnhandledCriticalExtension => {
            "client certificate has a critical extension this service does not understand"
                .to_owned()
        }
        other => format!("client certificate refused: {other:?}"),
    }
}

/// One accepted connection, plaintext or TLS, with what was learnt about its peer.
pub struct Conn {
    io: Io,
    peer: PeerInfo,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    /// What the transport learnt about the other end.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.peer.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    /// Says no, so that h2 copies DATA frames under 1 KiB into its write buffer instead of
    /// chaining them: with vectored writes it chains every payload from 256 bytes up, one at a
    /// time, and a token-sized answer then costs a `writev` of its own. Copied, the answers to
    /// many calls leave in one write (measured with strace: 1.4 writes a call before, like
    /// Health/Check's 0.45 after).
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Connections accepted on one listener, handshakes done; stops accepting when dropped.
pub struct Incoming {
    ready: mpsc::Receiver<Conn>,
    local_addr: SocketAddr,
    accepting: JoinHandle<()>,
}

impl Incoming {
    /// Accepts on `listener` (Nagle's algorithm off), with a TLS handshake per connection when
    /// `tls` is given.
    pub fn new(listener: TcpListener, tls: Option<Tls>) -> io::Result<Incoming> {
        let local_addr = listener.local_addr()?;
        let (ready_tx, ready) = mpsc::channel(ACCEPT_QUEUE);
        let accepting = tokio::spawn(accept_loop(listener, tls, ready_tx));
        Ok(Incoming {
            ready,
            local_addr,
            accepting,
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next connection ready to serve; `None` once the accept loop has ended.
    pub async fn next_conn(&mut self) -> Option<Conn> {
        self.ready.recv().await
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        // Closes the listening socket: the server has stopped taking connections.
        self.accepting.abort();
    }
}

impl Stream for Incoming {
    type Item = io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.ready.poll_recv(cx).map(|conn| conn.map(Ok))
    }
}

async fn accept_loop(listener: TcpListener, tls: Option<Tls>, ready: mpsc::Sender<Conn>) {
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            // The semaphore is never closed.
            return;
        };
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Small gRPC answers must not wait for Nagle's algorithm (measured: 44 ms per Issue
        // call under load without this).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
        match &tls {
            None => {
                let conn = Conn {
                    io: Io::Plain(tcp),
                    peer: PeerInfo {
                        remote: Some(remote),
                        client_certificate: ClientCertificate::Absent,
                    },
                };
                drop(permit);
                if ready.send(conn).await.is_err() {
                    return;
                }
            }
            Some(tls) => {
                let (tls, ready) = (tls.clone(), ready.clone());
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.handshake(tcp, remote)).await;
                    drop(permit);
                    match handshake {
                        Ok(Ok(conn)) => {
                            let _ = ready.send(conn).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "TLS handshake timed out");
                        }
                    }
                });
            }
        }
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
