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

use crate::core::keys::{Algorithm, Key, KeyId, SignError};
use crate::core::profile::{Profile, REGISTERED_CLAIMS};

mod strict;

use strict::{audience_claim, decode_part, numeric_date, parse_object};

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

/// Checks `token` against `profile` at time `now`; `audience`, when given, replaces the
/// profile's expected audience.
pub fn verify(
    profile: &Profile,
    token: &str,
    audience: Option<&str>,
    now: SystemTime,
) -> Result<Verified, Refusal> {
    use Failure::*;

    // Structure first: nothing below parses JSON or touches a key until the shape is right.
    if token.len() > profile.max_token_bytes {
        return refuse(
            Malformed,
            format!(
                "the token is {} bytes; this profile reads at most {}",
                token.len(),
                profile.max_token_bytes
            ),
        );
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        let dots = token.matches('.').count();
        let what = if dots == 4 {
            " (five parts look like an encrypted JWE, which is not accepted)"
        } else {
            ""
        };
        return refuse(
            Malformed,
            format!(
                "a JWS compact token has three dot-separated parts, this one has {}{what}",
                dots + 1
            ),
        );
    };
    let header_bytes = decode_part("header", header_b64)?;
    let payload_bytes = decode_part("payload", payload_b64)?;
    let signature = decode_part("signature", signature_b64)?;

    let header = parse_object("header", &header_bytes)?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.as_str(),
        Some(_) => return refuse(Malformed, "the header's \"alg\" is not a string"),
        None => return refuse(Malformed, "the header has no \"alg\""),
    };
    if header.contains_key("crit") {
        return refuse(
            Malformed,
            "the header has \"crit\"; this service understands no JWS extensions (RFC 7515 §4.1.11)",
        );
    }
    for name in ["b64", "enc", "zip"] {
        if header.contains_key(name) {
            return refuse(
                Malformed,
                format!("the header has {name:?}, which a signed JWT does not carry"),
            );
        }
    }
    if alg.eq_ignore_ascii_case("none") {
        return refuse(
            AlgorithmNotAllowed,
            "unsigned tokens (alg \"none\") are never accepted",
        );
    }
    let Some(algorithm) = Algorithm::from_name(alg) else {
        return refuse(
            AlgorithmNotAllowed,
            format!("algorithm {:?} is not supported", clip(alg)),
        );
    };
    if let Some(want) = &profile.typ {
        let typ = match header.get("typ") {
            Some(Value::String(typ)) => typ.as_str(),
            Some(_) => return refuse(Malformed, "the header's \"typ\" is not a string"),
            None => {
                return refuse(
                    WrongType,
                    format!("the header has no \"typ\"; this profile requires {want:?}"),
                );
            }
        };
        if !same_media_type(typ, want) {
            return refuse(
                WrongType,
                format!(
                    "the header says typ {:?}; this profile requires {want:?}",
                    clip(typ)
                ),
            );
        }
    }
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let key = find_key(profile, &header, since_epoch.as_secs())?;
    if key.algorithm() != algorithm {
        return refuse(
            AlgorithmNotAllowed,
            format!(
                "key {:?} verifies only {}; the token says {}",
                key.id().as_str(),
                key.algorithm(),
                algorithm
            ),
        );
    }
    let signed_len = header_b64.len() + 1 + payload_b64.len();
    if !key.verify(&token.as_bytes()[..signed_len], &signature) {
        return refuse(
            BadSignature,
            format!("the signature does not match key {:?}", key.id().as_str()),
        );
    }

    // The signature holds, so the claims are the signer's; now check what they say.
    let claims = parse_object("payload", &payload_bytes)?;
    let exp = numeric_date(&claims, "exp")?;
    let nbf = numeric_date(&claims, "nbf")?;
    let iat = numeric_date(&claims, "iat")?;
    let token_audience = audience_claim(&claims)?;
    let now_secs = since_epoch.as_secs_f64();
    let leeway = profile.leeway.as_secs_f64();

    let Some(exp) = exp else {
        return refuse(
            MissingClaim,
            "the token has no \"exp\"; tokens without an expiry are not accepted",
        );
    };
    if now_secs >= exp + leeway {
        return refuse(
            Expired,
            format!("the token expired {} ago", ago(now_secs - exp)),
        );
    }
    if let Some(nbf) = nbf
        && nbf > now_secs + leeway
    {
        return refuse(
            NotYetValid,
            format!("the token is not valid for another {}", ago(nbf - now_secs)),
        );
    }
    if let Some(iat) = iat
        && iat > now_secs + leeway
    {
        return refuse(
            NotYetValid,
            format!(
                "the token says it was issued {} in the future",
                ago(iat - now_secs)
            ),
        );
    }

    if let Some(issuer) = &profile.issuer {
        match claims.get("iss") {
            None => {
                return refuse(
                    MissingClaim,
                    format!("the token has no \"iss\"; this profile expects {issuer:?}"),
                );
            }
            Some(Value::String(iss)) if iss == issuer => {}
            Some(Value::String(iss)) => {
                return refuse(
                    WrongIssuer,
                    format!(
                        "the token was issued by {:?}; this profile expects {issuer:?}",
                        clip(iss)
                    ),
                );
            }
            Some(_) => return refuse(Malformed, "the \"iss\" claim is not a string"),
        }
    }

    let expected: Vec<&str> = match audience {
        Some(aud) if !aud.is_empty() => vec![aud],
        _ => profile.audience.iter().map(String::as_str).collect(),
    };
    match (token_audience, expected.is_empty()) {
        (None, true) => {}
        (None, false) => {
            return refuse(
                MissingClaim,
                format!(
                    "the token has no \"aud\"; expected {}",
                    clip(&expected.join(" or "))
                ),
            );
        }
        (Some(token_aud), true) => {
            return refuse(
                WrongAudience,
                format!(
                    "the token is meant for {}, but no audience is expected; pass the audience to check",
                    clip(&token_aud.join(", "))
                ),
            );
        }
        (Some(token_aud), false) => {
            if !token_aud.iter().any(|a| expected.contains(a)) {
                return refuse(
                    WrongAudience,
                    format!(
                        "the token is meant for {}; expected {}",
                        clip(&token_aud.join(", ")),
                        clip(&expected.join(" or "))
                    ),
                );
            }
        }
    }

    let subject = match claims.get(&profile.subject_claim) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            return refuse(
                Malformed,
                format!(
                    "the subject claim {:?} is neither a string nor a number",
                    profile.subject_claim
                ),
            );
        }
        None => {
            return refuse(
                MissingClaim,
                format!("the token has no subject claim {:?}", profile.subject_claim),
            );
        }
    };
    if let Some(missing) = missing_required_claim(profile, &claims) {
        return refuse(
            MissingClaim,
            format!("the token has no {missing:?} claim, which this profile requires"),
        );
    }
    for (name, want) in &profile.fixed_claims {
        match claims.get(name) {
            None => {
                return refuse(
                    MissingClaim,
                    format!("the token has no {name:?} claim; this profile requires {want}"),
                );
            }
            Some(got) if got == want => {}
            Some(got) => {
                return refuse(
                    ClaimMismatch,
                    format!(
                        "the token's {name:?} is {}; this profile requires {want}",
                        clip(&got.to_string())
                    ),
                );
            }
        }
    }
    let token_id = match claims.get("jti") {
        Some(Value::String(jti)) => Some(jti.clone()),
        _ => None,
    };

    Ok(Verified {
        header,
        claims,
        key_id: key.id().clone(),
        algorithm,
        expires_at: exp,
        subject,
        token_id,
    })
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

