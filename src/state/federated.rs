//! Remote JWK Sets of federated issuers: fetched over HTTPS (rustls on ring; the system roots
//! plus a profile's `jwks_ca_file`), cached per `Cache-Control` within configured bounds, and
//! handed to Verify as a [`RemoteKeys`] reading.
//!
//! The rules, each enforced here and nowhere else:
//! - One fetch at a time per profile, and at most one attempt per `jwks_refetch_min` whatever
//!   triggers it (expiry, an unknown `kid`, a failing issuer): forged kids cannot make the
//!   service hammer the issuer, however many arrive at once.
//! - A failed, oversized, slow or unparsable answer never replaces the last good set; that set
//!   keeps verifying until `jwks_stale_max` past its expiry, then Verify refuses with the reason.
//! - Redirects are not followed: the configured URL is the trust anchor, and a redirect could
//!   lead off to a host nobody configured. A token's `jku`/`x5u` are never read at all.
//! - Logs carry the URL, status, key count and error, never key material.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use rustls::pki_types::CertificateDer;
use url::Url;

use crate::core::clock::Clock;
use crate::core::keys::{Algorithm, JwkExpectations, JwkForm, JwkSet, Key, KeyError, KeyFamily};
use crate::core::profile::ProfileName;
use crate::core::remote::RemoteKeys;

/// `jwks_refetch_min` unless configured.
pub const DEFAULT_REFETCH_MIN: Duration = Duration::from_secs(30);
/// `jwks_cache_min` unless configured.
pub const DEFAULT_CACHE_MIN: Duration = Duration::from_secs(60);
/// `jwks_cache_max` unless configured.
pub const DEFAULT_CACHE_MAX: Duration = Duration::from_secs(24 * 3600);
/// `jwks_stale_max` unless configured.
pub const DEFAULT_STALE_MAX: Duration = Duration::from_secs(24 * 3600);
/// `jwks_timeout` unless configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// `jwks_max_bytes` unless configured.
pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;
/// How long a set is kept when the answer has no `Cache-Control: max-age` (then clamped).
pub const DEFAULT_MAX_AGE: u64 = 300;

/// Where a remote key set is found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// `jwks_url`: the JWK Set itself.
    Jwks(Url),
    /// `issuer_discovery = true`: `{issuer}/.well-known/openid-configuration`, whose
    /// `jwks_uri` names the set; its `issuer` must be the profile's.
    Discovery { document: Url, issuer: String },
}

impl Location {
    /// The URL configured, for messages and logs.
    pub fn url(&self) -> &Url {
        match self {
            Location::Jwks(url) => url,
            Location::Discovery { document, .. } => document,
        }
    }
}

/// A federated profile's remote key settings, checked by the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteSettings {
    pub location: Location,
    /// `jwks_ca_file`, and the certificates read from it at load time.
    pub ca_file: Option<PathBuf>,
    pub ca_certs: Vec<CertificateDer<'static>>,
    pub refetch_min: Duration,
    pub cache_min: Duration,
    pub cache_max: Duration,
    pub stale_max: Duration,
    pub timeout: Duration,
    pub max_bytes: usize,
    /// The profile's algorithms: a remote key bound to any other is skipped when fetched.
    pub algorithms: Vec<Algorithm>,
}

impl RemoteSettings {
    /// Refuses anything but an https URL with a host and without credentials or a fragment;
    /// `field` names the setting the URL came from.
    pub fn check_url(field: &str, text: &str) -> anyhow::Result<Url> {
        let url = Url::parse(text).with_context(|| format!("{field}: {text:?} is not a URL"))?;
        if url.scheme() != "https" {
            bail!(
                "{field}: {text:?} must be an https URL (keys fetched over plain HTTP could be anyone's)"
            );
        }
        if url.host_str().is_none_or(str::is_empty) {
            bail!("{field}: {text:?} has no host");
        }
        if !url.username().is_empty() || url.password().is_some() {
            bail!("{field}: the URL must not carry credentials");
        }
        if url.fragment().is_some() {
            bail!("{field}: {text:?} must not have a #fragment");
        }
        Ok(url)
    }

