//! Verify in three phases, each trusting only what the one before it proved: the token's
//! structure, then its key and signature, then its claims. Nothing reads the claims until the
//! signature over the token's own bytes holds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::Failure::{
    AlgorithmNotAllowed, BadSignature, ClaimMismatch, Expired, Malformed, MissingClaim,
    NotYetValid, WrongAudience, WrongIssuer, WrongType,
};
use super::strict::{audience_claim, decode_part, numeric_date, parse_object};
use super::{Failure, Refusal, Verified, clip, missing_required_claim, refuse};
use crate::core::keys::{Algorithm, Key};
use crate::core::profile::Profile;
use crate::core::remote::RemoteKeys;

/// Checks `token` against `profile` at time `now`; `audience`, when given, replaces the
/// profile's expected audience.
pub fn verify(
    profile: &Profile,
    token: &str,
    audience: Option<&str>,
    now: SystemTime,
) -> Result<Verified, Refusal> {
    verify_with(profile, None, token, audience, now)
}

/// [`verify`] for a federated profile: its configured keys and then the `remote` ones, as
/// last fetched; the token's `jku`, `x5u`, `jwk` and `x5c` are never followed or used.
pub fn verify_with(
    profile: &Profile,
    remote: Option<&RemoteKeys>,
    token: &str,
    audience: Option<&str>,
    now: SystemTime,
) -> Result<Verified, Refusal> {
    let parts = check_structure(profile, token)?;
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let key = check_key_and_signature(profile, remote, &parts, since_epoch.as_secs())?;
    let claims = check_claims(profile, &parts.payload, audience, since_epoch.as_secs_f64())?;
    Ok(Verified {
        header: parts.header,
        claims: claims.claims,
        key_id: key.id().clone(),
        algorithm: parts.algorithm,
        expires_at: claims.expires_at,
        subject: claims.subject,
        token_id: claims.token_id,
    })
}

/// A token of the right shape whose header names a supported algorithm; nothing is trusted yet.
struct Parts<'t> {
    header: Map<String, Value>,
    algorithm: Algorithm,
    /// The token's own first two parts and the dot between them: what the signature covers.
    signed: &'t [u8],
    payload: Vec<u8>,
    signature: Vec<u8>,
}

/// What the signer's claims say, once every claim check has passed.
struct Claims {
    claims: Map<String, Value>,
    expires_at: f64,
    subject: String,
    token_id: Option<String>,
}

/// Phase one, the structure: the length, three canonical base64url parts, a strict JSON header
/// with a supported `alg` and nothing a signed JWT must not carry, and the profile's `typ`.
fn check_structure<'t>(profile: &Profile, token: &'t str) -> Result<Parts<'t>, Refusal> {
    // Nothing below parses JSON or touches a key until the shape is right.
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
    let (header_b64, payload_b64, signature_b64) = three_parts(token)?;
    let header_bytes = decode_part("header", header_b64)?;
    let payload = decode_part("payload", payload_b64)?;
    let signature = decode_part("signature", signature_b64)?;

    let header = parse_object("header", &header_bytes)?;
    let algorithm = header_algorithm(&header)?;
    if !profile.algorithms.is_empty() && !profile.algorithms.contains(&algorithm) {
        let allowed: Vec<&str> = profile.algorithms.iter().map(|a| a.name()).collect();
        return refuse(
            AlgorithmNotAllowed,
            format!(
                "algorithm {algorithm} is not accepted by profile {:?} (it accepts {})",
                profile.name,
                allowed.join(", ")
            ),
        );
    }
    check_typ(profile, &header)?;
    let signed_len = header_b64.len() + 1 + payload_b64.len();
    Ok(Parts {
        header,
        algorithm,
        signed: &token.as_bytes()[..signed_len],
        payload,
        signature,
    })
}

/// The token's three dot-separated parts, or a refusal that counts them.
fn three_parts(token: &str) -> Result<(&str, &str, &str), Refusal> {
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
    Ok((header_b64, payload_b64, signature_b64))
}

/// The header's algorithm, once the header asks for no extension, compression, encryption or
/// unsigned token.
fn header_algorithm(header: &Map<String, Value>) -> Result<Algorithm, Refusal> {
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
    Ok(algorithm)
}

/// The header's `typ` is the profile's, when the profile names one.
fn check_typ(profile: &Profile, header: &Map<String, Value>) -> Result<(), Refusal> {
    let Some(want) = &profile.typ else {
        return Ok(());
    };
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
    Ok(())
}

