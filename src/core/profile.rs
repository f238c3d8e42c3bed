//! A profile: a named, configured token shape. Which key signs, which keys verify, issuer,
//! audience, lifetimes, the subject claim, required and fixed claims, the login URL.
//!
//! A [`Profile`] is only made by [`Profile::new`], which applies every default and does every
//! cross-check, once; the configuration layer only translates the file, and the token code never
//! checks configuration again.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::core::clock::whole_seconds;
use crate::core::keys::{Algorithm, Jwk, Key};
use crate::core::lifecycle::Lifecycle;
use crate::core::login::LoginUrl;
use crate::core::rotation::{KeyState, KeyTimes};

/// The profile used when a request names none.
pub const DEFAULT_PROFILE: &str = "default";

/// Claims the service always sets itself; a request or a profile's fixed claims may not name them.
pub const REGISTERED_CLAIMS: [&str; 7] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"];

/// The longest token Verify reads unless a profile says otherwise.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The lifetime of issued tokens unless a profile says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// The lifetime of login-link tokens unless a profile says otherwise (or its max_ttl is shorter).
pub const DEFAULT_LOGIN_TTL: Duration = Duration::from_secs(30);

/// A profile's name: 1 to 64 characters from A-Z a-z 0-9 _ - . (checked once, so it is safe
/// in a log line, a URL path and a directory name).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProfileName(String);

impl ProfileName {
    /// Refuses anything but 1 to 64 characters from A-Z a-z 0-9 _ - .
    pub fn parse(name: &str) -> Result<ProfileName, ProfileError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if ok {
            Ok(ProfileName(name.to_owned()))
        } else {
            Err(ProfileError::BadName(name.to_owned()))
        }
    }

    /// The name as configured.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for ProfileName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for ProfileName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The profile a request means by `name`: an empty name means [`DEFAULT_PROFILE`]. Every RPC,
/// the admin calls and the logs read names through this one rule.
pub fn requested(name: &str) -> &str {
    if name.is_empty() {
        DEFAULT_PROFILE
    } else {
        name
    }
}

/// A key that signs for a profile, and when.
#[derive(Clone, Debug)]
pub struct SigningKey {
    pub key: Arc<Key>,
    pub schedule: Schedule,
}

/// When a signing key signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// A configured key: signs from `not_before` (or always) until `not_after` or until the
    /// next configured key's `not_before`, whichever is first; then verifies for the profile's
    /// max_ttl + leeway.
    File(SigningWindow),
    /// A managed key's persisted times (see [`crate::core::rotation`]).
    Managed(KeyTimes),
}

/// A configured key's `not_before` and `not_after` (seconds since the Unix epoch), checked to
/// leave the key some time to sign.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigningWindow {
    not_before: Option<u64>,
    not_after: Option<u64>,
}

impl SigningWindow {
    /// Refuses a window that ends before it starts (`not_after` at or before `not_before`, or
    /// at the epoch).
    pub fn new(
        not_before: Option<u64>,
        not_after: Option<u64>,
    ) -> Result<SigningWindow, ProfileError> {
        if let Some(end) = not_after
            && end <= not_before.unwrap_or(0)
        {
            return Err(ProfileError::EmptyWindow);
        }
        Ok(SigningWindow {
            not_before,
            not_after,
        })
    }

    /// When the key starts signing; `None`: from the start.
    pub fn not_before(&self) -> Option<u64> {
        self.not_before
    }

    /// When the key stops signing at the latest; `None`: not before the next key takes over.
    pub fn not_after(&self) -> Option<u64> {
        self.not_after
    }
}

impl SigningKey {
    /// A configured key that always signs.
    pub fn always(key: Arc<Key>) -> SigningKey {
        SigningKey {
            key,
            schedule: Schedule::File(SigningWindow::default()),
        }
    }
}