    /// The bounds hold together: each at least 1s, cache_min ≤ cache_max, a sane size and time.
    pub fn check_bounds(&self) -> anyhow::Result<()> {
        for (field, value) in [
            ("jwks_refetch_min", self.refetch_min),
            ("jwks_cache_min", self.cache_min),
            ("jwks_cache_max", self.cache_max),
            ("jwks_timeout", self.timeout),
        ] {
            if value < Duration::from_secs(1) {
                bail!("{field} must be at least 1s");
            }
        }
        if self.cache_min > self.cache_max {
            bail!(
                "jwks_cache_min ({}) is above jwks_cache_max ({})",
                humantime::format_duration(self.cache_min),
                humantime::format_duration(self.cache_max)
            );
        }
        if self.timeout > Duration::from_secs(60) {
            bail!("jwks_timeout must be at most 60s: Verify calls may wait for it");
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_bytes) {
            bail!(
                "jwks_max_bytes must be between 1024 and 16777216, not {}",
                self.max_bytes
            );
        }
        Ok(())
    }
}

/// Reads the PEM certificates of a `jwks_ca_file`; the message names the file.
pub fn read_ca_file(path: &std::path::Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject as _;
    let bytes = std::fs::read(path)
        .with_context(|| format!("jwks_ca_file: cannot read {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("jwks_ca_file {}: {e:?}", path.display()))?;
    if certs.is_empty() {
        bail!(
            "jwks_ca_file {}: holds no PEM CERTIFICATE block",
            path.display()
        );
    }
    Ok(certs)
}

/// Why a fetch brought no usable key set; the message names the URL and the reason.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET {url}: {reason}")]
    Request { url: String, reason: String },
    #[error("GET {url}: answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error(
        "GET {url}: answered HTTP {status} redirecting to {location:?}; redirects are not followed, configure the final URL"
    )]
    Redirect {
        url: String,
        status: u16,
        location: String,
    },
    #[error("GET {url}: the answer is larger than jwks_max_bytes ({limit} bytes)")]
    TooLarge { url: String, limit: usize },
    #[error("GET {url}: not a usable JWK Set: {reason}")]
    BadSet { url: String, reason: String },
    #[error("GET {url}: not a usable OpenID discovery document: {reason}")]
    BadDiscovery { url: String, reason: String },
}

/// What metrics show of one remote key set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteStats {
    /// Fetches that brought a good set.
    pub ok: u64,
    /// Fetches that failed (the previous set, if any, kept serving).
    pub failed: u64,
    /// Seconds since the last good set was fetched; `None`: never.
    pub age: Option<u64>,
    /// Keys in the last good set.
    pub keys: usize,
}

/// A fetched, parsed key set.
struct Fetched {
    url: Url,
    keys: Vec<Arc<Key>>,
    skipped: Vec<String>,
    max_age: Option<u64>,
}

/// The last good set and the bookkeeping of fetch attempts.
#[derive(Default)]
struct Cache {
    /// The last good set, when it was fetched and when it expires (Unix seconds).
    good: Option<(Arc<RemoteKeys>, u64, u64)>,
    /// When the last attempt started; attempts are at least `refetch_min` apart.
    last_attempt: Option<u64>,
    last_error: Option<String>,
    /// Counts attempts, so a caller that waited for another's fetch sees it happened.
    attempts: u64,
    /// Attempts that failed, for metrics.
    failures: u64,
    /// The `jwks_uri` discovery last gave; found again when a fetch from it fails.
    discovered: Option<Url>,
}

/// One federated profile's remote key set: the client, the last good set, the fetch rules.
pub struct RemoteJwks {
    profile: ProfileName,
    settings: RemoteSettings,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
    cache: Mutex<Cache>,
    /// Held for the length of a fetch: one at a time.
    flight: tokio::sync::Mutex<()>,
}

impl fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("profile", &self.profile)
            .field("url", &self.settings.location.url().as_str())
            .finish_non_exhaustive()
    }
}

impl RemoteJwks {
    /// A client for `settings` trusting the system roots (which honour `SSL_CERT_FILE`) plus
    /// the profile's CA file; nothing is fetched yet.
    pub fn new(
        profile: ProfileName,
        settings: RemoteSettings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<RemoteJwks> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::debug!(error = %error, "a system root certificate could not be read");
        }
        roots.add_parsable_certificates(native.certs);
        for cert in &settings.ca_certs {
            roots.add(cert.clone()).map_err(|e| {
                anyhow!(
                    "jwks_ca_file {}: a certificate is not usable as a root: {e}",
                    settings
                        .ca_file
                        .as_ref()
                        .map_or(String::new(), |p| p.display().to_string())
                )
            })?;
        }
        if roots.is_empty() {
            bail!(
                "no trusted root certificates: the system store is empty (see SSL_CERT_FILE) and jwks_ca_file is not set"
            );
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("token-authority/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTPS client")?;
        Ok(RemoteJwks {
            profile,
            settings,
            client,
            clock,
            cache: Mutex::new(Cache::default()),
            flight: tokio::sync::Mutex::new(()),
        })
    }

