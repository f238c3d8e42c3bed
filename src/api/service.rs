//! The gRPC service: proto → domain → proto, nothing else. No JOSE or signing code lives here;
//! it only owns the random source the core draws token ids and signatures from.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use crate::api::audit::Trail;
use crate::api::auth::{self, CallContext};
use crate::api::convert::{
    claims_from_proto, issued_to_proto, jwks_to_proto, login_url_to_proto, refusal_to_proto,
    ttl_from_proto, verified_to_proto,
};
use crate::api::error::{ApiError, UnknownProfile};
use crate::api::lifecycle::TokenLifecycle;
use crate::api::metrics::{Metrics, Outcome};
use crate::core::jwks;
use crate::core::policy::{self, Call, Rpc};
use crate::core::profile::{self, Profile};
use crate::core::random::Random;
use crate::core::token::{self, Failure, IssueRequest};
use crate::proto;
use crate::proto::token_authority_server::TokenAuthority;
use crate::state::config::Audit;
use crate::state::live::{Live, Snapshot};
use crate::state::store::Store;

/// A call under way; see [`TokenAuthorityService::open`].
struct OpenCall {
    started: Instant,
    snapshot: Arc<Snapshot>,
    label: String,
    trail: Trail,
}

/// Answers `tokenauthority.v1.TokenAuthority` from the live profiles; each call reads one
/// snapshot from start to end.
pub struct TokenAuthorityService {
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    random: Random,
    lifecycle: TokenLifecycle,
}

impl TokenAuthorityService {
    /// A service over the live profiles, reading time from their clock and counting its calls
    /// in `metrics`.
    pub fn new(live: Arc<Live>, metrics: Arc<Metrics>) -> TokenAuthorityService {
        TokenAuthorityService {
            live,
            metrics,
            random: Random::new(),
            lifecycle: TokenLifecycle::new(Arc::new(Store::Off)),
        }
    }

    /// The same service keeping revocations, single-use marks and refresh families in `store`.
    pub fn with_store(mut self, store: Arc<Store>) -> TokenAuthorityService {
        self.lifecycle = TokenLifecycle::new(store);
        self
    }

    /// Starts a call to `rpc` naming `profile`: the clock for its latency, the one snapshot
    /// it reads from start to end (taken out of its guard, since some calls hold it across a
    /// remote key fetch or the store's answer), its metrics label and its `Trail`.
    fn open(&self, rpc: Rpc, profile: &str) -> OpenCall {
        let started = Instant::now();
        let snapshot = arc_swap::Guard::into_inner(self.live.current());
        OpenCall {
            started,
            label: Metrics::profile_label(&snapshot, profile),
            trail: Trail::new(rpc, profile::requested(profile)),
            snapshot,
        }
    }

    /// Counts, logs and audits a finished call, and answers it.
    fn close<T>(
        &self,
        open: OpenCall,
        outcome: Outcome,
        result: Result<T, ApiError>,
    ) -> Result<Response<T>, Status> {
        self.metrics
            .observe_call(open.trail.rpc().name(), open.label, outcome, open.started);
        finish(open.trail, &open.snapshot.audit, open.started, result)
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
        snapshot
            .profiles
            .get(name)
            .ok_or_else(|| UnknownProfile::named(name).into())
    }

    fn issue_inner(
        &self,
        snapshot: &Snapshot,
        context: &CallContext,
        trail: &mut Trail,
        req: proto::IssueRequest,
    ) -> Result<proto::IssueResponse, ApiError> {
        let request = self.admit_issuing(
            snapshot,
            context,
            trail,
            Rpc::Issue,
            &req.profile,
            req.subject,
            req.claims,
            req.ttl,
        )?;
        let profile = self.profile(snapshot, &req.profile)?;
        let request = IssueRequest {
            audience: req.audience,
            ..request
        };
        let issued = token::issue(profile, request, self.now(), &self.random)?;
        record_issued(trail, &issued);
        Ok(issued_to_proto(issued))
    }

    /// Authenticates an Issue or LoginUrl call and lets its caller's policy decide it: the
    /// caller first, then its grant, subject pattern, claims and ttl cap (against the ttl the
    /// token would get), then its rate.
    #[allow(clippy::too_many_arguments)]
    fn admit_issuing(
        &self,
        snapshot: &Snapshot,
        context: &CallContext,
        trail: &mut Trail,
        rpc: Rpc,
        profile: &str,
        subject: String,
        claims: Option<prost_types::Struct>,
        ttl: Option<prost_types::Duration>,
    ) -> Result<IssueRequest, ApiError> {
        let who = auth::authenticate(snapshot, context, self.now())?;
        trail.who(&who);
        trail.subject(&subject);
        let claims = claims_from_proto(claims)?;
        let ttl = ttl_from_proto(ttl)?;
        let found = snapshot.profiles.get(profile::requested(profile));
        let asked = found.map_or(ttl, |p| Some(policy::asked_ttl(p, rpc, ttl)));
        trail.ttl(asked);
        let names: Vec<&str> = claims.keys().map(String::as_str).collect();
        let call = Call {
            rpc,
            profile,
            subject: &subject,
            claims: &names,
            ttl: asked,
        };
        auth::authorize(snapshot, &who, &call)?;
        Ok(IssueRequest {
            subject,
            claims,
            audience: Vec::new(),
            ttl,
        })
    }

