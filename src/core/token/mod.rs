//! Issue and verify as pure functions of (profile, input, clock reading).
//!
//! This module never sees protobuf and never reads a key from a token: keys come only from the
//! profile. Verify treats every byte of the token as hostile and refuses, with a reason, anything
//! RFC 7515/7519 or RFC 8725 would not accept.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SecureRandom;
use serde_json::{Map, Value};

use crate::core::keys::{Algorithm, KeyId, SignError};
use crate::core::profile::{Profile, REGISTERED_CLAIMS};

mod strict;
mod verify;

pub use verify::verify;

/// The largest a subject may be, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 1024;
/// The largest the extra claims of one request may be, in bytes of JSON.
pub const MAX_CLAIMS_BYTES: usize = 4096;

/// What a caller asks to have signed.
#[derive(Debug, Default, Clone)]
pub struct IssueRequest {
    pub subject: String,
    pub claims: Map<String, Value>,
    pub audience: Vec<String>,
    /// `None` means the profile's ttl.
    pub ttl: Option<Duration>,
}

/// A signed token and the facts a caller may want without decoding it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub token_id: String,
    /// Seconds since the Unix epoch (`iat`).
    pub issued_at: u64,
    /// Seconds since the Unix epoch (`exp`).
    pub expires_at: u64,
    pub key_id: KeyId,
    pub algorithm: Algorithm,
}

/// Why a token could not be issued. All but `Sign` and `Clock` are the caller's mistake.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("profile {profile:?} has no key that signs at this time; see ListKeys")]
    NoActiveKey { profile: String },
    #[error("the signing key {key_id} stops verifying before the token would expire")]
    KeyWindow { key_id: KeyId },
    #[error("profile {profile:?} is verify-only: it has no signing_key")]
    VerifyOnly { profile: String },
    #[error("subject: must not be empty")]
    EmptySubject,
    #[error("subject: is {0} bytes; at most 1024 are allowed")]
    SubjectTooLong(usize),
    #[error("claims.{claim}: {why}")]
    ReservedClaim { claim: String, why: &'static str },
    #[error("claims: are {len} bytes of JSON; at most {max} are allowed")]
    ClaimsTooLarge { len: usize, max: usize },
    #[error("ttl: {ttl} is above the profile's max_ttl of {max}")]
    TtlTooLong { ttl: String, max: String },
    #[error("ttl: must be at least 1s")]
    TtlTooShort,
    #[error("audience: profile {profile:?} does not allow overriding its audience")]
    AudienceOverrideNotAllowed { profile: String },
    #[error("audience: entries must not be empty")]
    EmptyAudience,
    #[error("claims.{0}: the profile requires this claim")]
    MissingRequiredClaim(String),
    #[error("claims: the token would be {len} bytes, above the profile's max_token_bytes of {max}")]
    TokenTooLarge { len: usize, max: usize },
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error("the system clock is before 1970")]
    Clock,
}