    /// The settings this set was made from (a reload keeps the set when they are unchanged).
    pub fn settings(&self) -> &RemoteSettings {
        &self.settings
    }

    /// Fetch counts and the age of the last good set at `now`, for metrics.
    pub fn stats(&self, now: u64) -> RemoteStats {
        let cache = self.lock();
        RemoteStats {
            ok: cache.attempts - cache.failures,
            failed: cache.failures,
            age: cache
                .good
                .as_ref()
                .map(|(_, fetched_at, _)| now.saturating_sub(*fetched_at)),
            keys: cache
                .good
                .as_ref()
                .map_or(0, |(keys, _, _)| keys.keys().len()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The keys to verify with at the clock's now: the last good set until `jwks_stale_max`
    /// past its expiry, otherwise an unavailable reading that says why.
    pub fn current(&self) -> Arc<RemoteKeys> {
        let now = self.clock.unix_seconds();
        let cache = self.lock();
        let url = self.settings.location.url().as_str();
        let last_error = || {
            cache
                .last_error
                .as_deref()
                .map_or(String::new(), |e| format!(" (last error: {e})"))
        };
        match &cache.good {
            Some((keys, _, expires_at))
                if now < expires_at.saturating_add(self.settings.stale_max.as_secs()) =>
            {
                keys.clone()
            }
            Some((_, fetched_at, expires_at)) => Arc::new(RemoteKeys::unavailable(
                url,
                format!(
                    "the last good set was fetched {}s ago, expired {}s ago and jwks_stale_max is {}{}",
                    now.saturating_sub(*fetched_at),
                    now.saturating_sub(*expires_at),
                    humantime::format_duration(self.settings.stale_max),
                    last_error()
                ),
            )),
            None if cache.last_attempt.is_none() => {
                Arc::new(RemoteKeys::unavailable(url, "not fetched yet".to_owned()))
            }
            None => Arc::new(RemoteKeys::unavailable(
                url,
                format!("no fetch has succeeded yet{}", last_error()),
            )),
        }
    }

    /// The keys for one Verify: when the set is missing or expired (and an attempt is
    /// allowed), fetch first, waiting at most `jwks_timeout`.
    pub async fn for_verify(&self) -> Arc<RemoteKeys> {
        let now = self.clock.unix_seconds();
        let expired = {
            let cache = self.lock();
            cache.good.as_ref().is_none_or(|(_, _, exp)| now >= *exp)
                && self.may_attempt(&cache, now)
        };
        if expired {
            self.refresh("expired").await;
        }
        self.current()
    }

    /// After a token named a kid the set does not have: refetch, unless an attempt was made
    /// within `jwks_refetch_min`. Returns the new reading if a fetch ran (here or in a
    /// concurrent call this one waited for).
    pub async fn for_unknown_kid(&self) -> Option<Arc<RemoteKeys>> {
        if self.refresh("unknown kid").await {
            Some(self.current())
        } else {
            None
        }
    }

    /// When the set should next be fetched in the background (Unix seconds): three quarters
    /// into its cache lifetime, or `jwks_refetch_min` after a failed attempt.
    pub fn next_refresh_at(&self) -> u64 {
        let cache = self.lock();
        let retry = cache.last_attempt.map_or(0, |at| {
            at.saturating_add(self.settings.refetch_min.as_secs())
        });
        match &cache.good {
            Some((_, fetched_at, expires_at)) => {
                let ahead = fetched_at + (expires_at.saturating_sub(*fetched_at)) * 3 / 4;
                ahead.max(retry)
            }
            None => retry,
        }
    }

    /// Fetches now if the background schedule says it is time.
    pub async fn refresh_if_due(&self) {
        if self.clock.unix_seconds() >= self.next_refresh_at() {
            self.refresh("scheduled").await;
        }
    }

    fn may_attempt(&self, cache: &Cache, now: u64) -> bool {
        cache
            .last_attempt
            .is_none_or(|at| now >= at.saturating_add(self.settings.refetch_min.as_secs()))
    }

    /// One fetch, if none ran while this call waited and the last attempt is at least
    /// `jwks_refetch_min` old; returns whether a fetch ran (this one or the one waited for).
    pub async fn refresh(&self, trigger: &'static str) -> bool {
        let seen = self.lock().attempts;
        let _flight = self.flight.lock().await;
        let now = self.clock.unix_seconds();
        let discovered = {
            let mut cache = self.lock();
            if cache.attempts != seen {
                return true;
            }
            if !self.may_attempt(&cache, now) {
                return false;
            }
            cache.last_attempt = Some(now);
            cache.discovered.clone()
        };
        let result = self.fetch(discovered.as_ref()).await;
        let mut cache = self.lock();
        cache.attempts += 1;
        let profile = self.profile.as_str();
        match result {
            Ok(fetched) => {
                let max_age = fetched.max_age.unwrap_or(DEFAULT_MAX_AGE).clamp(
                    self.settings.cache_min.as_secs(),
                    self.settings.cache_max.as_secs(),
                );
                tracing::info!(
                    profile,
                    url = %fetched.url,
                    keys = fetched.keys.len(),
                    skipped = fetched.skipped.len(),
                    cache_secs = max_age,
                    trigger,
                    "remote key set fetched"
                );
                for why in &fetched.skipped {
                    tracing::warn!(profile, url = %fetched.url, reason = %why, "remote key skipped");
                }
                let keys = RemoteKeys::usable(self.settings.location.url().as_str(), fetched.keys);
                cache.good = Some((Arc::new(keys), now, now.saturating_add(max_age)));
                cache.last_error = None;
                if matches!(self.settings.location, Location::Discovery { .. }) {
                    cache.discovered = Some(fetched.url);
                }
            }
            Err(error) => {
                let message = error.to_string();
                let keeping = if cache.good.is_some() {
                    "the previous set keeps serving"
                } else {
                    "no key set yet"
                };
                tracing::warn!(profile, error = %message, trigger, "remote key set not fetched; {keeping}");
                cache.failures += 1;
                cache.last_error = Some(message);
                // A set that moved is looked up again through discovery next time.
                cache.discovered = None;
            }
        }
        true
    }

    /// GETs the set (through discovery when configured) and parses it.
    async fn fetch(&self, discovered: Option<&Url>) -> Result<Fetched, FetchError> {
        let url = match (&self.settings.location, discovered) {
            (Location::Jwks(url), _) => url.clone(),
            (Location::Discovery { .. }, Some(url)) => url.clone(),
            (Location::Discovery { document, issuer }, None) => {
                self.discover(document, issuer).await?
            }
        };
        let (body, max_age) = self.get(&url).await?;
        let (keys, skipped) =
            parse_set(&body, &self.settings.algorithms).map_err(|reason| FetchError::BadSet {
                url: url.to_string(),
                reason,
            })?;
        Ok(Fetched {
            url,
            keys,
            skipped,
            max_age,
        })
    }

    /// The `jwks_uri` of the discovery document at `document`, whose `issuer` must be `issuer`.
    async fn discover(&self, document: &Url, issuer: &str) -> Result<Url, FetchError> {
        let (body, _) = self.get(document).await?;
        let bad = |reason: String| FetchError::BadDiscovery {
            url: document.to_string(),
            reason,
        };
        let doc: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&body).map_err(|e| bad(format!("not a JSON object: {e}")))?;
        match doc.get("issuer") {
            Some(serde_json::Value::String(got)) if got == issuer => {}
            Some(serde_json::Value::String(got)) => {
                return Err(bad(format!(
                    "its issuer is {:?}, the profile's is {issuer:?}",
                    clip(got)
                )));
            }
            _ => return Err(bad("it has no \"issuer\" string".to_owned())),
        }
        let Some(serde_json::Value::String(jwks_uri)) = doc.get("jwks_uri") else {
            return Err(bad("it has no \"jwks_uri\" string".to_owned()));
        };
        RemoteSettings::check_url("jwks_uri", jwks_uri).map_err(|e| bad(format!("{e:#}")))
    }

    /// One GET: status 200, at most `jwks_max_bytes`, within `jwks_timeout`; the body and the
    /// `Cache-Control` max-age.
    async fn get(&self, url: &Url) -> Result<(Vec<u8>, Option<u64>), FetchError> {
        let url_text = url.to_string();
        let request_error = |e: reqwest::Error| FetchError::Request {
            url: url_text.clone(),
            reason: error_chain(&e),
        };
        let mut response = self
            .client
            .get(url.clone())
            .header(
                reqwest::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map_or_else(String::new, |l| clip(l).to_owned());
            return Err(FetchError::Redirect {
                url: url_text,
                status: status.as_u16(),
                location,
            });
        }
        if status != reqwest::StatusCode::OK {
            return Err(FetchError::Status {
                url: url_text,
                status: status.as_u16(),
            });
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let limit = self.settings.max_bytes;
        let too_large = || FetchError::TooLarge {
            url: url_text.clone(),
            limit,
        };
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, max_age))
    }
}

/// The `max-age` of a `Cache-Control` value in seconds; `no-cache`/`no-store` count as 0 (the
/// lower bound then applies).
pub fn max_age(cache_control: &str) -> Option<u64> {
    let mut found = None;
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(0);
        }
        if let Some(value) = lower.strip_prefix("max-age=") {
            found = value.trim_matches('"').parse::<u64>().ok();
        }
    }
    found
}