/// Phase two, the key and the signature: the profile's key for the token at `now` (seconds
/// since the epoch), whose algorithm is the header's and whose signature over the token's own
/// first two parts holds.
fn check_key_and_signature<'p>(
    profile: &'p Profile,
    remote: Option<&'p RemoteKeys>,
    parts: &Parts<'_>,
    now: u64,
) -> Result<&'p Key, Refusal> {
    let key = find_key(profile, remote, &parts.header, now)?;
    if key.algorithm() != parts.algorithm {
        return refuse(
            AlgorithmNotAllowed,
            format!(
                "key {:?} verifies only {}; the token says {}",
                key.id().as_str(),
                key.algorithm(),
                parts.algorithm
            ),
        );
    }
    if !key.verify(parts.signed, &parts.signature) {
        return refuse(
            BadSignature,
            format!("the signature does not match key {:?}", key.id().as_str()),
        );
    }
    Ok(key)
}

/// Phase three, the claims, to be called only once the signature holds (so they are the
/// signer's): the times with leeway at `now` (seconds since the epoch), the issuer, the
/// audience, the subject claim, the required claims and the fixed claims.
fn check_claims(
    profile: &Profile,
    payload: &[u8],
    audience: Option<&str>,
    now: f64,
) -> Result<Claims, Refusal> {
    let claims = parse_object("payload", payload)?;
    // Every claim a check reads is type-checked before any check judges the token.
    let exp = numeric_date(&claims, "exp")?;
    let nbf = numeric_date(&claims, "nbf")?;
    let iat = numeric_date(&claims, "iat")?;
    let token_audience = audience_claim(&claims)?;

    let expires_at = check_times(profile, exp, nbf, iat, now)?;
    check_issuer(profile, &claims)?;
    check_audience(profile, token_audience, audience)?;
    let subject = subject_claim(profile, &claims)?;
    check_profile_claims(profile, &claims)?;
    let token_id = match claims.get("jti") {
        Some(Value::String(jti)) => Some(jti.clone()),
        _ => None,
    };
    Ok(Claims {
        claims,
        expires_at,
        subject,
        token_id,
    })
}

/// The token's `exp`, once it has one and `now` lies within `exp`, `nbf` and `iat` give or
/// take the profile's leeway.
fn check_times(
    profile: &Profile,
    exp: Option<f64>,
    nbf: Option<f64>,
    iat: Option<f64>,
    now: f64,
) -> Result<f64, Refusal> {
    let leeway = profile.leeway.as_secs_f64();
    let Some(exp) = exp else {
        return refuse(
            MissingClaim,
            "the token has no \"exp\"; tokens without an expiry are not accepted",
        );
    };
    if now >= exp + leeway {
        return refuse(Expired, format!("the token expired {} ago", ago(now - exp)));
    }
    if let Some(nbf) = nbf
        && nbf > now + leeway
    {
        return refuse(
            NotYetValid,
            format!("the token is not valid for another {}", ago(nbf - now)),
        );
    }
    if let Some(iat) = iat
        && iat > now + leeway
    {
        return refuse(
            NotYetValid,
            format!(
                "the token says it was issued {} in the future",
                ago(iat - now)
            ),
        );
    }
    Ok(exp)
}

/// The token's `iss` is the profile's issuer, when the profile names one.
fn check_issuer(profile: &Profile, claims: &Map<String, Value>) -> Result<(), Refusal> {
    let Some(issuer) = &profile.issuer else {
        return Ok(());
    };
    match claims.get("iss") {
        None => refuse(
            MissingClaim,
            format!("the token has no \"iss\"; this profile expects {issuer:?}"),
        ),
        Some(Value::String(iss)) if iss == issuer => Ok(()),
        Some(Value::String(iss)) => refuse(
            WrongIssuer,
            format!(
                "the token was issued by {:?}; this profile expects {issuer:?}",
                clip(iss)
            ),
        ),
        Some(_) => refuse(Malformed, "the \"iss\" claim is not a string"),
    }
}

/// The token's `aud` names an expected audience (the request's, else the profile's), and a
/// token meant for someone is refused where no audience is expected.
fn check_audience(
    profile: &Profile,
    token_audience: Option<Vec<&str>>,
    audience: Option<&str>,
) -> Result<(), Refusal> {
    let expected: Vec<&str> = match audience {
        Some(aud) if !aud.is_empty() => vec![aud],
        _ => profile.audience.iter().map(String::as_str).collect(),
    };
    match (token_audience, expected.is_empty()) {
        (None, true) => Ok(()),
        (None, false) => refuse(
            MissingClaim,
            format!(
                "the token has no \"aud\"; expected {}",
                clip(&expected.join(" or "))
            ),
        ),
        (Some(token_aud), true) => refuse(
            WrongAudience,
            format!(
                "the token is meant for {}, but no audience is expected; pass the audience to check",
                clip(&token_aud.join(", "))
            ),
        ),
        (Some(token_aud), false) if !token_aud.iter().any(|a| expected.contains(a)) => refuse(
            WrongAudience,
            format!(
                "the token is meant for {}; expected {}",
                clip(&token_aud.join(", ")),
                clip(&expected.join(" or "))
            ),
        ),
        (Some(_), false) => Ok(()),
    }
}