/// Signs a token for `request.subject` under `profile` at time `now`.
pub fn issue(
    profile: &Profile,
    request: IssueRequest,
    now: SystemTime,
    rng: &dyn SecureRandom,
) -> Result<Issued, IssueError> {
    if profile.signers.is_empty() {
        return Err(IssueError::VerifyOnly {
            profile: profile.name.clone(),
        });
    }
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| IssueError::Clock)?
        .as_secs();
    let Some(signer) = profile.signer_at(now_secs) else {
        return Err(IssueError::NoActiveKey {
            profile: profile.name.clone(),
        });
    };
    let (key, encoded_header) = (&signer.key, &signer.encoded_header);
    if request.subject.is_empty() {
        return Err(IssueError::EmptySubject);
    }
    if request.subject.len() > MAX_SUBJECT_BYTES {
        return Err(IssueError::SubjectTooLong(request.subject.len()));
    }
    for claim in request.claims.keys() {
        let why = if REGISTERED_CLAIMS.contains(&claim.as_str()) {
            "is set by the service and cannot be given"
        } else if *claim == profile.subject_claim {
            "carries the subject in this profile; use the subject field"
        } else if profile.fixed_claims.contains_key(claim) {
            "is fixed by the profile and cannot be given"
        } else {
            continue;
        };
        return Err(IssueError::ReservedClaim {
            claim: clip(claim),
            why,
        });
    }
    if !request.claims.is_empty() {
        // A `Map<String, Value>` always serializes.
        let len = serde_json::to_vec(&request.claims).map_or(usize::MAX, |v| v.len());
        if len > MAX_CLAIMS_BYTES {
            return Err(IssueError::ClaimsTooLarge {
                len,
                max: MAX_CLAIMS_BYTES,
            });
        }
    }
    let audience = if request.audience.is_empty() {
        profile.audience.clone()
    } else if !profile.allow_audience_override {
        return Err(IssueError::AudienceOverrideNotAllowed {
            profile: profile.name.clone(),
        });
    } else if request.audience.iter().any(String::is_empty) {
        return Err(IssueError::EmptyAudience);
    } else {
        request.audience
    };
    let ttl = match request.ttl {
        None => profile.ttl,
        Some(ttl) if ttl > profile.max_ttl => {
            return Err(IssueError::TtlTooLong {
                ttl: humantime::format_duration(ttl).to_string(),
                max: humantime::format_duration(profile.max_ttl).to_string(),
            });
        }
        // NumericDate is whole seconds; rounding down keeps the token inside what was asked.
        Some(ttl) if ttl.as_secs() == 0 => return Err(IssueError::TtlTooShort),
        Some(ttl) => Duration::from_secs(ttl.as_secs()),
    };

    let issued_at = now_secs;
    let expires_at = issued_at + ttl.as_secs();
    // No token may outlive its key's verify window. Profiles build windows that guarantee it,
    // so reaching this means a schedule was changed under a live key.
    if expires_at > signer.times.remove_at {
        return Err(IssueError::KeyWindow {
            key_id: key.id().clone(),
        });
    }
    let mut id_bytes = [0u8; 16];
    rng.fill(&mut id_bytes).map_err(|_| SignError {
        key_id: key.id().clone(),
    })?;
    let token_id = URL_SAFE_NO_PAD.encode(id_bytes);

    let mut claims = request.claims;
    claims.extend(
        profile
            .fixed_claims
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    claims.insert(
        profile.subject_claim.clone(),
        Value::String(request.subject),
    );
    if let Some(issuer) = &profile.issuer {
        claims.insert("iss".into(), Value::String(issuer.clone()));
    }
    match audience.len() {
        0 => {}
        1 => {
            claims.insert(
                "aud".into(),
                Value::String(audience.into_iter().next().unwrap_or_default()),
            );
        }
        _ => {
            claims.insert(
                "aud".into(),
                audience.into_iter().map(Value::String).collect(),
            );
        }
    }
    claims.insert("iat".into(), Value::Number(issued_at.into()));
    claims.insert("exp".into(), Value::Number(expires_at.into()));
    claims.insert("jti".into(), Value::String(token_id.clone()));
    // A token its own profile would refuse is never handed out.
    if let Some(missing) = missing_required_claim(profile, &claims) {
        return Err(IssueError::MissingRequiredClaim(clip(missing)));
    }
    let payload = serde_json::to_vec(&claims).map_err(|_| SignError {
        key_id: key.id().clone(),
    })?;

    let mut token = String::with_capacity(encoded_header.len() + payload.len() * 4 / 3 + 400);
    token.push_str(encoded_header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let signature = key.sign(rng, token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
    if token.len() > profile.max_token_bytes {
        return Err(IssueError::TokenTooLarge {
            len: token.len(),
            max: profile.max_token_bytes,
        });
    }

    Ok(Issued {
        token,
        token_id,
        issued_at,
        expires_at,
        key_id: key.id().clone(),
        algorithm: key.algorithm(),
    })
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Malformed,
    AlgorithmNotAllowed,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    MissingClaim,
    WrongType,
    ClaimMismatch,
}

impl Failure {
    /// A stable lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Malformed => "malformed",
            Failure::AlgorithmNotAllowed => "algorithm_not_allowed",
            Failure::UnknownKey => "unknown_key",
            Failure::BadSignature => "bad_signature",
            Failure::Expired => "expired",
            Failure::NotYetValid => "not_yet_valid",
            Failure::WrongIssuer => "wrong_issuer",
            Failure::WrongAudience => "wrong_audience",
            Failure::MissingClaim => "missing_claim",
            Failure::WrongType => "wrong_type",
            Failure::ClaimMismatch => "claim_mismatch",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused token: the reason, and a sentence a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub failure: Failure,
    pub detail: String,
}

fn refuse<T>(failure: Failure, detail: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        failure,
        detail: detail.into(),
    })
}

/// A token that passed every check, with what it says.
#[derive(Debug, Clone)]
pub struct Verified {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    pub key_id: KeyId,
    pub algorithm: Algorithm,
    /// Seconds since the Unix epoch; JSON allows fractions.
    pub expires_at: f64,
    pub subject: String,
    pub token_id: Option<String>,
}

/// The first of the profile's `required_claims` that `claims` lacks; Issue and Verify share it.
fn missing_required_claim<'p>(
    profile: &'p Profile,
    claims: &Map<String, Value>,
) -> Option<&'p str> {
    profile
        .required_claims
        .iter()
        .map(String::as_str)
        .find(|c| !claims.contains_key(*c))
}

/// Caller-controlled text echoed in a detail is cut short, so details stay sentences.
fn clip(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
