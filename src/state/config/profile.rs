//! One `[profiles.NAME]` table → a [`ProfileTemplate`]: key ids looked up, durations and
//! claims translated, the rotation block read. Every default and cross-check of a profile
//! lives in [`Profile::new`]; this file only translates and adds the field to the message.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use ring::rand::SystemRandom;

use super::raw::{RawProfile, RawRotation};
use super::{ProfileTemplate, duration, listed};
use crate::core::clock::whole_seconds;
use crate::core::keys::{self, Algorithm, JwkForm, JwkSet, Key, KeyId, KeyStore};
use crate::core::login::LoginUrl;
use crate::core::profile::{
    DEFAULT_MAX_TOKEN_BYTES, Lifetimes, Profile, ProfileName, ProfileSpec, Schedule, SigningKey,
    SigningWindow,
};
use crate::core::rotation::{KeyTimes, RotationSpec};
use crate::state::federated::{self, Location, RemoteSettings};

/// A managed profile keeps at most this many keys published ahead of the active one.
const MAX_KEYS_AHEAD: u64 = 16;

/// Builds and fully checks one profile; a managed one is checked with a throwaway key of its
/// algorithm standing in for the keys the service will generate, so a reload never swaps in
/// a profile that fails to build.
pub(super) fn build(
    name: &str,
    raw: RawProfile,
    store: &KeyStore,
    windows: &HashMap<KeyId, SigningWindow>,
    jwks_cache: Duration,
    data_dir: &Path,
) -> anyhow::Result<ProfileTemplate> {
    let name = ProfileName::parse(name)?;
    let algorithms = raw
        .algorithms
        .iter()
        .map(|a| a.parse::<Algorithm>().context("algorithms"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let remote = remote_settings(&raw, &algorithms, data_dir)?;
    let signing_keys = signing_keys(&raw, store, windows)?;
    let mut verify_keys = raw
        .verify_keys
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|id| lookup(store, "verify_keys", id))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut from_jwks_file = None;
    if let Some(file) = &raw.jwks_file {
        let path = super::key::resolve(data_dir, file);
        let mut ids = Vec::new();
        // Without verify_keys the profile verifies its own tokens, as a profile without a
        // jwks_file does; the set's keys come on top.
        if raw.verify_keys.is_none() {
            verify_keys.extend(signing_keys.iter().map(|s| s.key.clone()));
        }
        for key in jwks_file(&path)? {
            if verify_keys.iter().any(|k| k.id() == key.id()) {
                bail!(
                    "jwks_file {}: kid {:?} is already a verify key of this profile; key ids must be unique",
                    path.display(),
                    key.id().as_str()
                );
            }
            ids.push(key.id().clone());
            verify_keys.push(Arc::new(key));
        }
        from_jwks_file = Some((path, ids));
    }
    let login_url = raw
        .login_url
        .as_deref()
        .map(|template| LoginUrl::parse(template, &raw.allowed_next_origins))
        .transpose()?;
    if login_url.is_none() && !raw.allowed_next_origins.is_empty() {
        bail!("allowed_next_origins is set but login_url is not");
    }
    let lifecycle = super::lifecycle::parse(&raw)?;
    let spec = ProfileSpec {
        name,
        signing_keys,
        verify_keys,
        issuer: raw.issuer,
        audience: raw.audience,
        allow_audience_override: raw.allow_audience_override,
        ttl: optional_duration("ttl", raw.ttl.as_deref())?,
        max_ttl: optional_duration("max_ttl", raw.max_ttl.as_deref())?,
        login_ttl: optional_duration("login_ttl", raw.login_ttl.as_deref())?,
        leeway: optional_duration("leeway", raw.leeway.as_deref())?.unwrap_or(Duration::ZERO),
        subject_claim: raw.subject_claim,
        required_claims: raw.required_claims,
        claims: fixed_claims(raw.claims)?,
        typ: raw.typ,
        login_url,
        max_token_bytes: raw.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES),
        remote_jwks: remote.as_ref().map(|r| r.location.url().to_string()),
        algorithms,
        lifecycle,
    };
    let Some(raw_rotation) = raw.rotation else {
        Profile::new(spec.clone())?;
        return Ok(ProfileTemplate {
            spec,
            rotation: None,
            remote,
            jwks_file: from_jwks_file,
        });
    };
    let lifetimes = spec.lifetimes()?;
    let rotation =
        rotation_spec(&spec.name, &raw_rotation, lifetimes, jwks_cache).context("rotation")?;
    let material = keys::generate(rotation.algorithm, &SystemRandom::new())?;
    let stand_in = Key::from_material(
        KeyId::parse("check")?,
        rotation.algorithm,
        material.as_bytes(),
    )?;
    let template = ProfileTemplate {
        spec,
        rotation: Some(rotation),
        remote,
        jwks_file: from_jwks_file,
    };
    let always = KeyTimes {
        publish_at: 0,
        activate_at: 0,
        retire_at: u64::MAX,
        remove_at: u64::MAX,
    };
    template.build([(Arc::new(stand_in), always)])?;
    Ok(template)
}