fn find_key<'p>(
    profile: &'p Profile,
    header: &Map<String, Value>,
    now: u64,
) -> Result<&'p Key, Refusal> {
    match header.get("kid") {
        Some(Value::String(kid)) => {
            let Some(entry) = profile
                .verify_keys
                .iter()
                .find(|k| k.key.id().as_str() == kid)
            else {
                return refuse(
                    Failure::UnknownKey,
                    format!(
                        "no verify key of profile {:?} has kid {:?}",
                        profile.name,
                        clip(kid)
                    ),
                );
            };
            if now < entry.from || now >= entry.until {
                let when = if now < entry.from {
                    "is not published yet"
                } else {
                    "was removed (retired longer than max_ttl + leeway, or revoked)"
                };
                return refuse(
                    Failure::UnknownKey,
                    format!("key {:?} of profile {:?} {when}", clip(kid), profile.name),
                );
            }
            Ok(entry.key.as_ref())
        }
        Some(_) => refuse(Failure::Malformed, "the header's \"kid\" is not a string"),
        // Tokens from systems that sign with one shared secret (SeaTable's own examples) carry no kid.
        None => match profile.verify_keys.as_slice() {
            [only] if only.from <= now && now < only.until => Ok(only.key.as_ref()),
            keys => refuse(
                Failure::UnknownKey,
                format!(
                    "the token has no \"kid\" and profile {:?} has {} verify keys; a kid is needed to pick one",
                    profile.name,
                    keys.len()
                ),
            ),
        },
    }
}

