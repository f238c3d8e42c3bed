//! Caller authentication and policy at the edge: each call proves one identity (a client
//! certificate the transport checked, an `authorization: Bearer` token that
//! `[server] caller_profile` verifies, or an `x-api-key`), which becomes a configured caller;
//! that caller's entry then decides the call (`core::policy`), and its rate is counted.
//!
//! Authentication is decided from the credentials and the callers alone, before any profile a
//! request names is looked up, so an unauthenticated caller learns nothing about profiles.
//! No answer or log repeats a credential.

use std::time::SystemTime;

use tonic::Request;
use tonic::metadata::MetadataMap;

use crate::api::peer::{ClientCertificate, PeerInfo};
use crate::core::policy::{Call, Caller, Credential, Rpc};
use crate::core::token;
use crate::state::live::Snapshot;

/// The metadata key of an API key.
pub const API_KEY: &str = "x-api-key";

/// What authentication reads from a call: its metadata and its connection's peer.
#[derive(Debug)]
pub struct CallContext {
    metadata: MetadataMap,
    peer: PeerInfo,
}

impl CallContext {
    /// Splits a request into what authentication reads and the message.
    pub fn split<T>(request: Request<T>) -> (CallContext, T) {
        let peer = PeerInfo::of(&request);
        let (metadata, _, message) = request.into_parts();
        (CallContext { metadata, peer }, message)
    }
}

/// Who made a call.
#[derive(Clone, Copy, Debug)]
pub enum Who<'s> {
    /// No `[[callers]]` are configured: every call is let through unauthenticated.
    Anonymous,
    /// A configured caller, with its index in the policy.
    Caller { index: usize, caller: &'s Caller },
}

impl Who<'_> {
    /// The caller's name for logs and audit records; `(anonymous)` without callers.
    pub fn name(&self) -> &str {
        match self {
            Who::Anonymous => "(anonymous)",
            Who::Caller { caller, .. } => caller.name(),
        }
    }

    /// The identity the caller proved, as audit records show it (an API key only as the
    /// first bytes of its configured digest).
    pub fn identity(&self) -> String {
        match self {
            Who::Anonymous => String::new(),
            Who::Caller { caller, .. } => caller.identity().to_string(),
        }
    }
}

/// Why a call proved no caller. Every message is safe to send: none holds a credential.
#[derive(Debug, thiserror::Error)]
pub enum Unauthenticated {
    #[error(
        "no credentials: present a client certificate, an `authorization: Bearer` token or an `x-api-key`"
    )]
    NoCredentials,
    #[error("more than one credential ({0}); present exactly one")]
    Several(String),
    /// The transport's reason, which names the client certificate itself.
    #[error("{0}")]
    Certificate(String),
    #[error("the client certificate names no configured caller (its identity is {0:?})")]
    UnknownCertificate(String),
    #[error("bearer tokens are not accepted here: [server] caller_profile is not set")]
    NoCallerProfile,
    #[error("the authorization metadata must be `Bearer` followed by a token")]
    NotBearer,
    #[error("bearer token refused: {0}")]
    Token(&'static str),
    #[error("the bearer token is valid, but its subject is no configured caller's token_subject")]
    UnknownSubject,
    #[error("unknown API key")]
    UnknownApiKey,
    #[error("the {0} metadata is not valid text")]
    BadMetadata(&'static str),
}

impl Unauthenticated {
    /// A stable name of the reason, for audit records.
    pub fn reason(&self) -> &'static str {
        match self {
            Unauthenticated::NoCredentials => "no_credentials",
            Unauthenticated::Several(_) => "several_credentials",
            Unauthenticated::Certificate(_) => "certificate_refused",
            Unauthenticated::UnknownCertificate(_) => "unknown_certificate",
            Unauthenticated::NoCallerProfile => "bearer_not_accepted",
            Unauthenticated::NotBearer => "not_bearer",
            Unauthenticated::Token(_) => "token_refused",
            Unauthenticated::UnknownSubject => "unknown_token_subject",
            Unauthenticated::UnknownApiKey => "unknown_api_key",
            Unauthenticated::BadMetadata(_) => "bad_metadata",
        }
    }
}

