//! Issue as steps that each refuse before anything is signed: pick the signer, check the
//! request, fix the token's times, build the claims; then sign, and refuse a token too large.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::{IssueError, IssueRequest, Issued, clip, missing_required_claim};
use crate::core::keys::{Key, SignError};
use crate::core::profile::{Profile, REGISTERED_CLAIMS, Signer};
use crate::core::random::Random;

/// The largest a subject may be, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 1024;
/// The largest the extra claims of one request may be, in bytes of JSON.
pub const MAX_CLAIMS_BYTES: usize = 4096;

/// Signs a token for `request.subject` under `profile` at time `now`.
pub fn issue(
    profile: &Profile,
    request: IssueRequest,
    now: SystemTime,
    random: &Random,
) -> Result<Issued, IssueError> {
    let (signer, now_secs) = pick_signer(profile, now)?;
    let checked = check_request(profile, request)?;
    let times = token_times(signer, now_secs, checked.ttl)?;
    let token_id = new_token_id(&signer.key, random)?;
    let claims = build_claims(profile, checked, times, &token_id)?;
    let token = sign(profile, signer, &claims, random)?;
    Ok(Issued {
        token,
        token_id,
        issued_at: times.issued_at,
        expires_at: times.expires_at,
        key_id: signer.key.id().clone(),
        algorithm: signer.key.algorithm(),
    })
}

/// A request whose every field is allowed, with the profile's defaults filled in.
struct Checked {
    subject: String,
    claims: Map<String, Value>,
    audience: Vec<String>,
    /// Whole seconds.
    ttl: Duration,
}

/// A token's `iat` and `exp`, in seconds since the Unix epoch.
#[derive(Clone, Copy)]
struct TokenTimes {
    issued_at: u64,
    expires_at: u64,
}

/// The key that signs at `now`, and `now` in seconds since the epoch; a verify-only profile,
/// a clock before 1970 and a time at which no key signs are refused, in that order.
fn pick_signer(profile: &Profile, now: SystemTime) -> Result<(&Signer, u64), IssueError> {
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
    Ok((signer, now_secs))
}

/// The request with the profile's defaults filled in, once its subject, claims, audience and
/// ttl are each allowed, checked in that order.
fn check_request(profile: &Profile, request: IssueRequest) -> Result<Checked, IssueError> {
    check_subject(&request.subject)?;
    check_claims(profile, &request.claims)?;
    let audience = pick_audience(profile, request.audience)?;
    let ttl = pick_ttl(profile, request.ttl)?;
    Ok(Checked {
        subject: request.subject,
        claims: request.claims,
        audience,
        ttl,
    })
}

/// The subject is neither empty (nor only whitespace) nor longer than [`MAX_SUBJECT_BYTES`].
fn check_subject(subject: &str) -> Result<(), IssueError> {
    // A subject of spaces names nobody, just as an empty one does.
    if subject.trim().is_empty() {
        return Err(IssueError::EmptySubject);
    }
    if subject.len() > MAX_SUBJECT_BYTES {
        return Err(IssueError::SubjectTooLong(subject.len()));
    }
    Ok(())
}