    /// Authenticates a Verify or Jwks call and checks its caller's grant.
    fn admit(
        &self,
        snapshot: &Snapshot,
        context: &CallContext,
        trail: &mut Trail,
        rpc: Rpc,
        profile: &str,
    ) -> Result<(), ApiError> {
        let who = auth::authenticate(snapshot, context, self.now())?;
        trail.who(&who);
        auth::authorize(snapshot, &who, &Call::of(rpc, profile))
    }

    async fn verify_inner(
        &self,
        snapshot: &Snapshot,
        context: &CallContext,
        trail: &mut Trail,
        req: proto::VerifyRequest,
    ) -> Result<proto::VerifyResponse, ApiError> {
        self.admit(snapshot, context, trail, Rpc::Verify, &req.profile)?;
        let profile = self.profile(snapshot, &req.profile)?;
        let audience = Some(req.audience.as_str()).filter(|a| !a.is_empty());
        let remote = snapshot.remote.get(profile.name());
        let mut result = match remote {
            Some(set) => {
                let keys = set.for_verify().await;
                token::verify_with(profile, Some(&keys), &req.token, audience, self.now())
            }
            None => token::verify(profile, &req.token, audience, self.now()),
        };
        // An unknown kid may be a key the issuer has just rotated in: fetch again, at most once
        // per jwks_refetch_min however many such tokens arrive, and verify once more.
        if let (Err(refusal), Some(set)) = (&result, remote)
            && refusal.failure == Failure::UnknownKey
            && let Some(keys) = set.for_unknown_kid().await
        {
            result = token::verify_with(profile, Some(&keys), &req.token, audience, self.now());
        }
        // Revocable and single-use profiles then ask the store; a store that does not answer
        // fails the call (UNAVAILABLE), never a silent "valid".
        let result = match result {
            Ok(verified) => self.lifecycle.check(profile, verified).await?,
            Err(refusal) => Err(refusal),
        };
        // A refused token is an answer, not an error: both arms answer OK.
        Ok(match result {
            Ok(verified) => {
                trail.verified(
                    verified.token_id.as_deref(),
                    verified.key_id.as_str(),
                    verified.algorithm.name(),
                );
                verified_to_proto(verified)
            }
            Err(refusal) => {
                trail.refused(refusal.failure.as_str());
                refusal_to_proto(refusal)
            }
        })
    }

    fn issue_pair_inner(
        &self,
        snapshot: &Snapshot,
        context: &CallContext,
        trail: &mut Trail,
        req: proto::IssueRequest,
    ) -> Result<proto::IssuePairResponse, ApiError> {
        let request = self.admit_issuing(
            snapshot,
            context,
            trail,
            Rpc::IssuePair,
            &req.profile,
            req.subject,
            req.claims,
            req.ttl,
        )?;
        let profile = self.profile(snapshot, &req.profile)?;
        let request = IssueRequest {
            audience: req.audience,
            ..request
        };
        let pair =
            self.lifecycle
                .issue_pair(snapshot, profile, request, self.now(), &self.random)?;
        record_pair(trail, &pair);
        Ok(pair)
    }

    async fn refresh_inner(
        &self,
        snapshot: &Snapshot,
        context: &CallContext,
        trail: &mut Trail,
        req: proto::RefreshRequest,
    ) -> Result<proto::IssuePairResponse, ApiError> {
        self.admit(snapshot, context, trail, Rpc::Refresh, &req.profile)?;
        let profile = self.profile(snapshot, &req.profile)?;
        let pair = self
            .lifecycle
            .refresh(
                snapshot,
                profile,
                &req.refresh_token,
                self.now(),
                &self.random,
            )
            .await?;
        record_pair(trail, &pair);
        Ok(pair)
    }

    async fn revoke_inner(
        &self,
        snapshot: &Snapshot,
        context: &CallContext,
        trail: &mut Trail,
        req: proto::RevokeRequest,
    ) -> Result<proto::RevokeResponse, ApiError> {
        self.admit(snapshot, context, trail, Rpc::Revoke, &req.profile)?;
        let profile = self.profile(snapshot, &req.profile)?;
        let answer = self
            .lifecycle
            .revoke(snapshot, profile, req.target, self.now())
            .await?;
        trail.outcome("revoked");
        if !answer.token_id.is_empty() {
            trail.token(&answer.token_id);
        }
        Ok(answer)
    }

    fn jwks_inner(
        &self,
        snapshot: &Snapshot,
        context: &CallContext,
        trail: &mut Trail,
        req: proto::JwksRequest,
    ) -> Result<proto::JwksResponse, ApiError> {
        self.admit(snapshot, context, trail, Rpc::Jwks, &req.profile)?;
        let profile = self.profile(snapshot, &req.profile)?;
        let keys = jwks::for_profile(profile, self.live.clock().unix_seconds());
        trail.outcome("ok");
        Ok(jwks_to_proto(&keys, snapshot.jwks_cache))
    }