/// A caller over its `rate`.
#[derive(Debug, thiserror::Error)]
#[error("caller {caller:?} is over its rate of {rate} for Issue and LoginUrl; retry later")]
pub struct RateLimited {
    pub caller: String,
    pub rate: String,
}

/// The caller `context` proves, decided from the configured callers alone. Without
/// `[[callers]]` every call is [`Who::Anonymous`], whatever it presents: the listener's
/// address (loopback, or `allow_unauthenticated`) is then what decides who may call.
pub fn authenticate<'s>(
    snapshot: &'s Snapshot,
    context: &CallContext,
    now: SystemTime,
) -> Result<Who<'s>, Unauthenticated> {
    if snapshot.callers.is_empty() {
        return Ok(Who::Anonymous);
    }
    let certificate = !matches!(context.peer.client_certificate, ClientCertificate::Absent);
    let bearer = context.metadata.get_all("authorization").iter().count();
    let api_key = context.metadata.get_all(API_KEY).iter().count();
    let mut presented = Vec::new();
    if certificate {
        presented.push("client certificate");
    }
    if bearer > 0 {
        presented.push("authorization");
    }
    if api_key > 0 {
        presented.push(API_KEY);
    }
    if presented.len() > 1 || bearer > 1 || api_key > 1 {
        return Err(Unauthenticated::Several(presented.join(", ")));
    }
    let policy = snapshot.callers.policy();
    let (index, caller) = if certificate {
        match &context.peer.client_certificate {
            ClientCertificate::Verified { uri_sans, dns_sans } => policy
                .identify(Credential::Certificate { uri_sans, dns_sans })
                .ok_or_else(|| {
                    let shown = uri_sans.first().or(dns_sans.first());
                    Unauthenticated::UnknownCertificate(shown.cloned().unwrap_or_default())
                })?,
            ClientCertificate::Refused { reason } => {
                return Err(Unauthenticated::Certificate(reason.clone()));
            }
            ClientCertificate::Absent => return Err(Unauthenticated::NoCredentials),
        }
    } else if bearer == 1 {
        let subject = bearer_subject(snapshot, &context.metadata, now)?;
        policy
            .identify(Credential::TokenSubject(&subject))
            .ok_or(Unauthenticated::UnknownSubject)?
    } else if api_key == 1 {
        let key = context
            .metadata
            .get(API_KEY)
            .and_then(|v| v.to_str().ok())
            .ok_or(Unauthenticated::BadMetadata(API_KEY))?;
        policy
            .identify(Credential::ApiKey(key.as_bytes()))
            .ok_or(Unauthenticated::UnknownApiKey)?
    } else {
        return Err(Unauthenticated::NoCredentials);
    };
    Ok(Who::Caller { index, caller })
}

/// The subject of a bearer token that `caller_profile` verifies now.
fn bearer_subject(
    snapshot: &Snapshot,
    metadata: &MetadataMap,
    now: SystemTime,
) -> Result<String, Unauthenticated> {
    let value = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or(Unauthenticated::BadMetadata("authorization"))?;
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err(Unauthenticated::NotBearer),
    };
    let profile = snapshot
        .callers
        .caller_profile()
        .and_then(|name| snapshot.profiles.get(name))
        .ok_or(Unauthenticated::NoCallerProfile)?;
    token::verify(profile, token, None, now)
        .map(|verified| verified.subject)
        .map_err(|refusal| Unauthenticated::Token(refusal.failure.as_str()))
}

/// Whether `who` may make `call`: its policy, then (for every RPC that mints tokens) its rate.
pub fn authorize(
    snapshot: &Snapshot,
    who: &Who<'_>,
    call: &Call<'_>,
) -> Result<(), crate::api::error::ApiError> {
    let Who::Caller { index, caller } = who else {
        return Ok(());
    };
    caller.decide(call)?;
    if (call.rpc.issues() || call.rpc == Rpc::Refresh)
        && let Some(rate) = snapshot.callers.rate(*index)
        && !rate.take()
    {
        return Err(RateLimited {
            caller: caller.name().to_owned(),
            rate: rate.text().to_owned(),
        }
        .into());
    }
    Ok(())
}
