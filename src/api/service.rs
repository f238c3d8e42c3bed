//! The gRPC service: proto → domain → proto, nothing else. No JOSE or signing code lives here;
//! it only owns the random source the core draws token ids from.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prost_types::value::Kind;
use ring::rand::SystemRandom;
use serde_json::{Map, Number, Value};
use tonic::{Request, Response, Status};
use tracing::{Span, field::Empty};

use crate::api::error::{ApiError, shown};
use crate::core::jwks;
use crate::core::keys::{Jwk, JwkMaterial};
use crate::core::profile::Profile;
use crate::core::token::{self, Failure, IssueRequest};
use crate::proto::token_authority_server::TokenAuthority;
use crate::proto::{self, VerifyFailure};
use crate::state::live::{Live, Snapshot};

/// Answers `tokenauthority.v1.TokenAuthority` from the live profiles; each call reads one
/// snapshot from start to end.
pub struct TokenAuthorityService {
    live: Arc<Live>,
    rng: SystemRandom,
}

impl TokenAuthorityService {
    /// A service over the live profiles, reading time from their clock.
    pub fn new(live: Arc<Live>) -> TokenAuthorityService {
        TokenAuthorityService {
            live,
            rng: SystemRandom::new(),
        }
    }

    fn now(&self) -> std::time::SystemTime {
        self.live.clock().now()
    }

    fn profile<'s>(
        &self,
        snapshot: &'s Snapshot,
        name: &str,
    ) -> Result<&'s Arc<Profile>, ApiError> {
        let shown = shown(name);
        let span = Span::current();
        span.record("profile", if name.is_empty() { "default" } else { shown });
        snapshot
            .profiles
            .get(name)
            .ok_or_else(|| ApiError::UnknownProfile(shown.to_owned()))
    }

    fn issue_inner(&self, req: proto::IssueRequest) -> Result<proto::IssueResponse, ApiError> {
        let snapshot = self.live.current();
        let profile = self.profile(&snapshot, &req.profile)?;
        let request = IssueRequest {
            subject: req.subject,
            claims: claims_from_proto(req.claims)?,
            audience: req.audience,
            ttl: ttl_from_proto(req.ttl)?,
        };
        let issued = token::issue(profile, request, self.now(), &self.rng)?;
        record_issued(&issued);
        Ok(proto::IssueResponse {
            token: issued.token,
            token_id: issued.token_id,
            issued_at: Some(timestamp(issued.issued_at as f64)),
            expires_at: Some(timestamp(issued.expires_at as f64)),
            key_id: issued.key_id.to_string(),
            algorithm: issued.algorithm.name().to_owned(),
        })
    }

    fn verify_inner(&self, req: proto::VerifyRequest) -> Result<proto::VerifyResponse, ApiError> {
        let snapshot = self.live.current();
        let profile = self.profile(&snapshot, &req.profile)?;
        let audience = Some(req.audience.as_str()).filter(|a| !a.is_empty());
        let span = Span::current();
        Ok(
            match token::verify(profile, &req.token, audience, self.now()) {
                Ok(v) => {
                    span.record("kid", tracing::field::debug(&v.key_id));
                    span.record("alg", v.algorithm.name());
                    span.record("outcome", "valid");
                    if let Some(jti) = &v.token_id {
                        span.record("jti", jti.as_str());
                    }
                    proto::VerifyResponse {
                        valid: true,
                        failure: VerifyFailure::Unspecified.into(),
                        detail: String::new(),
                        claims: Some(map_to_struct(v.claims)),
                        header: Some(map_to_struct(v.header)),
                        key_id: v.key_id.to_string(),
                        algorithm: v.algorithm.name().to_owned(),
                        expires_at: Some(timestamp(v.expires_at)),
                        subject: v.subject,
                        token_id: v.token_id.unwrap_or_default(),
                    }
                }
                Err(refusal) => {
                    span.record("outcome", "refused");
                    span.record("reason", refusal.failure.as_str());
                    proto::VerifyResponse {
                        valid: false,
                        failure: failure_to_proto(refusal.failure).into(),
                        detail: refusal.detail,
                        ..Default::default()
                    }
                }
            },
        )
    }

    fn jwks_inner(&self, req: proto::JwksRequest) -> Result<proto::JwksResponse, ApiError> {
        let snapshot = self.live.current();
        let profile = self.profile(&snapshot, &req.profile)?;
        let keys = jwks::for_profile(profile, self.live.clock().unix_seconds());
        Span::current().record("outcome", "ok");
        Ok(proto::JwksResponse {
            json: jwks::document(&keys),
            keys: keys.iter().map(jwk_to_proto).collect(),
            max_age: prost_types::Duration::try_from(snapshot.jwks_cache).ok(),
        })
    }

    fn login_url_inner(
        &self,
        req: proto::LoginUrlRequest,
    ) -> Result<proto::LoginUrlResponse, ApiError> {
        let snapshot = self.live.current();
        let profile = self.profile(&snapshot, &req.profile)?;
        let request = IssueRequest {
            subject: req.subject,
            claims: claims_from_proto(req.claims)?,
            audience: Vec::new(),
            ttl: ttl_from_proto(req.ttl)?,
        };
        let link = token::issue_link(profile, request, &req.next, self.now(), &self.rng)?;
        record_issued(&link.issued);
        Ok(proto::LoginUrlResponse {
            url: link.url,
            token: link.issued.token,
            token_id: link.issued.token_id,
            expires_at: Some(timestamp(link.issued.expires_at as f64)),
        })
    }
}

