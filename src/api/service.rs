//! The gRPC service: proto → domain → proto, nothing else. No JOSE or signing code lives here;
//! it only owns the random source the core draws token ids from.

use std::sync::Arc;
use std::time::Instant;

use ring::rand::SystemRandom;
use tonic::{Request, Response, Status};
use tracing::{Span, field::Empty};

use crate::api::convert::{
    claims_from_proto, issued_to_proto, jwks_to_proto, login_url_to_proto, refusal_to_proto,
    ttl_from_proto, verified_to_proto,
};
use crate::api::error::{ApiError, UnknownProfile, shown};
use crate::api::lifecycle::TokenLifecycle;
use crate::api::metrics::{Metrics, Outcome};
use crate::core::jwks;
use crate::core::profile::{self, Profile};
use crate::core::token::{self, IssueRequest, Refusal, Verified};
use crate::proto;
use crate::proto::token_authority_server::TokenAuthority;
use crate::state::live::{Live, Snapshot};
use crate::state::store::Store;

/// Answers `tokenauthority.v1.TokenAuthority` from the live profiles; each call reads one
/// snapshot from start to end.
pub struct TokenAuthorityService {
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    rng: SystemRandom,
    lifecycle: TokenLifecycle,
}

impl TokenAuthorityService {
    /// A service over the live profiles, reading time from their clock and counting its calls
    /// in `metrics`.
    pub fn new(live: Arc<Live>, metrics: Arc<Metrics>) -> TokenAuthorityService {
        TokenAuthorityService {
            live,
            metrics,
            rng: SystemRandom::new(),
            lifecycle: TokenLifecycle::new(Arc::new(Store::Off)),
        }
    }

    /// The same service keeping revocations, single-use marks and refresh families in `store`.
    pub fn with_store(mut self, store: Arc<Store>) -> TokenAuthorityService {
        self.lifecycle = TokenLifecycle::new(store);
        self
    }

    fn now(&self) -> std::time::SystemTime {
        self.live.clock().now()
    }