/// Compares `typ` values as RFC 7515 §4.1.9 says: case-insensitive, "application/" optional.
fn same_media_type(got: &str, want: &str) -> bool {
    fn strip(s: &str) -> &str {
        if s.len() > 12 && s[..12].eq_ignore_ascii_case("application/") {
            &s[12..]
        } else {
            s
        }
    }
    strip(got).eq_ignore_ascii_case(strip(want))
}

fn ago(seconds: f64) -> String {
    let whole = Duration::from_secs(seconds.max(0.0).floor().min(u32::MAX as f64) as u64);
    humantime::format_duration(whole).to_string()
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ring::rand::SystemRandom;

    use super::*;
    use crate::core::keys::{HmacSecret, Key};
    use crate::core::profile::ProfileSpec;

    fn hs256_profile() -> Profile {
        let alg = Algorithm::HS256;
        let secret = HmacSecret::new(alg, b"unit-test-secret-of-32-bytes-ok!".to_vec()).unwrap();
        let key = Key::from_hmac_secret(KeyId::parse("k").unwrap(), secret, alg).unwrap();
        let mut spec = ProfileSpec::new("unit", Some(Arc::new(key)));
        spec.issuer = Some("https://issuer.test".into());
        Profile::new(spec).unwrap()
    }

    fn issue_at(profile: &Profile, now: SystemTime) -> Issued {
        let request = IssueRequest {
            subject: "alice".into(),
            ..Default::default()
        };
        issue(profile, request, now, &SystemRandom::new()).unwrap()
    }

    #[test]
    fn a_token_is_valid_from_iat_until_just_before_exp() {
        let profile = hs256_profile();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let issued = issue_at(&profile, t0);
        assert!(verify(&profile, &issued.token, None, t0).is_ok());
        let last = t0 + Duration::from_millis(299_999);
        assert!(verify(&profile, &issued.token, None, last).is_ok());
        let at_exp = t0 + Duration::from_secs(300);
        assert_eq!(
            verify(&profile, &issued.token, None, at_exp)
                .unwrap_err()
                .failure,
            Failure::Expired
        );
        // Issued "in the future" relative to a verifier whose clock is behind.
        let behind = t0 - Duration::from_secs(1);
        assert_eq!(
            verify(&profile, &issued.token, None, behind)
                .unwrap_err()
                .failure,
            Failure::NotYetValid
        );
    }

    /// Mutates a valid token many ways; verify must never panic and never accept a changed token.
    #[test]
    fn mangled_tokens_are_refused_and_never_panic() {
        let profile = hs256_profile();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let token = issue_at(&profile, now).token;
        let bytes = token.as_bytes();
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"ABCxyz019-_.=+/ {}\"\\\x00\xff";
        for _ in 0..5000 {
            let mut m = bytes.to_vec();
            for _ in 0..=(next() % 3) {
                let i = (next() as usize) % m.len().max(1);
                match next() % 4 {
                    0 if !m.is_empty() => m[i] = alphabet[(next() as usize) % alphabet.len()],
                    1 if !m.is_empty() => {
                        m.remove(i);
                    }
                    2 => m.insert(i.min(m.len()), alphabet[(next() as usize) % alphabet.len()]),
                    _ => m.truncate(i),
                }
            }
            let text = String::from_utf8_lossy(&m);
            let result = verify(&profile, &text, None, now);
            if text != token {
                assert!(result.is_err(), "a changed token was accepted: {text}");
            }
        }
    }
}