/// No extra claim is one the service, the subject or the profile sets, and together they fit
/// in [`MAX_CLAIMS_BYTES`] of JSON.
fn check_claims(profile: &Profile, claims: &Map<String, Value>) -> Result<(), IssueError> {
    for claim in claims.keys() {
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
    if !claims.is_empty() {
        // A `Map<String, Value>` always serializes.
        let len = serde_json::to_vec(claims).map_or(usize::MAX, |v| v.len());
        if len > MAX_CLAIMS_BYTES {
            return Err(IssueError::ClaimsTooLarge {
                len,
                max: MAX_CLAIMS_BYTES,
            });
        }
    }
    Ok(())
}

/// The profile's audience, or the request's where the profile allows an override and no entry
/// is empty.
fn pick_audience(profile: &Profile, requested: Vec<String>) -> Result<Vec<String>, IssueError> {
    if requested.is_empty() {
        Ok(profile.audience.clone())
    } else if !profile.allow_audience_override {
        Err(IssueError::AudienceOverrideNotAllowed {
            profile: profile.name.clone(),
        })
    } else if requested.iter().any(String::is_empty) {
        Err(IssueError::EmptyAudience)
    } else {
        Ok(requested)
    }
}

/// The profile's ttl, or the request's in whole seconds: at least 1s and at most `max_ttl`.
fn pick_ttl(profile: &Profile, requested: Option<Duration>) -> Result<Duration, IssueError> {
    match requested {
        None => Ok(profile.ttl),
        Some(ttl) if ttl > profile.max_ttl => Err(IssueError::TtlTooLong {
            ttl: humantime::format_duration(ttl).to_string(),
            max: humantime::format_duration(profile.max_ttl).to_string(),
        }),
        // NumericDate is whole seconds; rounding down keeps the token inside what was asked.
        Some(ttl) if ttl.as_secs() == 0 => Err(IssueError::TtlTooShort),
        Some(ttl) => Ok(Duration::from_secs(ttl.as_secs())),
    }
}

/// `iat` is `now` and `exp` is `ttl` later, never after the signer's key stops verifying.
fn token_times(signer: &Signer, now_secs: u64, ttl: Duration) -> Result<TokenTimes, IssueError> {
    let issued_at = now_secs;
    let expires_at = issued_at + ttl.as_secs();
    // No token may outlive its key's verify window. Profiles build windows that guarantee it,
    // so reaching this means a schedule was changed under a live key.
    if expires_at > signer.times.remove_at {
        return Err(IssueError::KeyWindow {
            key_id: signer.key.id().clone(),
        });
    }
    Ok(TokenTimes {
        issued_at,
        expires_at,
    })
}

/// A fresh `jti`: 16 random bytes in base64url, so no two tokens share one in practice.
fn new_token_id(key: &Key, random: &Random) -> Result<String, IssueError> {
    let id_bytes = random.id().map_err(|_| SignError {
        key_id: key.id().clone(),
    })?;
    Ok(URL_SAFE_NO_PAD.encode(id_bytes))
}

/// The claims to sign: the request's, the profile's fixed ones, the subject, `iss`, `aud`,
/// `iat`, `exp` and `jti`, with none missing that the profile requires.
fn build_claims(
    profile: &Profile,
    checked: Checked,
    times: TokenTimes,
    token_id: &str,
) -> Result<Map<String, Value>, IssueError> {
    let mut claims = checked.claims;
    claims.extend(
        profile
            .fixed_claims
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    claims.insert(
        profile.subject_claim.clone(),
        Value::String(checked.subject),
    );
    if let Some(issuer) = &profile.issuer {
        claims.insert("iss".into(), Value::String(issuer.clone()));
    }
    let audience = checked.audience;
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
    claims.insert("iat".into(), Value::Number(times.issued_at.into()));
    claims.insert("exp".into(), Value::Number(times.expires_at.into()));
    claims.insert("jti".into(), Value::String(token_id.to_owned()));
    // A token its own profile would refuse is never handed out.
    if let Some(missing) = missing_required_claim(profile, &claims) {
        return Err(IssueError::MissingRequiredClaim(clip(missing)));
    }
    Ok(claims)
}

/// The compact JWS of `claims` under the signer's header, no longer than the profile's
/// `max_token_bytes`.
fn sign(
    profile: &Profile,
    signer: &Signer,
    claims: &Map<String, Value>,
    random: &Random,
) -> Result<String, IssueError> {
    let (key, encoded_header) = (&signer.key, &signer.encoded_header);
    let payload = serde_json::to_vec(claims).map_err(|_| SignError {
        key_id: key.id().clone(),
    })?;

    let mut token = String::with_capacity(encoded_header.len() + payload.len() * 4 / 3 + 400);
    token.push_str(encoded_header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let signature = key.sign(random.system(), token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
    if token.len() > profile.max_token_bytes {
        return Err(IssueError::TokenTooLarge {
            len: token.len(),
            max: profile.max_token_bytes,
        });
    }
    Ok(token)
}
