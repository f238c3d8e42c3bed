//! JWK Sets (RFC 7517) and OpenID discovery documents, built from the live profiles at an
//! instant. Pure: the gRPC `Jwks` call and the HTTP listener both serve what this returns.

use serde_json::{Map, Value, json};

use crate::core::keys::Jwk;
use crate::core::profile::{Profile, Profiles};

/// The published keys of one profile at `now` (seconds since the Unix epoch).
pub fn for_profile(profile: &Profile, now: u64) -> Vec<Jwk> {
    profile.published_jwks(now)
}

/// The published keys of the given profiles, each key once (profiles may share a key).
pub fn for_profiles<'a>(profiles: impl IntoIterator<Item = &'a Profile>, now: u64) -> Vec<Jwk> {
    let mut keys: Vec<Jwk> = Vec::new();
    for profile in profiles {
        for jwk in profile.published_jwks(now) {
            if !keys.iter().any(|k| k.kid == jwk.kid) {
                keys.push(jwk);
            }
        }
    }
    keys
}

/// All profiles' published keys.
pub fn for_all(profiles: &Profiles, now: u64) -> Vec<Jwk> {
    for_profiles(profiles.sorted().into_iter().map(|p| p.as_ref()), now)
}

/// The JWK Set document `{"keys": [...]}`.
pub fn document(keys: &[Jwk]) -> String {
    let keys: Vec<Value> = keys.iter().map(|k| Value::Object(k.to_json())).collect();
    json!({ "keys": keys }).to_string()
}

/// An OpenID Provider Metadata document (OpenID Connect Discovery 1.0 §3) for an issuer whose
/// tokens are verified with the keys at `jwks_uri`. Only the members a relying party needs
/// to verify tokens are given; this service is not a login provider.
pub fn openid_configuration(issuer: &str, jwks_uri: &str, keys: &[Jwk]) -> String {
    let mut algs: Vec<&str> = keys.iter().map(|k| k.alg.name()).collect();
    algs.sort_unstable();
    algs.dedup();
    let mut doc = Map::new();
    doc.insert("issuer".into(), issuer.into());
    doc.insert("jwks_uri".into(), jwks_uri.into());
    doc.insert(
        "id_token_signing_alg_values_supported".into(),
        Value::from(algs),
    );
    doc.insert("response_types_supported".into(), json!(["id_token"]));
    doc.insert("subject_types_supported".into(), json!(["public"]));
    Value::Object(doc).to_string()
}

/// A strong ETag for a document: a quoted base64url SHA-256 prefix of its bytes.
pub fn etag(body: &str) -> String {
    use base64::Engine as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, body.as_bytes());
    format!(
        "\"{}\"",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])
    )
}