/// `jwks_url` or `issuer_discovery` with the `jwks_*` settings beside it; `None` for a profile
/// without remote keys (where a `jwks_*` setting alone is an error).
fn remote_settings(
    raw: &RawProfile,
    algorithms: &[Algorithm],
    data_dir: &Path,
) -> anyhow::Result<Option<RemoteSettings>> {
    let location = match (&raw.jwks_url, raw.issuer_discovery) {
        (Some(_), true) => bail!("give jwks_url or issuer_discovery = true, not both"),
        (Some(url), false) => Location::Jwks(RemoteSettings::check_url("jwks_url", url)?),
        (None, true) => {
            let Some(issuer) = &raw.issuer else {
                bail!(
                    "issuer_discovery = true needs issuer: the discovery document is found under it"
                );
            };
            let document = format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            );
            Location::Discovery {
                document: RemoteSettings::check_url("issuer (for issuer_discovery)", &document)?,
                issuer: issuer.clone(),
            }
        }
        (None, false) => {
            let set = [
                ("jwks_ca_file", raw.jwks_ca_file.is_some()),
                ("jwks_refetch_min", raw.jwks_refetch_min.is_some()),
                ("jwks_cache_min", raw.jwks_cache_min.is_some()),
                ("jwks_cache_max", raw.jwks_cache_max.is_some()),
                ("jwks_stale_max", raw.jwks_stale_max.is_some()),
                ("jwks_timeout", raw.jwks_timeout.is_some()),
                ("jwks_max_bytes", raw.jwks_max_bytes.is_some()),
            ];
            if let Some((field, _)) = set.iter().find(|(_, given)| *given) {
                bail!("{field} is set but neither jwks_url nor issuer_discovery is");
            }
            return Ok(None);
        }
    };
    let ca_file = raw.jwks_ca_file.as_ref().map(|p| data_dir.join(p));
    let ca_certs = match &ca_file {
        Some(path) => federated::read_ca_file(path)?,
        None => Vec::new(),
    };
    let setting = |field: &str, text: &Option<String>, default: Duration| {
        duration(text.as_deref(), default).with_context(|| field.to_owned())
    };
    let settings = RemoteSettings {
        location,
        ca_file,
        ca_certs,
        refetch_min: setting(
            "jwks_refetch_min",
            &raw.jwks_refetch_min,
            federated::DEFAULT_REFETCH_MIN,
        )?,
        cache_min: setting(
            "jwks_cache_min",
            &raw.jwks_cache_min,
            federated::DEFAULT_CACHE_MIN,
        )?,
        cache_max: setting(
            "jwks_cache_max",
            &raw.jwks_cache_max,
            federated::DEFAULT_CACHE_MAX,
        )?,
        stale_max: setting(
            "jwks_stale_max",
            &raw.jwks_stale_max,
            federated::DEFAULT_STALE_MAX,
        )?,
        timeout: setting(
            "jwks_timeout",
            &raw.jwks_timeout,
            federated::DEFAULT_TIMEOUT,
        )?,
        max_bytes: raw.jwks_max_bytes.unwrap_or(federated::DEFAULT_MAX_BYTES),
        algorithms: algorithms.to_vec(),
    };
    settings.check_bounds()?;
    Ok(Some(settings))
}

/// `signing_key`, `signing_keys` or a rotation block (whose keys come later), each configured
/// key with its signing window.
fn signing_keys(
    raw: &RawProfile,
    store: &KeyStore,
    windows: &HashMap<KeyId, SigningWindow>,
) -> anyhow::Result<Vec<SigningKey>> {
    let (field, ids): (&str, &[String]) = match (&raw.signing_key, &raw.signing_keys, &raw.rotation)
    {
        (Some(id), None, None) => ("signing_key", std::slice::from_ref(id)),
        (None, Some(ids), None) if !ids.is_empty() => ("signing_keys", ids),
        (None, Some(_), None) => bail!("signing_keys must not be empty"),
        (None, None, _) => return Ok(Vec::new()),
        (_, _, Some(_)) => bail!(
            "a profile with a rotation block gets its signing keys from the service; remove signing_key/signing_keys"
        ),
        (Some(_), Some(_), None) => bail!("give signing_key or signing_keys, not both"),
    };
    ids.iter()
        .map(|id| {
            let key = lookup(store, field, id)?;
            let window = windows.get(id.as_str()).copied().unwrap_or_default();
            Ok(SigningKey {
                key,
                schedule: Schedule::File(window),
            })
        })
        .collect()
}

