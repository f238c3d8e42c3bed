//! The HTTP listener (`[server] http_listen`) that publishes public keys so relying services
//! can verify tokens without calling us:
//!
//! - `GET /.well-known/jwks.json`: every profile's published keys;
//! - `GET /profiles/{name}/jwks.json`: one profile's;
//! - `GET /profiles/{name}/.well-known/openid-configuration`: discovery for one profile;
//! - `GET {issuer path}/.well-known/openid-configuration` and `{issuer path}/.well-known/jwks.json`
//!   for profiles whose issuer is an http(s) URL, as OpenID Connect Discovery 1.0 §4 places them.
//!
//! - `GET /metrics`: Prometheus metrics (see [`crate::api::metrics`]).
//!
//! Every document carries `Cache-Control: max-age` (server.jwks_cache) and a strong `ETag`,
//! and answers `If-None-Match` with 304. Documents are built per request from the live
//! snapshot, so a key appears and disappears exactly on its schedule.
//!
//! Connections come from [`Incoming`], as gRPC's do: over TLS (ALPN `http/1.1`) when
//! `[server.tls]` is configured.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::api::error::{UnknownProfile, shown};
use crate::api::metrics::Metrics;
use crate::api::tls::{Conn, Incoming};
use crate::core::jwks;
use crate::core::profile::Profile;
use crate::state::live::{Live, Snapshot};

const DISCOVERY: &str = "/.well-known/openid-configuration";
const JWKS: &str = "/.well-known/jwks.json";

/// Serves the JWKS and discovery documents and the metrics on `listener` until `shutdown`
/// completes.
pub async fn serve(
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    listener: Incoming,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(live, metrics))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Connections come from the same accept loop as gRPC's: Nagle off, TLS handshakes concurrent.
impl axum::serve::Listener for Incoming {
    type Io = Conn;
    type Addr = Option<std::net::SocketAddr>;

    async fn accept(&mut self) -> (Conn, Self::Addr) {
        match self.next_conn().await {
            Some(conn) => {
                let remote = conn.peer().remote;
                (conn, remote)
            }
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Some(Incoming::local_addr(self)))
    }
}

/// The routes; see the module docs.
pub fn router(live: Arc<Live>, metrics: Arc<Metrics>) -> Router {
    let metrics = Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics);
    Router::new()
        .route(JWKS, get(all_keys))
        .route("/profiles/{name}/jwks.json", get(profile_keys))
        .route(
            "/profiles/{name}/.well-known/openid-configuration",
            get(profile_discovery),
        )
        .fallback(get(by_issuer_path))
        .with_state(live)
        .merge(metrics)
}

async fn scrape(State(metrics): State<Arc<Metrics>>) -> Response {
    match metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn all_keys(State(live): State<Arc<Live>>, headers: HeaderMap) -> Response {
    let snapshot = live.current();
    let keys = jwks::for_all(&snapshot.profiles, live.clock().unix_seconds());
    document(&snapshot, &headers, jwks::document(&keys))
}

/// The profile a `/profiles/{name}/…` path names; an empty name is not "default" here.
fn named<'s>(snapshot: &'s Snapshot, name: &str) -> Option<&'s Profile> {
    snapshot
        .profiles
        .get(name)
        .filter(|_| !name.is_empty())
        .map(|p| p.as_ref())
}

fn no_such_profile(name: &str) -> Response {
    not_found(&UnknownProfile::named(name).to_string())
}

async fn profile_keys(
    State(live): State<Arc<Live>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let snapshot = live.current();
    let Some(profile) = named(&snapshot, &name) else {
        return no_such_profile(&name);
    };
    let keys = jwks::for_profile(profile, live.clock().unix_seconds());
    document(&snapshot, &headers, jwks::document(&keys))
}

