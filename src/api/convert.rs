//! proto ↔ domain, and nothing else: request fields become domain values (or a [`FieldError`]
//! naming the field), domain answers become proto messages. No lookups, no signing, no logging.

use std::time::{Duration, SystemTime};

use prost_types::value::Kind;
use serde_json::{Map, Number, Value};

use crate::core::jwks;
use crate::core::keys::{Jwk, JwkMaterial, Key};
use crate::core::profile::Profile;
use crate::core::rotation;
use crate::core::token::{Failure, Issued, Refusal, Verified};
use crate::proto::{self, KeyState, VerifyFailure};

/// A request field that cannot become a domain value: which field, and why.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The field's path in the request, such as `ttl` or `claims.roles[2]`.
    pub field: String,
    /// What the field must be.
    pub reason: &'static str,
}

/// Request claims as JSON; integral numbers become JSON integers, so `{"n": 42}` stays 42.
pub fn claims_from_proto(
    claims: Option<prost_types::Struct>,
) -> Result<Map<String, Value>, FieldError> {
    let Some(claims) = claims else {
        return Ok(Map::new());
    };
    claims
        .fields
        .into_iter()
        .map(|(name, value)| {
            let json = value_to_json(value, &name)?;
            Ok((name, json))
        })
        .collect()
}

