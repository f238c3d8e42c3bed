//! The audit trail: one event on the tracing target `audit` for every Issue, LoginUrl,
//! IssuePair, Refresh, Revoke, RotateKey and Reload, and for every call refused as unauthenticated, denied or over its
//! rate, whichever RPC it was. `telemetry` writes these events as JSON lines whatever the log
//! format, so they can be routed apart from the service log.
//!
//! An event holds the caller's name and identity, the RPC, the profile, the outcome (or the
//! rule broken), and for issued tokens their `jti`, `kid` and ttl. The subject is an HMAC
//! unless `[audit] subjects = "plain"`; a token, a secret or a claim value never appears.

use crate::api::auth::Who;
use crate::api::error::{ApiError, shown};
use crate::core::policy::Rpc;
use crate::state::config::Audit;

/// The tracing target of audit events.
pub const TARGET: &str = "audit";

/// What one call's log line and audit event will say, filled in as the call goes. The log
/// line is written from it by `service::finish`, one event per call with every field (no span:
/// recording into a span costs more than the event itself, measured with callgrind).
#[derive(Debug)]
pub struct Trail {
    rpc: Rpc,
    profile: String,
    alg: Option<&'static str>,
    outcome: Option<&'static str>,
    reason: Option<&'static str>,
    caller: Option<String>,
    identity: Option<String>,
    subject: Option<String>,
    ttl: Option<u64>,
    jti: Option<String>,
    kid: Option<String>,
}

impl Trail {
    /// The trail of a call to `rpc` naming `profile` (as requested; cut like all caller text).
    pub fn new(rpc: Rpc, profile: &str) -> Trail {
        Trail {
            rpc,
            profile: shown(profile).to_owned(),
            alg: None,
            outcome: None,
            reason: None,
            caller: None,
            identity: None,
            subject: None,
            ttl: None,
            jti: None,
            kid: None,
        }
    }

    /// The RPC this trail records.
    pub fn rpc(&self) -> Rpc {
        self.rpc
    }

    /// Who made the call, once authenticated.
    pub fn who(&mut self, who: &Who<'_>) {
        self.caller = Some(who.name().to_owned());
        let identity = who.identity();
        self.identity = (!identity.is_empty()).then_some(identity);
    }

    /// The subject asked for (Issue, LoginUrl).
    pub fn subject(&mut self, subject: &str) {
        self.subject = Some(subject.to_owned());
    }

    /// The lifetime the token gets, in seconds.
    pub fn ttl(&mut self, ttl: Option<std::time::Duration>) {
        self.ttl = ttl.map(|t| t.as_secs());
    }

    /// The token that was issued.
    pub fn issued(&mut self, jti: &str, kid: &str, alg: &'static str) {
        self.jti = Some(jti.to_owned());
        self.kid = Some(kid.to_owned());
        self.alg = Some(alg);
        self.outcome = Some("issued");
    }

    /// The token that verified (its `jti`, if it has one).
    pub fn verified(&mut self, jti: Option<&str>, kid: &str, alg: &'static str) {
        self.jti = jti.map(str::to_owned);
        self.kid = Some(kid.to_owned());
        self.alg = Some(alg);
        self.outcome = Some("valid");
    }

    /// The token was refused, for `reason` (a `VerifyFailure` name).
    pub fn refused(&mut self, reason: &'static str) {
        self.outcome = Some("refused");
        self.reason = Some(reason);
    }

    /// How a call that answered OK went, when no other method says it.
    pub fn outcome(&mut self, outcome: &'static str) {
        self.outcome = Some(outcome);
    }

    /// The fields of the call's log line: rpc, profile, kid, alg, jti, outcome, reason.
    #[allow(clippy::type_complexity)]
    pub fn line(
        &self,
    ) -> (
        &'static str,
        Option<&str>,
        Option<&str>,
        Option<&'static str>,
        Option<&str>,
        Option<&'static str>,
        Option<&'static str>,
    ) {
        (
            self.rpc.name(),
            (!self.profile.is_empty()).then_some(self.profile.as_str()),
            self.kid.as_deref(),
            self.alg,
            self.jti.as_deref(),
            self.outcome,
            self.reason,
        )
    }

    /// The token a call acted on by its id (Revoke).
    pub fn token(&mut self, jti: &str) {
        self.jti = Some(jti.to_owned());
    }

    /// The key an operator rotated to.
    pub fn key(&mut self, kid: &str) {
        self.kid = Some(kid.to_owned());
    }

    /// Writes the event for a call that ended in `result`, if it is one the trail records.
    pub fn finish<T>(self, audit: &Audit, result: &Result<T, ApiError>) {
        let always = matches!(
            self.rpc,
            Rpc::Issue
                | Rpc::LoginUrl
                | Rpc::IssuePair
                | Rpc::Refresh
                | Rpc::Revoke
                | Rpc::RotateKey
                | Rpc::Reload
        );
        let (outcome, rule, reason): (&str, Option<&str>, Option<&str>) = match result {
            Err(ApiError::Unauthenticated(e)) => ("unauthenticated", None, Some(e.reason())),
            Err(ApiError::Forbidden(f)) => ("denied", Some(f.denial.rule()), None),
            Err(ApiError::RateLimited(_)) => ("denied", Some("rate"), None),
            Err(e) if always => ("error", None, Some(e.kind().as_str())),
            Ok(_) if always => (
                match self.rpc {
                    Rpc::RotateKey => "rotated",
                    Rpc::Reload => "reloaded",
                    Rpc::Revoke => "revoked",
                    _ => "issued",
                },
                None,
                None,
            ),
            _ => return,
        };
        // With audit events filtered out (`audit=off`), the subject's HMAC is not worth making.
        if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
            return;
        }
        let caller = self.caller.as_deref().unwrap_or("(unauthenticated)");
        let subject = self.subject.as_deref().map(|s| audit.subject(s));
        let (hmac, plain) = match &subject {
            Some(("subject_hmac", value)) => (Some(value.as_str()), None),
            Some((_, value)) => (None, Some(value.as_str())),
            None => (None, None),
        };
        tracing::info!(
            target: TARGET,
            caller,
            identity = self.identity.as_deref(),
            rpc = %self.rpc,
            profile = (!self.profile.is_empty()).then_some(self.profile.as_str()),
            outcome,
            rule,
            reason,
            subject_hmac = hmac,
            subject = plain,
            jti = self.jti.as_deref(),
            kid = self.kid.as_deref(),
            ttl_s = self.ttl,
            "audit"
        );
    }
}