/// Everything a profile is made of, already parsed, before cross-checks.
#[derive(Clone, Debug)]
pub struct ProfileSpec {
    pub name: ProfileName,
    /// The keys that sign, each with its schedule; they verify during their windows too.
    pub signing_keys: Vec<SigningKey>,
    /// Further keys that verify at all times (a partner's public key, a retired secret).
    pub verify_keys: Vec<Arc<Key>>,
    pub issuer: Option<String>,
    pub audience: Vec<String>,
    pub allow_audience_override: bool,
    /// Default lifetime of issued tokens; [`DEFAULT_TTL`] when `None`.
    pub ttl: Option<Duration>,
    /// Longest lifetime a request may ask for; the ttl when `None`.
    pub max_ttl: Option<Duration>,
    /// Lifetime of login-link tokens; [`DEFAULT_LOGIN_TTL`] (or max_ttl if shorter) when `None`.
    pub login_ttl: Option<Duration>,
    pub leeway: Duration,
    /// The claim that carries the subject; "sub" when `None`.
    pub subject_claim: Option<String>,
    pub required_claims: Vec<String>,
    /// Claims set on every issued token and checked on every verified one (e.g. token_type).
    pub claims: Map<String, Value>,
    /// The `typ` header set on issue and required on verify; "JWT" set and anything accepted when `None`.
    pub typ: Option<String>,
    pub login_url: Option<LoginUrl>,
    pub max_token_bytes: usize,
    /// Where a federated profile's remote key set comes from (its JWKS or discovery URL);
    /// `None` for a profile whose keys are all configured.
    pub remote_jwks: Option<String>,
    /// The algorithms Verify accepts; empty: whatever the profile's keys are bound to. A
    /// federated profile must name them, since it does not choose its keys (RFC 8725 §3.1).
    pub algorithms: Vec<Algorithm>,
    /// Revocation, single use and refresh: what the token store keeps for this profile.
    pub lifecycle: Lifecycle,
}

/// Why a profile's configuration does not hold together.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("profile name {0:?} is not allowed: use 1 to 64 characters from A-Z a-z 0-9 _ - .")]
    BadName(String),
    #[error("signing_key {key:?} has no private key (it is verify-only), so it cannot sign")]
    SigningKeyCannotSign { key: String },
    #[error("not_before must be earlier than not_after")]
    EmptyWindow,
    #[error("the profile has neither a signing_key nor verify_keys")]
    NoKeys,
    #[error(
        "verify_keys must include the signing_key {0:?}, or the profile would refuse its own tokens"
    )]
    SigningKeyNotVerified(String),
    #[error(
        "required_claims names {0:?}, which the profile's tokens never carry (no issuer or audience is configured)"
    )]
    RequiredClaimNeverSet(String),
    #[error("{field} must be at least 1s")]
    TooShort { field: &'static str },
    #[error("{field} is {value}, above max_ttl {max}")]
    AboveMax {
        field: &'static str,
        value: String,
        max: String,
    },
    #[error("{field} must be whole seconds (JWT times are whole seconds), not {value}")]
    NotWholeSeconds { field: &'static str, value: String },
    #[error(
        "subject_claim {0:?} is a registered claim the service sets itself; pick another name or \"sub\""
    )]
    BadSubjectClaim(String),
    #[error("claims.{0} is a claim the service sets itself and cannot be fixed")]
    ReservedFixedClaim(String),
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("typ {0:?} must be 1 to 64 printable ASCII characters")]
    BadTyp(String),
    #[error("max_token_bytes must be between 256 and 65536, not {0}")]
    BadMaxTokenBytes(usize),
    #[error(
        "a profile with remote keys ({0}) is verify-only: remove signing_key/signing_keys/rotation"
    )]
    RemoteKeysSign(String),
    #[error(
        "a profile with remote keys ({0}) must list the algorithms it accepts, e.g. algorithms = [\"RS256\"]"
    )]
    RemoteKeysNeedAlgorithms(String),
    #[error(
        "a profile with remote keys ({0}) must set issuer: the remote keys sign for anyone the issuer serves"
    )]
    RemoteKeysNeedIssuer(String),
    #[error(
        "a profile with remote keys ({0}) must set audience (or allow_audience_override): the issuer signs tokens for other audiences too"
    )]
    RemoteKeysNeedAudience(String),
    #[error("algorithms: {0} is listed twice")]
    DuplicateAlgorithm(Algorithm),
    #[error("algorithms: key {key:?} is bound to {algorithm}, which algorithms does not list")]
    KeyAlgorithmNotListed { key: String, algorithm: Algorithm },
}

/// A signing key with its resolved times and the header it puts on tokens.
#[derive(Debug)]
pub struct Signer {
    pub(crate) key: Arc<Key>,
    pub(crate) times: KeyTimes,
    pub(crate) managed: bool,
    /// base64url of the protected header this key puts on every token, made once.
    pub(crate) encoded_header: String,
}