/// A JWK Set's public keys that verify with one of `algorithms`, and why the other entries
/// were skipped. A set that is not a JWK Set, or has no key of those algorithms, is refused
/// whole, so it never replaces a good one.
fn parse_set(
    body: &[u8],
    algorithms: &[Algorithm],
) -> Result<(Vec<Arc<Key>>, Vec<String>), String> {
    let text = std::str::from_utf8(body).map_err(|_| "the answer is not UTF-8".to_owned())?;
    let set = JwkSet::parse(text, JwkForm::Public).map_err(|e| e.to_string())?;
    let mut skipped = Vec::new();
    let mut found = set.keys;
    let rsa: Vec<Algorithm> = algorithms
        .iter()
        .copied()
        .filter(|a| a.family() == KeyFamily::Rsa)
        .collect();
    for refused in &set.refused {
        // An RSA key without `alg` (Microsoft Entra publishes them) fits several algorithms;
        // a profile that accepts exactly one RSA algorithm says which it is.
        match (&refused.reason, rsa.as_slice()) {
            (KeyError::BadJwk { member, reason }, [alg])
                if member == "alg" && reason.starts_with("missing") =>
            {
                match rsa_entry(text, refused.index, *alg) {
                    Ok(key) => found.push(key),
                    Err(e) => skipped.push(format!("{refused}; as {alg}: {e}")),
                }
            }
            _ => skipped.push(refused.to_string()),
        }
    }
    let mut keys = Vec::new();
    for key in found {
        if algorithms.contains(&key.algorithm()) {
            keys.push(Arc::new(key));
        } else {
            skipped.push(format!(
                "kid {:?}: {} is not among the profile's algorithms",
                key.id().as_str(),
                key.algorithm()
            ));
        }
    }
    if keys.is_empty() {
        let first = skipped
            .first()
            .map_or(String::new(), |why| format!(" (first: {why})"));
        return Err(format!(
            "it holds no key of the profile's algorithms; {} entries skipped{first}",
            skipped.len()
        ));
    }
    Ok((keys, skipped))
}