fn value_to_json(value: prost_types::Value, path: &str) -> Result<Value, FieldError> {
    Ok(match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::NumberValue(n)) => {
            if !n.is_finite() {
                return Err(FieldError {
                    field: format!("claims.{path}"),
                    reason: "must be a finite number",
                });
            }
            // Within ±2^53 an f64 holds every integer exactly, so integral values are integers.
            if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
                Value::Number(Number::from(n as i64))
            } else {
                Number::from_f64(n).map_or(Value::Null, Value::Number)
            }
        }
        Some(Kind::StructValue(s)) => Value::Object(
            s.fields
                .into_iter()
                .map(|(k, v)| {
                    let json = value_to_json(v, &format!("{path}.{k}"))?;
                    Ok((k, json))
                })
                .collect::<Result<_, FieldError>>()?,
        ),
        Some(Kind::ListValue(list)) => Value::Array(
            list.values
                .into_iter()
                .enumerate()
                .map(|(i, v)| value_to_json(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// A JSON object (claims, a JOSE header) as a proto `Struct`, losslessly for what JSON can hold.
pub fn map_to_struct(map: Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .into_iter()
            .map(|(k, v)| (k, json_to_value(v)))
            .collect(),
    }
}

fn json_to_value(value: Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(json_to_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(map_to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// The requested lifetime; absent stays absent (the profile decides), negative is refused.
pub fn ttl_from_proto(ttl: Option<prost_types::Duration>) -> Result<Option<Duration>, FieldError> {
    ttl.map(|d| {
        Duration::try_from(d).map_err(|_| FieldError {
            field: "ttl".to_owned(),
            reason: "must be a positive duration",
        })
    })
    .transpose()
}

/// Seconds since the Unix epoch, fractions kept to the nanosecond, as a proto `Timestamp`.
pub fn timestamp(seconds: f64) -> prost_types::Timestamp {
    let whole = seconds.floor();
    prost_types::Timestamp {
        seconds: whole as i64,
        nanos: ((seconds - whole) * 1e9) as i32,
    }
}

/// A wall-clock time as a proto `Timestamp`.
pub fn system_timestamp(time: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(time)
}

/// A freshly issued token as the `Issue` answer.
pub fn issued_to_proto(issued: Issued) -> proto::IssueResponse {
    proto::IssueResponse {
        token: issued.token,
        token_id: issued.token_id,
        issued_at: Some(timestamp(issued.issued_at as f64)),
        expires_at: Some(timestamp(issued.expires_at as f64)),
        key_id: issued.key_id.to_string(),
        algorithm: issued.algorithm.name().to_owned(),
    }
}

/// A login URL and the token inside it as the `LoginUrl` answer.
pub fn login_url_to_proto(url: String, issued: Issued) -> proto::LoginUrlResponse {
    proto::LoginUrlResponse {
        url,
        token: issued.token,
        token_id: issued.token_id,
        expires_at: Some(timestamp(issued.expires_at as f64)),
    }
}

/// A token that passed every check as the `Verify` answer.
pub fn verified_to_proto(verified: Verified) -> proto::VerifyResponse {
    proto::VerifyResponse {
        valid: true,
        failure: VerifyFailure::Unspecified.into(),
        detail: String::new(),
        claims: Some(map_to_struct(verified.claims)),
        header: Some(map_to_struct(verified.header)),
        key_id: verified.key_id.to_string(),
        algorithm: verified.algorithm.name().to_owned(),
        expires_at: Some(timestamp(verified.expires_at)),
        subject: verified.subject,
        token_id: verified.token_id.unwrap_or_default(),
    }
}

/// A refused token as the `Verify` answer: an answer, not an error, so it carries no claims.
pub fn refusal_to_proto(refusal: Refusal) -> proto::VerifyResponse {
    proto::VerifyResponse {
        valid: false,
        failure: failure_to_proto(refusal.failure).into(),
        detail: refusal.detail,
        ..Default::default()
    }
}

/// Why a token was refused, as the proto enum; every domain reason has its own value.
pub fn failure_to_proto(failure: Failure) -> VerifyFailure {
    match failure {
        Failure::Malformed => VerifyFailure::Malformed,
        Failure::AlgorithmNotAllowed => VerifyFailure::AlgorithmNotAllowed,
        Failure::UnknownKey => VerifyFailure::UnknownKey,
        Failure::BadSignature => VerifyFailure::BadSignature,
        Failure::Expired => VerifyFailure::Expired,
        Failure::NotYetValid => VerifyFailure::NotYetValid,
        Failure::WrongIssuer => VerifyFailure::WrongIssuer,
        Failure::WrongAudience => VerifyFailure::WrongAudience,
        Failure::MissingClaim => VerifyFailure::MissingClaim,
        Failure::WrongType => VerifyFailure::WrongType,
        Failure::ClaimMismatch => VerifyFailure::ClaimMismatch,
        Failure::Revoked => VerifyFailure::Revoked,
        Failure::AlreadyUsed => VerifyFailure::AlreadyUsed,
    }
}

/// Published keys as the `Jwks` answer: the JWK Set document, the same keys typed, and how
/// long a relying party may cache them.
pub fn jwks_to_proto(keys: &[Jwk], max_age: Duration) -> proto::JwksResponse {
    proto::JwksResponse {
        json: jwks::document(keys),
        keys: keys.iter().map(jwk_to_proto).collect(),
        max_age: prost_types::Duration::try_from(max_age).ok(),
    }
}

/// A public key as the typed proto message.
pub fn jwk_to_proto(jwk: &Jwk) -> proto::Jwk {
    let mut out = proto::Jwk {
        kty: jwk.kty().to_owned(),
        kid: jwk.kid.clone(),
        alg: jwk.alg.name().to_owned(),
        r#use: "sig".to_owned(),
        ..Default::default()
    };
    match &jwk.material {
        JwkMaterial::Ec { crv, x, y } => {
            out.crv = (*crv).to_owned();
            out.x = x.clone();
            out.y = y.clone();
        }
        JwkMaterial::Okp { x } => {
            out.crv = "Ed25519".to_owned();
            out.x = x.clone();
        }
        JwkMaterial::Rsa { n, e } => {
            out.n = n.clone();
            out.e = e.clone();
        }
    }
    out
}

/// A key's place in its lifecycle as the proto enum; verify-only keys have no lifecycle and
/// are marked by [`profile_keys`] instead.
pub fn key_state_to_proto(state: rotation::KeyState) -> KeyState {
    match state {
        rotation::KeyState::Pending => KeyState::Pending,
        rotation::KeyState::Published => KeyState::Published,
        rotation::KeyState::Active => KeyState::Active,
        rotation::KeyState::Retired => KeyState::Retired,
        rotation::KeyState::Removed => KeyState::Removed,
    }
}

/// Every key of `profile` with its state at `now`.
pub fn profile_keys(profile: &Profile, now: u64) -> proto::ProfileKeys {
    // In key times 0 means "from the start" and u64::MAX "never": neither is a moment to send.
    let at = |t: u64| (t != 0 && t != u64::MAX).then(|| timestamp(t as f64));
    let mut keys: Vec<proto::KeyInfo> = profile
        .signers()
        .iter()
        .map(|signer| {
            let times = signer.times();
            proto::KeyInfo {
                key_id: signer.key().id().to_string(),
                algorithm: signer.key().algorithm().name().to_owned(),
                state: key_state_to_proto(profile.state_of(signer, now)).into(),
                source: if signer.is_managed() {
                    "managed"
                } else {
                    "file"
                }
                .to_owned(),
                published_at: at(times.publish_at),
                active_at: at(times.activate_at),
                retire_at: at(times.retire_at),
                remove_at: at(times.remove_at),
                public_jwk: jwk_json(signer.key()),
            }
        })
        .collect();
    keys.extend(profile.verify_only_keys().map(|key| proto::KeyInfo {
        key_id: key.id().to_string(),
        algorithm: key.algorithm().name().to_owned(),
        state: KeyState::VerifyOnly.into(),
        source: "file".to_owned(),
        public_jwk: jwk_json(key),
        ..Default::default()
    }));
    proto::ProfileKeys {
        profile: profile.name().to_owned(),
        managed: profile.signers().iter().any(|s| s.is_managed()),
        keys,
    }
}

/// The public half of `key` as a JWK JSON string; empty for keys that have no JWK form.
fn jwk_json(key: &Key) -> String {
    key.public_jwk()
        .map(|jwk| Value::Object(jwk.to_json()).to_string())
        .unwrap_or_default()
}