    fn profile<'s>(
        &self,
        snapshot: &'s Snapshot,
        name: &str,
    ) -> Result<&'s Arc<Profile>, ApiError> {
        let name = profile::requested(name);
        Span::current().record("profile", shown(name));
        snapshot
            .profiles
            .get(name)
            .ok_or_else(|| UnknownProfile::named(name).into())
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
        Ok(issued_to_proto(issued))
    }

    async fn verify_inner(
        &self,
        req: proto::VerifyRequest,
    ) -> Result<proto::VerifyResponse, ApiError> {
        let snapshot = arc_swap::Guard::into_inner(self.live.current());
        let profile = self.profile(&snapshot, &req.profile)?;
        let audience = Some(req.audience.as_str()).filter(|a| !a.is_empty());
        let verdict = match token::verify(profile, &req.token, audience, self.now()) {
            Ok(verified) => self.lifecycle.check(profile, verified).await?,
            Err(refusal) => Err(refusal),
        };
        // A refused token is an answer, not an error: both arms answer OK.
        Ok(match verdict {
            Ok(verified) => {
                record_verified(&verified);
                verified_to_proto(verified)
            }
            Err(refusal) => {
                record_refused(&refusal);
                refusal_to_proto(refusal)
            }
        })
    }

    fn issue_pair_inner(
        &self,
        req: proto::IssueRequest,
    ) -> Result<proto::IssuePairResponse, ApiError> {
        let snapshot = self.live.current();
        let profile = self.profile(&snapshot, &req.profile)?;
        let request = IssueRequest {
            subject: req.subject,
            claims: claims_from_proto(req.claims)?,
            audience: req.audience,
            ttl: ttl_from_proto(req.ttl)?,
        };
        let pair = self
            .lifecycle
            .issue_pair(&snapshot, profile, request, self.now(), &self.rng)?;
        Span::current().record("outcome", "issued");
        Ok(pair)
    }

    async fn refresh_inner(
        &self,
        req: proto::RefreshRequest,
    ) -> Result<proto::IssuePairResponse, ApiError> {
        let snapshot = arc_swap::Guard::into_inner(self.live.current());
        let profile = self.profile(&snapshot, &req.profile)?;
        let pair = self
            .lifecycle
            .refresh(
                &snapshot,
                profile,
                &req.refresh_token,
                self.now(),
                &self.rng,
            )
            .await?;
        Span::current().record("outcome", "issued");
        Ok(pair)
    }

    async fn revoke_inner(
        &self,
        req: proto::RevokeRequest,
    ) -> Result<proto::RevokeResponse, ApiError> {
        let snapshot = arc_swap::Guard::into_inner(self.live.current());
        let profile = self.profile(&snapshot, &req.profile)?;
        let answer = self
            .lifecycle
            .revoke(&snapshot, profile, req.target, self.now())
            .await?;
        Span::current().record("outcome", "revoked");
        Ok(answer)
    }

    fn jwks_inner(&self, req: proto::JwksRequest) -> Result<proto::JwksResponse, ApiError> {
        let snapshot = self.live.current();
        let profile = self.profile(&snapshot, &req.profile)?;
        let keys = jwks::for_profile(profile, self.live.clock().unix_seconds());
        Span::current().record("outcome", "ok");
        Ok(jwks_to_proto(&keys, snapshot.jwks_cache))
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
        Ok(login_url_to_proto(link.url, link.issued))
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
        let request = request.into_inner();
        let profile = Metrics::profile_label(&self.live, &request.profile);
        let result = self.issue_inner(request);
        let outcome = Outcome::of(&result);
        self.metrics
            .observe_call("Issue", profile, outcome, started);
        finish(started, result)
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(rpc = "Verify", profile = Empty, kid = Empty, alg = Empty, jti = Empty, outcome = Empty, reason = Empty))]
    async fn verify(
        &self,
        request: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let profile = Metrics::profile_label(&self.live, &request.profile);
        let result = self.verify_inner(request).await;
        let outcome = Outcome::of_verify(&result);
        self.metrics
            .observe_call("Verify", profile, outcome, started);
        finish(started, result)
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(rpc = "Jwks", profile = Empty, outcome = Empty, reason = Empty))]
    async fn jwks(
        &self,
        request: Request<proto::JwksRequest>,
    ) -> Result<Response<proto::JwksResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let profile = Metrics::profile_label(&self.live, &request.profile);
        let result = self.jwks_inner(request);
        let outcome = Outcome::of(&result);
        self.metrics.observe_call("Jwks", profile, outcome, started);
        finish(started, result)
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(rpc = "LoginUrl", profile = Empty, kid = Empty, alg = Empty, jti = Empty, outcome = Empty, reason = Empty))]
    async fn login_url(
        &self,
        request: Request<proto::LoginUrlRequest>,
    ) -> Result<Response<proto::LoginUrlResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let profile = Metrics::profile_label(&self.live, &request.profile);
        let result = self.login_url_inner(request);
        let outcome = Outcome::of(&result);
        self.metrics
            .observe_call("LoginUrl", profile, outcome, started);
        finish(started, result)
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(rpc = "IssuePair", profile = Empty, outcome = Empty, reason = Empty))]
    async fn issue_pair(
        &self,
        request: Request<proto::IssueRequest>,
    ) -> Result<Response<proto::IssuePairResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let profile = Metrics::profile_label(&self.live, &request.profile);
        let result = self.issue_pair_inner(request);
        let outcome = Outcome::of(&result);
        self.metrics
            .observe_call("IssuePair", profile, outcome, started);
        finish(started, result)
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(rpc = "Refresh", profile = Empty, outcome = Empty, reason = Empty))]
    async fn refresh(
        &self,
        request: Request<proto::RefreshRequest>,
    ) -> Result<Response<proto::IssuePairResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let profile = Metrics::profile_label(&self.live, &request.profile);
        let result = self.refresh_inner(request).await;
        let outcome = Outcome::of(&result);
        self.metrics
            .observe_call("Refresh", profile, outcome, started);
        finish(started, result)
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(rpc = "Revoke", profile = Empty, outcome = Empty, reason = Empty))]
    async fn revoke(
        &self,
        request: Request<proto::RevokeRequest>,
    ) -> Result<Response<proto::RevokeResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let profile = Metrics::profile_label(&self.live, &request.profile);
        let result = self.revoke_inner(request).await;
        let outcome = Outcome::of(&result);
        self.metrics
            .observe_call("Revoke", profile, outcome, started);
        finish(started, result)
    }
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
            Span::current().record("outcome", "error");
            Span::current().record("reason", e.kind().as_str());
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

fn record_verified(verified: &Verified) {
    let span = Span::current();
    span.record("kid", tracing::field::debug(&verified.key_id));
    span.record("alg", verified.algorithm.name());
    span.record("outcome", "valid");
    if let Some(jti) = &verified.token_id {
        span.record("jti", jti.as_str());
    }
}

fn record_refused(refusal: &Refusal) {
    let span = Span::current();
    span.record("outcome", "refused");
    span.record("reason", refusal.failure.as_str());
}