/// Entry `index` of a JWK Set read again as a public key of `alg`. The set parser refused it
/// only for its missing `alg`, after checking its members were unique, so re-encoding it loses
/// nothing.
fn rsa_entry(text: &str, index: usize, alg: Algorithm) -> Result<Key, KeyError> {
    let not_set = || KeyError::NotJwk("the entry could not be read again".into());
    let set: serde_json::Value = serde_json::from_str(text).map_err(|_| not_set())?;
    let entry = set
        .get("keys")
        .and_then(|k| k.get(index))
        .ok_or_else(not_set)?;
    let expect = JwkExpectations {
        form: JwkForm::Public,
        kid: None,
        alg: Some(alg),
    };
    Key::from_jwk(&entry.to_string(), &expect)
}

/// `e` and its sources, joined: reqwest's own message alone omits the TLS or IO reason.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// At most 200 characters of text a remote server chose, for messages.
fn clip(text: &str) -> &str {
    match text.char_indices().nth(200) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_reads_the_directive_and_treats_no_cache_as_zero() {
        assert_eq!(max_age("public, max-age=3600"), Some(3600));
        assert_eq!(
            max_age("max-age=20107, must-revalidate, no-transform"),
            Some(20107)
        );
        assert_eq!(max_age("no-cache"), Some(0));
        assert_eq!(max_age("private, no-store, max-age=60"), Some(0));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    #[test]
    fn only_https_urls_without_credentials_are_accepted() {
        assert!(RemoteSettings::check_url("jwks_url", "https://issuer.example/jwks").is_ok());
        for bad in [
            "http://issuer.example/jwks",
            "https://user:pw@issuer.example/jwks",
            "https://issuer.example/jwks#x",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(
                RemoteSettings::check_url("jwks_url", bad).is_err(),
                "{bad} was accepted"
            );
        }
    }
}