    fn login_url_inner(
        &self,
        snapshot: &Snapshot,
        context: &CallContext,
        trail: &mut Trail,
        req: proto::LoginUrlRequest,
    ) -> Result<proto::LoginUrlResponse, ApiError> {
        let request = self.admit_issuing(
            snapshot,
            context,
            trail,
            Rpc::LoginUrl,
            &req.profile,
            req.subject,
            req.claims,
            req.ttl,
        )?;
        let profile = self.profile(snapshot, &req.profile)?;
        let link = token::issue_link(profile, request, &req.next, self.now(), &self.random)?;
        record_issued(trail, &link.issued);
        Ok(login_url_to_proto(link.url, link.issued))
    }
}

#[tonic::async_trait]
impl TokenAuthority for TokenAuthorityService {
    async fn issue(
        &self,
        request: Request<proto::IssueRequest>,
    ) -> Result<Response<proto::IssueResponse>, Status> {
        let (context, request) = CallContext::split(request);
        let mut open = self.open(Rpc::Issue, &request.profile);
        let result = self.issue_inner(&open.snapshot, &context, &mut open.trail, request);
        self.close(open, Outcome::of(&result), result)
    }

    async fn verify(
        &self,
        request: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        let (context, request) = CallContext::split(request);
        let mut open = self.open(Rpc::Verify, &request.profile);
        let result = self
            .verify_inner(&open.snapshot, &context, &mut open.trail, request)
            .await;
        self.close(open, Outcome::of_verify(&result), result)
    }

    async fn jwks(
        &self,
        request: Request<proto::JwksRequest>,
    ) -> Result<Response<proto::JwksResponse>, Status> {
        let (context, request) = CallContext::split(request);
        let mut open = self.open(Rpc::Jwks, &request.profile);
        let result = self.jwks_inner(&open.snapshot, &context, &mut open.trail, request);
        self.close(open, Outcome::of(&result), result)
    }

    async fn login_url(
        &self,
        request: Request<proto::LoginUrlRequest>,
    ) -> Result<Response<proto::LoginUrlResponse>, Status> {
        let (context, request) = CallContext::split(request);
        let mut open = self.open(Rpc::LoginUrl, &request.profile);
        let result = self.login_url_inner(&open.snapshot, &context, &mut open.trail, request);
        self.close(open, Outcome::of(&result), result)
    }

    async fn issue_pair(
        &self,
        request: Request<proto::IssueRequest>,
    ) -> Result<Response<proto::IssuePairResponse>, Status> {
        let (context, request) = CallContext::split(request);
        let mut open = self.open(Rpc::IssuePair, &request.profile);
        let result = self.issue_pair_inner(&open.snapshot, &context, &mut open.trail, request);
        self.close(open, Outcome::of(&result), result)
    }

    async fn refresh(
        &self,
        request: Request<proto::RefreshRequest>,
    ) -> Result<Response<proto::IssuePairResponse>, Status> {
        let (context, request) = CallContext::split(request);
        let mut open = self.open(Rpc::Refresh, &request.profile);
        let result = self
            .refresh_inner(&open.snapshot, &context, &mut open.trail, request)
            .await;
        self.close(open, Outcome::of(&result), result)
    }

    async fn revoke(
        &self,
        request: Request<proto::RevokeRequest>,
    ) -> Result<Response<proto::RevokeResponse>, Status> {
        let (context, request) = CallContext::split(request);
        let mut open = self.open(Rpc::Revoke, &request.profile);
        let result = self
            .revoke_inner(&open.snapshot, &context, &mut open.trail, request)
            .await;
        self.close(open, Outcome::of(&result), result)
    }
}

/// Writes the call's one log line and its audit event, and turns the result into a gRPC answer.
pub(crate) fn finish<T>(
    trail: Trail,
    audit: &Audit,
    started: Instant,
    result: Result<T, ApiError>,
) -> Result<Response<T>, Status> {
    let latency_us = started.elapsed().as_micros() as u64;
    let (rpc, profile, kid, alg, jti, outcome, reason) = trail.line();
    let (outcome, reason) = match &result {
        Ok(_) => (outcome, reason),
        Err(e) => (Some("error"), Some(e.kind().as_str())),
    };
    tracing::info!(
        rpc,
        profile,
        kid,
        alg,
        jti,
        outcome,
        reason,
        latency_us,
        "call finished"
    );
    trail.finish(audit, &result);
    result.map(Response::new).map_err(Into::into)
}

fn record_issued(trail: &mut Trail, issued: &token::Issued) {
    trail.issued(
        &issued.token_id,
        issued.key_id.as_str(),
        issued.algorithm.name(),
    );
}

/// The access token of a pair on the call's log line and audit record (the refresh token's
/// id is in the answer the caller keeps).
fn record_pair(trail: &mut Trail, pair: &proto::IssuePairResponse) {
    if let Some(access) = &pair.access {
        let alg = access
            .algorithm
            .parse::<crate::core::keys::Algorithm>()
            .map_or("", |a| a.name());
        trail.issued(&access.token_id, &access.key_id, alg);
    }
}