impl Signer {
    /// The key.
    pub fn key(&self) -> &Arc<Key> {
        &self.key
    }

    /// When it is published, signs, retires and is removed (`u64::MAX`: never).
    pub fn times(&self) -> KeyTimes {
        self.times
    }

    /// Whether the service generated and rotates this key.
    pub fn is_managed(&self) -> bool {
        self.managed
    }
}

/// A key that verifies, and from when until when (seconds since the Unix epoch).
#[derive(Debug)]
pub(crate) struct VerifyKey {
    pub(crate) key: Arc<Key>,
    pub(crate) from: u64,
    pub(crate) until: u64,
}

/// A checked profile; its parts are read by the token and login URL code.
#[derive(Debug)]
pub struct Profile {
    pub(crate) name: ProfileName,
    /// Signing keys in activation order; windows of managed keys never overlap.
    pub(crate) signers: Vec<Signer>,
    pub(crate) verify_keys: Vec<VerifyKey>,
    pub(crate) issuer: Option<String>,
    pub(crate) audience: Vec<String>,
    pub(crate) allow_audience_override: bool,
    pub(crate) ttl: Duration,
    pub(crate) max_ttl: Duration,
    pub(crate) login_ttl: Duration,
    pub(crate) leeway: Duration,
    pub(crate) subject_claim: String,
    pub(crate) required_claims: Vec<String>,
    pub(crate) fixed_claims: Map<String, Value>,
    pub(crate) typ: Option<String>,
    pub(crate) login_url: Option<LoginUrl>,
    pub(crate) max_token_bytes: usize,
    pub(crate) remote_jwks: Option<String>,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) lifecycle: Lifecycle,
}

impl Profile {
    /// Applies every default and every cross-check to a spec: the name, keys able to do their
    /// jobs, lifetimes in order and whole seconds, claims not stepping on the service's own,
    /// limits; then resolves each signing key's times and the windows keys verify in.
    pub fn new(spec: ProfileSpec) -> Result<Profile, ProfileError> {
        check_keys(&spec)?;
        let lifetimes = spec.lifetimes()?;
        let subject_claim = check_claims(&spec)?;
        check_limits(&spec)?;
        let signers = resolve_signers(
            &spec.signing_keys,
            lifetimes.verify_after(),
            spec.typ.as_deref(),
        );
        let verify_keys = verify_windows(&signers, spec.verify_keys);
        Ok(Profile {
            name: spec.name,
            signers,
            verify_keys,
            issuer: spec.issuer,
            audience: spec.audience,
            allow_audience_override: spec.allow_audience_override,
            ttl: lifetimes.ttl,
            max_ttl: lifetimes.max_ttl,
            login_ttl: lifetimes.login_ttl,
            leeway: lifetimes.leeway,
            subject_claim,
            required_claims: spec.required_claims,
            fixed_claims: spec.claims,
            typ: spec.typ,
            login_url: spec.login_url,
            max_token_bytes: spec.max_token_bytes,
            remote_jwks: spec.remote_jwks,
            algorithms: spec.algorithms,
            lifecycle: spec.lifecycle,
        })
    }

    /// Where the profile's remote key set comes from, for a federated profile.
    pub fn remote_jwks(&self) -> Option<&str> {
        self.remote_jwks.as_deref()
    }

    /// The algorithms Verify accepts; empty: those of the profile's keys.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// The profile's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signing keys with their times, in activation order; empty for a verify-only profile.
    pub fn signers(&self) -> &[Signer] {
        &self.signers
    }

    /// The key that signs at `now` (seconds since the Unix epoch): of the keys whose signing
    /// window holds `now`, the one that started last.
    pub fn signer_at(&self, now: u64) -> Option<&Signer> {
        self.signers
            .iter()
            .rev()
            .find(|s| s.times.activate_at <= now && now < s.times.retire_at)
    }

    /// Where `signer` is in its life at `now`; a key overtaken by a later one counts as retired.
    pub fn state_of(&self, signer: &Signer, now: u64) -> KeyState {
        let state = signer.times.state_at(now);
        if state == KeyState::Active
            && self
                .signer_at(now)
                .is_some_and(|active| !Arc::ptr_eq(&active.key, &signer.key))
        {
            return KeyState::Retired;
        }
        state
    }

