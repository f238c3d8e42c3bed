//! Issue and verify as pure functions of (profile, input, clock reading).
//!
//! This module never sees protobuf and never reads a key from a token: keys come only from the
//! profile. Verify treats every byte of the token as hostile and refuses, with a reason, anything
//! RFC 7515/7519 or RFC 8725 would not accept.
//!
//! Here live the types both sides share; [`issue`] runs its steps in `issue.rs`, [`verify`]
//! its three phases (structure, key and signature, claims) in `verify.rs`, and `strict.rs`
//! reads the token's bytes so that each token has exactly one reading. `login_link.rs` issues
//! a token and fills it into the profile's login URL.

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::core::keys::{Algorithm, KeyId, SignError};
use crate::core::profile::{Profile, ProfileName};

mod issue;
mod login_link;
mod strict;
mod verify;

pub use issue::{MAX_CLAIMS_BYTES, MAX_SUBJECT_BYTES, issue};
pub use login_link::{LoginError, LoginLink, issue_link};
pub use verify::{verify, verify_with};

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
    NoActiveKey { profile: ProfileName },
    #[error("the signing key {key_id:?} stops verifying before the token would expire")]
    KeyWindow { key_id: KeyId },
    #[error("profile {profile:?} is verify-only: it has no signing_key")]
    VerifyOnly { profile: ProfileName },
    #[error("subject: must not be empty or only whitespace")]
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
    AudienceOverrideNotAllowed { profile: ProfileName },
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
    /// The token, its subject or its family is revoked (read from the token store).
    Revoked,
    /// A single-use token was already accepted once.
    AlreadyUsed,
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
            Failure::Revoked => "revoked",
            Failure::AlreadyUsed => "already_used",
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

/// The one way a check refuses, so every refusal carries a reason and a detail.
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