#[tonic::async_trait]
impl TokenAuthority for TokenAuthorityService {
    #[tracing::instrument(name = "rpc", skip_all, fields(rpc = "Issue", profile = Empty, kid = Empty, alg = Empty, jti = Empty, outcome = Empty, reason = Empty))]
    async fn issue(
        &self,
        request: Request<proto::IssueRequest>,
    ) -> Result<Response<proto::IssueResponse>, Status> {
        let started = Instant::now();
        finish(started, self.issue_inner(request.into_inner()))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(rpc = "Verify", profile = Empty, kid = Empty, alg = Empty, jti = Empty, outcome = Empty, reason = Empty))]
    async fn verify(
        &self,
        request: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        let started = Instant::now();
        finish(started, self.verify_inner(request.into_inner()))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(rpc = "Jwks", profile = Empty, outcome = Empty, reason = Empty))]
    async fn jwks(
        &self,
        request: Request<proto::JwksRequest>,
    ) -> Result<Response<proto::JwksResponse>, Status> {
        let started = Instant::now();
        finish(started, self.jwks_inner(request.into_inner()))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(rpc = "LoginUrl", profile = Empty, kid = Empty, alg = Empty, jti = Empty, outcome = Empty, reason = Empty))]
    async fn login_url(
        &self,
        request: Request<proto::LoginUrlRequest>,
    ) -> Result<Response<proto::LoginUrlResponse>, Status> {
        let started = Instant::now();
        finish(started, self.login_url_inner(request.into_inner()))
    }
}

/// A public key as the typed proto message.
pub(crate) fn jwk_to_proto(jwk: &Jwk) -> proto::Jwk {
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

/// Writes the one log line of a call and turns the result into a gRPC answer.
pub(crate) fn finish<T>(
    started: Instant,
    result: Result<T, ApiError>,
) -> Result<Response<T>, Status> {
    let latency_us = started.elapsed().as_micros() as u64;
    match result {
        Ok(answer) => {
            tracing::info!(latency_us, "call finished");
            Ok(Response::new(answer))
        }
        Err(e) => {
            let kind = match &e {
                ApiError::UnknownProfile(_) => "not_found",
                ApiError::InvalidArgument(_) => "invalid_argument",
                ApiError::FailedPrecondition(_) => "failed_precondition",
                ApiError::Internal(_) => "internal",
            };
            Span::current().record("outcome", "error");
            Span::current().record("reason", kind);
            tracing::info!(latency_us, "call finished");
            Err(e.into())
        }
    }
}

fn record_issued(issued: &token::Issued) {
    let span = Span::current();
    span.record("kid", tracing::field::debug(&issued.key_id));
    span.record("alg", issued.algorithm.name());
    span.record("jti", issued.token_id.as_str());
    span.record("outcome", "issued");
}

fn failure_to_proto(failure: Failure) -> VerifyFailure {
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
    }
}

fn ttl_from_proto(ttl: Option<prost_types::Duration>) -> Result<Option<Duration>, ApiError> {
    ttl.map(|d| {
        Duration::try_from(d)
            .map_err(|_| ApiError::InvalidArgument("ttl: must be a positive duration".into()))
    })
    .transpose()
}

pub(crate) fn timestamp(seconds: f64) -> prost_types::Timestamp {
    let whole = seconds.floor();
    prost_types::Timestamp {
        seconds: whole as i64,
        nanos: ((seconds - whole) * 1e9) as i32,
    }
}

/// Turns request claims into JSON; integral numbers become JSON integers, so `{"n": 42}` stays 42.
fn claims_from_proto(claims: Option<prost_types::Struct>) -> Result<Map<String, Value>, ApiError> {
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

fn value_to_json(value: prost_types::Value, path: &str) -> Result<Value, ApiError> {
    Ok(match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::NumberValue(n)) => {
            if !n.is_finite() {
                return Err(ApiError::InvalidArgument(format!(
                    "claims.{path}: must be a finite number"
                )));
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
                .collect::<Result<_, ApiError>>()?,
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

fn map_to_struct(map: Map<String, Value>) -> prost_types::Struct {
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