    /// Every key that verifies at some time, in order: signing keys, then the others.
    pub fn verify_keys(&self) -> impl Iterator<Item = &Arc<Key>> {
        self.verify_keys.iter().map(|v| &v.key)
    }

    /// Keys that verify only (never sign for this profile).
    pub fn verify_only_keys(&self) -> impl Iterator<Item = &Arc<Key>> {
        self.verify_keys
            .iter()
            .filter(|v| !self.signers.iter().any(|s| Arc::ptr_eq(&s.key, &v.key)))
            .map(|v| &v.key)
    }

    /// The public keys relying parties need at `now`: signing keys that are published, active
    /// or retired, never HMAC secrets and never keys that only verify.
    pub fn published_jwks(&self, now: u64) -> Vec<Jwk> {
        self.signers
            .iter()
            .filter(|s| {
                matches!(
                    s.times.state_at(now),
                    KeyState::Published | KeyState::Active | KeyState::Retired
                )
            })
            .filter_map(|s| s.key.public_jwk())
            .collect()
    }

    /// The issuer, if the profile sets one.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The longest lifetime a token may have.
    pub fn max_ttl(&self) -> Duration {
        self.max_ttl
    }

    /// Whether the profile has a login URL template.
    pub fn has_login_url(&self) -> bool {
        self.login_url.is_some()
    }

    /// What the token store keeps for this profile's tokens.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// How long past `exp` a token is still accepted.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// The claim that carries the subject.
    pub fn subject_claim(&self) -> &str {
        &self.subject_claim
    }
}

/// A profile's token lifetimes with the defaults applied, checked to be whole seconds and in
/// order: ttl and login_ttl at least 1s and at most max_ttl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    pub ttl: Duration,
    pub max_ttl: Duration,
    pub login_ttl: Duration,
    pub leeway: Duration,
}

impl Lifetimes {
    /// How long a key must still verify after it stops signing, in seconds: max_ttl + leeway,
    /// so every token it signed expires before it goes.
    pub fn verify_after(&self) -> u64 {
        self.max_ttl.as_secs().saturating_add(self.leeway.as_secs())
    }
}

impl ProfileSpec {
    /// The lifetimes this spec gives its tokens, defaults applied: ttl [`DEFAULT_TTL`], max_ttl
    /// the ttl, login_ttl [`DEFAULT_LOGIN_TTL`] or max_ttl if shorter.
    pub fn lifetimes(&self) -> Result<Lifetimes, ProfileError> {
        let ttl = self.ttl.unwrap_or(DEFAULT_TTL);
        let max_ttl = self.max_ttl.unwrap_or(ttl);
        let login_ttl = self
            .login_ttl
            .unwrap_or_else(|| DEFAULT_LOGIN_TTL.min(max_ttl));
        for (field, value) in [
            ("ttl", ttl),
            ("max_ttl", max_ttl),
            ("login_ttl", login_ttl),
            ("leeway", self.leeway),
        ] {
            if whole_seconds(value).is_none() {
                return Err(ProfileError::NotWholeSeconds {
                    field,
                    value: humantime::format_duration(value).to_string(),
                });
            }
        }
        for (field, value) in [("ttl", ttl), ("login_ttl", login_ttl)] {
            if value < Duration::from_secs(1) {
                return Err(ProfileError::TooShort { field });
            }
            if value > max_ttl {
                return Err(ProfileError::AboveMax {
                    field,
                    value: humantime::format_duration(value).to_string(),
                    max: humantime::format_duration(max_ttl).to_string(),
                });
            }
        }
        Ok(Lifetimes {
            ttl,
            max_ttl,
            login_ttl,
            leeway: self.leeway,
        })
    }
}

/// Signing keys can sign, the profile has some key, and, where verify_keys are listed, they
/// include every configured signing key (managed keys always verify for their profile).
fn check_keys(spec: &ProfileSpec) -> Result<(), ProfileError> {
    for signing in &spec.signing_keys {
        if !signing.key.can_sign() {
            return Err(ProfileError::SigningKeyCannotSign {
                key: signing.key.id().to_string(),
            });
        }
    }
    if spec.signing_keys.is_empty() && spec.verify_keys.is_empty() && spec.remote_jwks.is_none() {
        return Err(ProfileError::NoKeys);
    }
    check_algorithms(spec)?;
    if !spec.verify_keys.is_empty()
        && let Some(missing) = spec.signing_keys.iter().find(|s| {
            matches!(s.schedule, Schedule::File(_))
                && !spec.verify_keys.iter().any(|k| Arc::ptr_eq(k, &s.key))
        })
    {
        return Err(ProfileError::SigningKeyNotVerified(
            missing.key.id().to_string(),
        ));
    }
    Ok(())
}