async fn profile_discovery(
    State(live): State<Arc<Live>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let snapshot = live.current();
    let Some(profile) = named(&snapshot, &name) else {
        return no_such_profile(&name);
    };
    let Some(issuer) = profile.issuer() else {
        return not_found(&format!(
            "profile {name:?} sets no issuer, so it has no discovery document"
        ));
    };
    let base = match issuer_origin(issuer) {
        Some(origin) => origin,
        None => request_origin(&headers),
    };
    let jwks_uri = format!("{base}/profiles/{name}/jwks.json");
    let keys = jwks::for_profile(profile, live.clock().unix_seconds());
    let body = jwks::openid_configuration(issuer, &jwks_uri, &keys);
    document(&snapshot, &headers, body)
}

/// `{issuer path}/.well-known/openid-configuration` and `{issuer path}/.well-known/jwks.json`.
async fn by_issuer_path(State(live): State<Arc<Live>>, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    let (prefix, want_discovery) = if let Some(prefix) = path.strip_suffix(DISCOVERY) {
        (prefix, true)
    } else if let Some(prefix) = path.strip_suffix(JWKS) {
        (prefix, false)
    } else {
        return not_found("no such document; see /.well-known/jwks.json");
    };
    let snapshot = live.current();
    let Some(issuer) = issuer_for(&snapshot, prefix, &headers) else {
        return not_found(&format!(
            "no profile has an issuer URL with path {:?}; per-profile documents are at /profiles/NAME/.well-known/openid-configuration",
            shown(if prefix.is_empty() { "/" } else { prefix })
        ));
    };
    let profiles: Vec<&Profile> = snapshot
        .profiles
        .sorted()
        .into_iter()
        .map(|p| p.as_ref())
        .filter(|p| p.issuer() == Some(issuer.as_str()))
        .collect();
    let keys = jwks::for_profiles(profiles, live.clock().unix_seconds());
    let body = if want_discovery {
        let jwks_uri = format!("{}{JWKS}", issuer.trim_end_matches('/'));
        jwks::openid_configuration(&issuer, &jwks_uri, &keys)
    } else {
        jwks::document(&keys)
    };
    document(&snapshot, &headers, body)
}

/// The issuer URL whose path is `prefix`; where several hosts share the path, the one the
/// request's Host names.
fn issuer_for(snapshot: &Snapshot, prefix: &str, headers: &HeaderMap) -> Option<String> {
    let mut candidates: Vec<(String, url::Url)> = Vec::new();
    for profile in snapshot.profiles.sorted() {
        let Some(issuer) = profile.issuer() else {
            continue;
        };
        let Ok(url) = url::Url::parse(issuer) else {
            continue;
        };
        if !matches!(url.scheme(), "http" | "https") || url.path().trim_end_matches('/') != prefix {
            continue;
        }
        if !candidates.iter().any(|(i, _)| i == issuer) {
            candidates.push((issuer.to_owned(), url));
        }
    }
    if candidates.len() > 1 {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        candidates.retain(|(_, url)| {
            let authority = match url.port() {
                Some(port) => format!("{}:{port}", url.host_str().unwrap_or("")),
                None => url.host_str().unwrap_or("").to_owned(),
            };
            authority.eq_ignore_ascii_case(host)
        });
    }
    match candidates.as_slice() {
        [(issuer, _)] => Some(issuer.clone()),
        _ => None,
    }
}

/// `scheme://host[:port]` of an http(s) issuer URL.
fn issuer_origin(issuer: &str) -> Option<String> {
    let url = url::Url::parse(issuer).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    Some(url.origin().ascii_serialization())
}

/// Where the caller reached us, for issuers that are not URLs.
fn request_origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// A cacheable JSON document with ETag and max-age, or 304 when the caller has it already.
fn document(snapshot: &Snapshot, headers: &HeaderMap, body: String) -> Response {
    let etag = jwks::etag(&body);
    let cache = format!("public, max-age={}", snapshot.jwks_cache.as_secs());
    let cached = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
        });
    let mut response = if cached {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response()
    };
    let h = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(&cache) {
        h.insert(header::CACHE_CONTROL, value);
    }
    response
}

fn not_found(message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (
        StatusCode::NOT_FOUND,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