/// The usable keys of a JWK Set file (public keys only). Entries the service cannot use are
/// logged and skipped, as a published set may hold keys for other purposes; a set with no
/// usable key at all is an error, since the profile would refuse every token from it.
fn jwks_file(path: &Path) -> anyhow::Result<Vec<Key>> {
    let place = || format!("jwks_file {}", path.display());
    let text = std::fs::read(path).with_context(place)?;
    let text = String::from_utf8(text).map_err(|_| anyhow!("{}: not UTF-8", place()))?;
    let set = JwkSet::parse(&text, JwkForm::Public).with_context(place)?;
    for refused in &set.refused {
        tracing::warn!(path = %path.display(), entry = %refused, "jwks_file entry skipped");
    }
    if set.keys.is_empty() {
        let reasons: Vec<String> = set.refused.iter().map(ToString::to_string).collect();
        bail!(
            "{}: no usable key ({})",
            place(),
            if reasons.is_empty() {
                "the set is empty".to_owned()
            } else {
                reasons.join("; ")
            }
        );
    }
    Ok(set.keys)
}

/// The configured key `id`, or an error naming the field and the keys there are.
fn lookup(store: &KeyStore, field: &str, id: &str) -> anyhow::Result<Arc<Key>> {
    store.get(id).cloned().ok_or_else(|| {
        let known: Vec<String> = store
            .sorted()
            .iter()
            .map(|k| format!("{:?}", k.id().as_str()))
            .collect();
        anyhow!(
            "{field}: {id:?} is not a configured key (configured: {})",
            listed(&known)
        )
    })
}

fn optional_duration(field: &str, text: Option<&str>) -> anyhow::Result<Option<Duration>> {
    text.map(|t| duration(Some(t), Duration::ZERO).with_context(|| field.to_owned()))
        .transpose()
}

/// The `claims` table as JSON; TOML dates have no JSON form and are refused.
fn fixed_claims(
    table: Option<toml::Table>,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let Some(table) = table else {
        return Ok(serde_json::Map::new());
    };
    if let Some((name, _)) = table.iter().find(|(_, value)| contains_datetime(value)) {
        bail!(
            "claims.{name}: TOML dates have no JSON form; write the time as a number of seconds or a string"
        );
    }
    match serde_json::to_value(table).context("claims")? {
        serde_json::Value::Object(map) => Ok(map),
        _ => bail!("claims must be a table"),
    }
}

fn contains_datetime(value: &toml::Value) -> bool {
    match value {
        toml::Value::Datetime(_) => true,
        toml::Value::Array(items) => items.iter().any(contains_datetime),
        toml::Value::Table(table) => table.values().any(contains_datetime),
        _ => false,
    }
}

/// The rotation block with its lifetimes derived from the profile's: keys are published
/// max_ttl + the JWKS cache lifetime ahead unless configured, and verify max_ttl + leeway
/// after they retire.
fn rotation_spec(
    name: &ProfileName,
    raw: &RawRotation,
    lifetimes: Lifetimes,
    jwks_cache: Duration,
) -> anyhow::Result<RotationSpec> {
    if name.starts_with('.') {
        bail!("a managed profile's name must not start with \".\" (it names its key directory)");
    }
    let algorithm: Algorithm = raw.algorithm.parse().context("algorithm")?;
    if !algorithm.can_generate() {
        bail!(
            "algorithm {algorithm}: the service generates ES256, ES384, ES512, EdDSA and HMAC keys; give RSA keys as files"
        );
    }
    let seconds = |field: &str, text: &str| -> anyhow::Result<u64> {
        let value = duration(Some(text), Duration::ZERO).context(field.to_owned())?;
        match whole_seconds(value) {
            Some(secs) if secs > 0 => Ok(secs),
            _ => bail!("{field} must be whole seconds, at least 1s"),
        }
    };
    let rotate_every = seconds("rotate_every", &raw.rotate_every)?;
    let publish_ahead = match &raw.publish_ahead {
        Some(text) => seconds("publish_ahead", text)?,
        None => lifetimes.max_ttl.as_secs() + jwks_cache.as_secs(),
    };
    if publish_ahead > rotate_every.saturating_mul(MAX_KEYS_AHEAD) {
        bail!(
            "publish_ahead ({}) is more than {MAX_KEYS_AHEAD} times rotate_every ({}): that many keys would wait unused; rotate less often",
            humantime::format_duration(Duration::from_secs(publish_ahead)),
            humantime::format_duration(Duration::from_secs(rotate_every)),
        );
    }
    Ok(RotationSpec {
        algorithm,
        rotate_every,
        publish_ahead,
        verify_after: lifetimes.verify_after(),
    })
}