/// The subject, from the profile's subject claim as a string or a number.
fn subject_claim(profile: &Profile, claims: &Map<String, Value>) -> Result<String, Refusal> {
    match claims.get(&profile.subject_claim) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => refuse(
            Malformed,
            format!(
                "the subject claim {:?} is neither a string nor a number",
                profile.subject_claim
            ),
        ),
        None => refuse(
            MissingClaim,
            format!("the token has no subject claim {:?}", profile.subject_claim),
        ),
    }
}

/// Every claim the profile requires is present, and every claim it fixes has its value.
fn check_profile_claims(profile: &Profile, claims: &Map<String, Value>) -> Result<(), Refusal> {
    if let Some(missing) = missing_required_claim(profile, claims) {
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
    Ok(())
}

/// The profile's key that the header's `kid` names (or its only key, for a token without a
/// kid), if that key verifies at `now`.
fn find_key<'p>(
    profile: &'p Profile,
    remote: Option<&'p RemoteKeys>,
    header: &Map<String, Value>,
    now: u64,
) -> Result<&'p Key, Refusal> {
    let remote_keys = remote.map_or(&[][..], |r| r.keys.as_slice());
    match header.get("kid") {
        Some(Value::String(kid)) => {
            let Some(entry) = profile
                .verify_keys
                .iter()
                .find(|k| k.key.id().as_str() == kid)
            else {
                if let Some(key) = remote_keys.iter().find(|k| k.id().as_str() == kid) {
                    return Ok(key.as_ref());
                }
                return refuse(Failure::UnknownKey, unknown_kid(profile, remote, kid));
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
        None => {
            let configured = profile
                .verify_keys
                .iter()
                .filter(|k| k.from <= now && now < k.until)
                .map(|k| &k.key);
            let mut usable = configured.chain(remote_keys);
            match (usable.next(), usable.next()) {
                (Some(only), None) if profile.verify_keys.len() + remote_keys.len() == 1 => {
                    Ok(only.as_ref())
                }
                _ => {
                    if let Some(why) = remote.and_then(|r| r.unavailable.as_deref()) {
                        return refuse(Failure::UnknownKey, unavailable(profile, remote, why));
                    }
                    refuse(
                        Failure::UnknownKey,
                        format!(
                            "the token has no \"kid\" and profile {:?} has {} verify keys; a kid is needed to pick one",
                            profile.name,
                            profile.verify_keys.len() + remote_keys.len()
                        ),
                    )
                }
            }
        }
    }
}

/// Why no key has `kid`: the remote set is not available, or it has no such key.
fn unknown_kid(profile: &Profile, remote: Option<&RemoteKeys>, kid: &str) -> String {
    match remote {
        Some(r) => match r.unavailable.as_deref() {
            Some(why) => unavailable(profile, remote, why),
            None => format!(
                "no verify key of profile {:?} has kid {:?}, nor the key set from {} ({} keys)",
                profile.name,
                clip(kid),
                r.source,
                r.keys.len()
            ),
        },
        None => format!(
            "no verify key of profile {:?} has kid {:?}",
            profile.name,
            clip(kid)
        ),
    }
}

fn unavailable(profile: &Profile, remote: Option<&RemoteKeys>, why: &str) -> String {
    let source = remote.map_or("", |r| r.source.as_str());
    format!(
        "the key set of profile {:?} from {source} is not available: {why}",
        profile.name
    )
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

/// A span of seconds for a detail, in whole seconds.
fn ago(seconds: f64) -> String {
    let whole = Duration::from_secs(seconds.max(0.0).floor().min(u32::MAX as f64) as u64);
    humantime::format_duration(whole).to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::core::random::Random;

    use super::*;
    use crate::core::keys::{HmacSecret, Key, KeyId};
    use crate::core::profile::ProfileSpec;
    use crate::core::token::{IssueRequest, Issued, issue};

    fn hs256_profile() -> Profile {
        let alg = Algorithm::HS256;
        let secret = HmacSecret::new(alg, b"unit-test-secret-of-32-bytes-ok!".to_vec()).unwrap();
        let key = Key::from_hmac_secret(KeyId::parse("k").unwrap(), secret, alg).unwrap();
        let name = crate::core::profile::ProfileName::parse("unit").unwrap();
        let mut spec = ProfileSpec::new(name, Some(Arc::new(key)));
        spec.issuer = Some("https://issuer.test".into());
        Profile::new(spec).unwrap()
    }

    fn issue_at(profile: &Profile, now: SystemTime) -> Issued {
        let request = IssueRequest {
            subject: "alice".into(),
            ..Default::default()
        };
        issue(profile, request, now, &Random::new()).unwrap()
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