/// `algorithms` lists each algorithm once and every configured key's; a federated profile is
/// verify-only and names its algorithms, issuer and audience, since it does not choose its keys.
fn check_algorithms(spec: &ProfileSpec) -> Result<(), ProfileError> {
    for (i, alg) in spec.algorithms.iter().enumerate() {
        if spec.algorithms[..i].contains(alg) {
            return Err(ProfileError::DuplicateAlgorithm(*alg));
        }
    }
    if !spec.algorithms.is_empty() {
        let keys = spec
            .verify_keys
            .iter()
            .chain(spec.signing_keys.iter().map(|s| &s.key));
        for key in keys {
            if !spec.algorithms.contains(&key.algorithm()) {
                return Err(ProfileError::KeyAlgorithmNotListed {
                    key: key.id().to_string(),
                    algorithm: key.algorithm(),
                });
            }
        }
    }
    let Some(source) = &spec.remote_jwks else {
        return Ok(());
    };
    if !spec.signing_keys.is_empty() {
        return Err(ProfileError::RemoteKeysSign(source.clone()));
    }
    if spec.algorithms.is_empty() {
        return Err(ProfileError::RemoteKeysNeedAlgorithms(source.clone()));
    }
    if spec.issuer.is_none() {
        return Err(ProfileError::RemoteKeysNeedIssuer(source.clone()));
    }
    if spec.audience.is_empty() && !spec.allow_audience_override {
        return Err(ProfileError::RemoteKeysNeedAudience(source.clone()));
    }
    Ok(())
}

/// The subject claim and the fixed, required and registered claims fit together; returns the
/// subject claim's name.
fn check_claims(spec: &ProfileSpec) -> Result<String, ProfileError> {
    let subject_claim = spec
        .subject_claim
        .clone()
        .unwrap_or_else(|| "sub".to_owned());
    if subject_claim.is_empty() {
        return Err(ProfileError::Empty {
            field: "subject_claim",
        });
    }
    if subject_claim != "sub" && REGISTERED_CLAIMS.contains(&subject_claim.as_str()) {
        return Err(ProfileError::BadSubjectClaim(subject_claim));
    }
    for claim in spec.claims.keys() {
        if REGISTERED_CLAIMS.contains(&claim.as_str()) || *claim == subject_claim {
            return Err(ProfileError::ReservedFixedClaim(claim.clone()));
        }
    }
    if let Some(issuer) = &spec.issuer
        && issuer.is_empty()
    {
        return Err(ProfileError::Empty { field: "issuer" });
    }
    if spec.audience.iter().any(String::is_empty) {
        return Err(ProfileError::Empty { field: "audience" });
    }
    if spec.required_claims.iter().any(String::is_empty) {
        return Err(ProfileError::Empty {
            field: "required_claims",
        });
    }
    for claim in &spec.required_claims {
        let never = (claim == "iss" && spec.issuer.is_none())
            || (claim == "aud" && spec.audience.is_empty() && !spec.allow_audience_override)
            || claim == "nbf";
        if never && !spec.signing_keys.is_empty() {
            return Err(ProfileError::RequiredClaimNeverSet(claim.clone()));
        }
    }
    Ok(subject_claim)
}

/// The `typ` header and the token size limit are within what the service supports.
fn check_limits(spec: &ProfileSpec) -> Result<(), ProfileError> {
    if let Some(typ) = &spec.typ {
        let ok = !typ.is_empty() && typ.len() <= 64 && typ.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(ProfileError::BadTyp(typ.clone()));
        }
    }
    if !(256..=65536).contains(&spec.max_token_bytes) {
        return Err(ProfileError::BadMaxTokenBytes(spec.max_token_bytes));
    }
    Ok(())
}

/// Every key that verifies, with its window: each signing key while it is published and not
/// removed, then the configured verify keys at all times.
fn verify_windows(signers: &[Signer], configured: Vec<Arc<Key>>) -> Vec<VerifyKey> {
    let mut verify_keys: Vec<VerifyKey> = signers
        .iter()
        .map(|s| VerifyKey {
            key: s.key.clone(),
            from: s.times.publish_at,
            until: s.times.remove_at,
        })
        .collect();
    for key in configured {
        if !verify_keys.iter().any(|v| Arc::ptr_eq(&v.key, &key)) {
            verify_keys.push(VerifyKey {
                key,
                from: 0,
                until: u64::MAX,
            });
        }
    }
    verify_keys
}

