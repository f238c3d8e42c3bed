//! The TOML file as serde reads it, field for field (`deny_unknown_fields` everywhere, so a
//! misspelt setting is an error, not a silent default). Nothing here is checked beyond its type.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub keys: Vec<RawKey>,
    #[serde(default)]
    pub profiles: BTreeMap<String, RawProfile>,
    #[serde(default)]
    pub callers: Vec<RawCaller>,
    #[serde(default)]
    pub audit: RawAudit,
    pub store: Option<RawStore>,
}

/// `[store]`: where revocations, single-use marks and refresh families are kept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub backend: Option<String>,
    pub path: Option<PathBuf>,
    pub url: Option<String>,
}

/// `[profiles.NAME.refresh]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRefresh {
    pub profile: String,
    #[serde(default)]
    pub rotate: bool,
    #[serde(default, deserialize_with = "duration_text")]
    pub reuse_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub listen: Option<String>,
    #[serde(default)]
    pub http_listen: HttpListen,
    #[serde(default, deserialize_with = "duration_text")]
    pub jwks_cache: Option<String>,
    #[serde(default)]
    pub admin: bool,
    pub max_request_bytes: Option<usize>,
    #[serde(default, deserialize_with = "duration_text")]
    pub drain_timeout: Option<String>,
    /// The profile that verifies `authorization: Bearer` tokens of callers.
    pub caller_profile: Option<String>,
    #[serde(default)]
    pub allow_unauthenticated: bool,
    pub tls: Option<RawTls>,
}

/// `[server.tls]`: the files, as written (relative paths resolve against the data directory).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

/// One `[[callers]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCaller {
    pub name: String,
    pub spiffe_id: Option<String>,
    pub dns_name: Option<String>,
    pub token_subject: Option<String>,
    pub api_key_sha256: Option<String>,
    #[serde(default)]
    pub allow: Vec<String>,
    pub subjects: Option<String>,
    pub claims: Option<Vec<String>>,
    #[serde(default, deserialize_with = "duration_text")]
    pub max_ttl: Option<String>,
    pub rate: Option<String>,
    pub burst: Option<u32>,
}

/// The `[audit]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    #[serde(default)]
    pub subjects: AuditSubjects,
    pub key_file: Option<PathBuf>,
}

/// How audit records write a subject.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditSubjects {
    /// HMAC-SHA256 under the audit key, hex.
    #[default]
    Hmac,
    /// As asked for.
    Plain,
}

/// `server.http_listen`: an address, or `"off"` (or empty) for no HTTP listener.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum HttpListen {
    #[default]
    Off,
    At(SocketAddr),
}

impl<'de> Deserialize<'de> for HttpListen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "" | "off" => Ok(HttpListen::Off),
            addr => addr.parse().map(HttpListen::At).map_err(|e| {
                serde::de::Error::custom(format!(
                    "server.http_listen {addr:?}: {e} (write it as IP:PORT, or \"off\")"
                ))
            }),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    /// Required unless a JWK gives its `kid`.
    pub id: Option<String>,
    /// Required unless a JWK gives its `alg`.
    pub algorithm: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub secret_encoding: Option<SecretEncoding>,
    pub private_key_file: Option<PathBuf>,
    pub private_key_env: Option<String>,
    pub public_key_file: Option<PathBuf>,
    pub jwk_file: Option<PathBuf>,
    pub jwk_env: Option<String>,
    #[serde(default)]
    pub generate: bool,
    pub not_before: Option<toml::Value>,
    pub not_after: Option<toml::Value>,
}

/// How an HMAC secret's text is turned into the secret's bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum SecretEncoding {
    /// The bytes as written.
    #[default]
    Raw,
    /// Standard or URL-safe base64, padded or not.
    Base64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRotation {
    pub algorithm: String,
    #[serde(deserialize_with = "required_duration_text")]
    pub rotate_every: String,
    #[serde(default, deserialize_with = "duration_text")]
    pub publish_ahead: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    pub signing_key: Option<String>,
    pub signing_keys: Option<Vec<String>>,
    pub rotation: Option<RawRotation>,
    pub verify_keys: Option<Vec<String>>,
    pub jwks_file: Option<PathBuf>,
    pub issuer: Option<String>,
    #[serde(default)]
    pub audience: Vec<String>,
    #[serde(default)]
    pub allow_audience_override: bool,
    #[serde(default, deserialize_with = "duration_text")]
    pub ttl: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    pub max_ttl: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    pub login_ttl: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    pub leeway: Option<String>,
    pub subject_claim: Option<String>,
    #[serde(default)]
    pub required_claims: Vec<String>,
    pub claims: Option<toml::Table>,
    pub typ: Option<String>,
    pub login_url: Option<String>,
    #[serde(default)]
    pub allowed_next_origins: Vec<String>,
    pub max_token_bytes: Option<usize>,
    #[serde(default)]
    pub algorithms: Vec<String>,
    pub jwks_url: Option<String>,
    #[serde(default)]
    pub issuer_discovery: bool,
    pub jwks_ca_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "duration_text")]
    pub jwks_refetch_min: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    pub jwks_cache_min: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    pub jwks_cache_max: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    pub jwks_stale_max: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    pub jwks_timeout: Option<String>,
    pub jwks_max_bytes: Option<usize>,
    #[serde(default)]
    pub revocable: bool,
    #[serde(default)]
    pub single_use: bool,
    pub refresh: Option<RawRefresh>,
}

/// A duration setting that must be given, as text; see [`duration_text`].
fn required_duration_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    duration_text(deserializer)?
        .ok_or_else(|| serde::de::Error::custom("must be a duration as text, such as \"24h\""))
}

/// A duration setting as text (`"5m"`); a bare number is refused with the text to write, since
/// its unit would be a guess.
fn duration_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Setting {
        Text(String),
        Number(i64),
        Other(serde::de::IgnoredAny),
    }
    match Option::<Setting>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Setting::Text(text)) => Ok(Some(text)),
        Some(Setting::Number(n)) => Err(serde::de::Error::custom(format!(
            "{n} is a bare number; write a duration as text, such as \"{n}s\" (or \"30s\", \"5m\", \"24h\")"
        ))),
        Some(Setting::Other(_)) => Err(serde::de::Error::custom(
            "must be a duration as text, such as \"30s\", \"5m\" or \"24h\"",
        )),
    }
}
