//! What the transport knows about the other end of a connection. It is worked out once per
//! connection (after the TLS handshake) and tonic copies it into the extensions of every request
//! on that connection (the accepted stream's `Connected::connect_info`), so caller
//! authentication reads it without touching TLS types.

use std::net::SocketAddr;

/// The peer of one connection.
#[derive(Clone, Debug, Default)]
pub struct PeerInfo {
    /// The remote socket address, when the transport has one.
    pub remote: Option<SocketAddr>,
    /// What the client's certificate proved, if it sent one.
    pub client_certificate: ClientCertificate,
}

/// The outcome of checking a client certificate against `[server.tls] client_ca_file`.
///
/// The handshake completes whatever the certificate, so that a call can be answered
/// `UNAUTHENTICATED` with the reason (a failed handshake could never tell the caller why).
#[derive(Clone, Debug, Default)]
pub enum ClientCertificate {
    /// Plaintext, TLS without a client certificate, or no client CA configured.
    #[default]
    Absent,
    /// The certificate chains to the client CA, is valid now and was proven by the handshake.
    Verified {
        /// URI subject alternative names, in certificate order (a SPIFFE ID is one of these).
        uri_sans: Vec<String>,
        /// DNS subject alternative names, in certificate order.
        dns_sans: Vec<String>,
    },
    /// A certificate was presented but refused; the reason is safe to send to the caller
    /// (for example "client certificate has expired", "client certificate is not issued by the
    /// configured client CA").
    Refused {
        /// Why, in words for the caller.
        reason: String,
    },
}

impl PeerInfo {
    /// The peer of the connection `request` arrived on; [`PeerInfo::default`] (no certificate)
    /// when the transport recorded nothing.
    pub fn of<T>(request: &tonic::Request<T>) -> PeerInfo {
        request
            .extensions()
            .get::<PeerInfo>()
            .cloned()
            .unwrap_or_default()
    }
}