impl ProfileSpec {
    /// A spec with every optional part at its default, for `name` signed by `signing_key`.
    pub fn new(name: ProfileName, signing_key: Option<Arc<Key>>) -> ProfileSpec {
        ProfileSpec {
            name,
            signing_keys: signing_key.into_iter().map(SigningKey::always).collect(),
            verify_keys: Vec::new(),
            issuer: None,
            audience: Vec::new(),
            allow_audience_override: false,
            ttl: None,
            max_ttl: None,
            login_ttl: None,
            leeway: Duration::ZERO,
            subject_claim: None,
            required_claims: Vec::new(),
            claims: Map::new(),
            typ: None,
            login_url: None,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            remote_jwks: None,
            algorithms: Vec::new(),
            lifecycle: Lifecycle::default(),
        }
    }
}

/// Resolves each signing key's times. Configured keys hand over to the next one at its
/// not_before; every key verifies max_ttl + leeway past the end of its signing, so no token
/// outlives its key (the rule Vault adopted after hashicorp/vault#11441).
fn resolve_signers(keys: &[SigningKey], verify_after: u64, typ: Option<&str>) -> Vec<Signer> {
    let starts: Vec<u64> = keys
        .iter()
        .filter_map(|k| match k.schedule {
            Schedule::File(window) => Some(window.not_before.unwrap_or(0)),
            Schedule::Managed(_) => None,
        })
        .collect();
    let mut signers: Vec<Signer> = keys
        .iter()
        .map(|signing| Signer {
            key: signing.key.clone(),
            times: match signing.schedule {
                Schedule::Managed(times) => times,
                Schedule::File(window) => file_key_times(window, &starts, verify_after),
            },
            managed: matches!(signing.schedule, Schedule::Managed(_)),
            encoded_header: encoded_header(&signing.key, typ),
        })
        .collect();
    signers.sort_by_key(|s| (s.times.activate_at, s.times.retire_at));
    signers
}

/// A configured key signs from its not_before until its not_after or the next configured
/// key's not_before, whichever comes first. The window is never empty: `SigningWindow` ends
/// after it starts, and a handover is by construction later than the start.
fn file_key_times(window: SigningWindow, starts: &[u64], verify_after: u64) -> KeyTimes {
    let start = window.not_before.unwrap_or(0);
    let handover = starts.iter().copied().filter(|&s| s > start).min();
    let retire_at = match (window.not_after, handover) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (None, None) => u64::MAX,
    };
    KeyTimes {
        publish_at: 0,
        activate_at: start,
        retire_at,
        remove_at: retire_at.saturating_add(verify_after),
    }
}

/// base64url of the protected header `key` puts on every token: `alg`, `kid`, `typ`.
fn encoded_header(key: &Key, typ: Option<&str>) -> String {
    let mut header = BTreeMap::new();
    header.insert("alg", key.algorithm().name());
    header.insert("typ", typ.unwrap_or("JWT"));
    header.insert("kid", key.id().as_str());
    // Serializing a map of strings cannot fail.
    let json = serde_json::to_vec(&header).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// Every profile by name; built once at start-up, read-only afterwards.
#[derive(Debug, Default)]
pub struct Profiles {
    by_name: HashMap<ProfileName, Arc<Profile>>,
}

impl Profiles {
    /// Adds a profile; returns it back if the name is taken.
    pub fn insert(&mut self, profile: Profile) -> Result<(), Box<Profile>> {
        if self.by_name.contains_key(&profile.name) {
            return Err(Box::new(profile));
        }
        self.by_name.insert(profile.name.clone(), Arc::new(profile));
        Ok(())
    }

    /// The profile called `name`; an empty name means [`DEFAULT_PROFILE`] (see [`requested`]).
    pub fn get(&self, name: &str) -> Option<&Arc<Profile>> {
        self.by_name.get(requested(name))
    }

    /// All profiles, sorted by name.
    pub fn sorted(&self) -> Vec<&Arc<Profile>> {
        let mut all: Vec<_> = self.by_name.values().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// How many profiles there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}
