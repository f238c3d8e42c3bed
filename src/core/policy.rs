//! Who may call what. A [`Caller`] is one `[[callers]]` entry, checked once: an identity, the
//! RPCs and profiles it may use, and the limits on what it may ask for. [`Policy::identify`]
//! turns a proven credential into a caller; [`Caller::decide`] is the one decision for a call.
//!
//! Pure: no clock, no wire, no rate state (rates are counted where time is read, in the API
//! layer); the only cryptography is the SHA-256 of a presented API key.

use std::fmt;
use std::time::Duration;

use subtle::ConstantTimeEq as _;

use crate::core::profile::{Profile, requested};

/// The longest caller text (a profile or claim name) a denial repeats.
const SHOWN: usize = 64;

/// Every RPC a policy can grant, in `TokenAuthority` and `KeyAdmin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rpc {
    Issue,
    Verify,
    LoginUrl,
    Jwks,
    IssuePair,
    Refresh,
    Revoke,
    ListKeys,
    RotateKey,
    Reload,
}

impl Rpc {
    /// The `TokenAuthority` RPCs, granted as `RPC:PROFILE`.
    pub const TOKEN: [Rpc; 7] = [
        Rpc::Issue,
        Rpc::Verify,
        Rpc::LoginUrl,
        Rpc::Jwks,
        Rpc::IssuePair,
        Rpc::Refresh,
        Rpc::Revoke,
    ];
    /// The `KeyAdmin` RPCs, granted as `KeyAdmin/RPC` or `KeyAdmin/*`.
    pub const ADMIN: [Rpc; 3] = [Rpc::ListKeys, Rpc::RotateKey, Rpc::Reload];

    /// The RPC's name as the proto spells it.
    pub fn name(self) -> &'static str {
        match self {
            Rpc::Issue => "Issue",
            Rpc::Verify => "Verify",
            Rpc::LoginUrl => "LoginUrl",
            Rpc::Jwks => "Jwks",
            Rpc::IssuePair => "IssuePair",
            Rpc::Refresh => "Refresh",
            Rpc::Revoke => "Revoke",
            Rpc::ListKeys => "ListKeys",
            Rpc::RotateKey => "RotateKey",
            Rpc::Reload => "Reload",
        }
    }

    /// Whether the RPC belongs to `KeyAdmin`.
    pub fn is_admin(self) -> bool {
        Rpc::ADMIN.contains(&self)
    }

    /// Whether the RPC signs something for a subject the caller names (and so has a subject,
    /// claims and a ttl). Refresh only renews what a refresh token already carries.
    pub fn issues(self) -> bool {
        matches!(self, Rpc::Issue | Rpc::LoginUrl | Rpc::IssuePair)
    }

    fn named(name: &str, among: &[Rpc]) -> Option<Rpc> {
        among.iter().copied().find(|rpc| rpc.name() == name)
    }
}

impl fmt::Display for Rpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_admin() {
            write!(f, "KeyAdmin/{}", self.name())
        } else {
            f.write_str(self.name())
        }
    }
}

/// One `allow` entry: `Issue:default`, `Verify:*`, `*:sso`, `KeyAdmin/*`, `KeyAdmin/RotateKey`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// `None`: every RPC of the service the entry names.
    rpc: Option<Rpc>,
    admin: bool,
    /// `None`: every profile.
    profile: Option<String>,
}

impl Grant {
    /// Parses one `allow` entry; the error says what to write instead.
    pub fn parse(text: &str) -> Result<Grant, String> {
        if let Some(rest) = text.strip_prefix("KeyAdmin/") {
            if rest.contains(':') {
                return Err(format!(
                    "{text:?}: a KeyAdmin grant covers every profile; write \"KeyAdmin/{}\"",
                    rest.split(':').next().unwrap_or("*")
                ));
            }
            let rpc = match rest {
                "*" => None,
                name => Some(Rpc::named(name, &Rpc::ADMIN).ok_or_else(|| {
                    format!(
                        "{text:?}: unknown KeyAdmin RPC {name:?}; KeyAdmin has ListKeys, RotateKey and Reload (or * for all)"
                    )
                })?),
            };
            return Ok(Grant {
                rpc,
                admin: true,
                profile: None,
            });
        }
        let Some((rpc, profile)) = text.split_once(':') else {
            return Err(format!(
                "{text:?}: write RPC:PROFILE (\"Issue:default\", \"Verify:*\") or KeyAdmin/RPC (\"KeyAdmin/*\")"
            ));
        };
        let rpc = match rpc {
            "*" => None,
            name => Some(Rpc::named(name, &Rpc::TOKEN).ok_or_else(|| {
                format!(
                    "{text:?}: unknown RPC {name:?}; TokenAuthority has Issue, Verify, LoginUrl and Jwks (or * for all), KeyAdmin is granted as \"KeyAdmin/*\""
                )
            })?),
        };
        let profile = match profile {
            "*" => None,
            "" => {
                return Err(format!(
                    "{text:?}: the profile is empty; write a profile name or *"
                ));
            }
            name => Some(name.to_owned()),
        };
        Ok(Grant {
            rpc,
            admin: false,
            profile,
        })
    }

    /// The profile the grant names, if it names one (for checking that it exists).
    pub fn profile(&self) -> Option<&str> {
        self.profile.as_deref()
    }

    /// Whether the grant covers any `KeyAdmin` RPC.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    fn covers(&self, rpc: Rpc, profile: &str) -> bool {
        self.admin == rpc.is_admin()
            && self.rpc.is_none_or(|r| r == rpc)
            && (self.admin || self.profile.as_deref().is_none_or(|p| p == profile))
    }
}

/// How a caller proves who it is; exactly one per caller.
#[derive(Clone, PartialEq, Eq)]
pub enum Identity {
    /// A client certificate's URI SAN, a SPIFFE ID.
    SpiffeId(String),
    /// A client certificate's DNS SAN (used when it has no URI SAN).
    DnsName(String),
    /// The subject of a bearer token that `[server] caller_profile` verified.
    TokenSubject(String),
    /// The SHA-256 of an API key sent as `x-api-key`.
    ApiKeySha256([u8; 32]),
}

impl Identity {
    /// The config key that sets this kind of identity.
    pub fn kind(&self) -> &'static str {
        match self {
            Identity::SpiffeId(_) => "spiffe_id",
            Identity::DnsName(_) => "dns_name",
            Identity::TokenSubject(_) => "token_subject",
            Identity::ApiKeySha256(_) => "api_key_sha256",
        }
    }
}

/// Logs and audit records show an API key as the first bytes of its configured digest (already
/// in the configuration file), never the key.
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::SpiffeId(id) => f.write_str(id),
            Identity::DnsName(name) => write!(f, "dns:{name}"),
            Identity::TokenSubject(sub) => write!(f, "token:{sub}"),
            Identity::ApiKeySha256(digest) => {
                f.write_str("api-key:sha256:")?;
                digest[..6].iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({self})", self.kind())
    }
}

/// What a `[[callers]]` entry says, before it is checked.
#[derive(Clone, Debug)]
pub struct CallerSpec {
    pub name: String,
    pub identity: Identity,
    /// The `allow` entries as written.
    pub allow: Vec<String>,
    /// `subjects`: a regular expression every Issue/LoginUrl subject must match.
    pub subjects: Option<String>,
    /// `claims`: the only extra claims the caller may set; `None` leaves claims to the profile.
    pub claims: Option<Vec<String>>,
    pub max_ttl: Option<Duration>,
}

/// A checked `[[callers]]` entry.
#[derive(Clone, Debug)]
pub struct Caller {
    name: String,
    identity: Identity,
    allow: Vec<Grant>,
    subjects: Option<regex::Regex>,
    claims: Option<Vec<String>>,
    max_ttl: Option<Duration>,
}

/// A `[[callers]]` entry that cannot be used; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    #[error("name is empty")]
    EmptyName,
    #[error("allow is empty: the caller could call nothing")]
    NothingAllowed,
    #[error("allow entry {0}")]
    Allow(String),
    #[error("allow entry {entry:?} names profile {profile:?}, which does not exist")]
    UnknownProfile { entry: String, profile: String },
    #[error("subjects {pattern:?} is not a regular expression: {reason}")]
    Subjects { pattern: String, reason: String },
    #[error("max_ttl must be at least one second")]
    MaxTtl,
    #[error("claims lists {0:?} twice")]
    DuplicateClaim(String),
}

impl Caller {
    /// Checks a spec against the configured `profiles`: every `allow` entry parses and names
    /// an existing profile (or `*`), the subject pattern compiles.
    pub fn new(spec: CallerSpec, profiles: &[&str]) -> Result<Caller, CallerError> {
        if spec.name.trim().is_empty() {
            return Err(CallerError::EmptyName);
        }
        if spec.allow.is_empty() {
            return Err(CallerError::NothingAllowed);
        }
        let mut allow = Vec::new();
        for entry in &spec.allow {
            let grant = Grant::parse(entry).map_err(CallerError::Allow)?;
            if let Some(profile) = grant.profile()
                && !profiles.contains(&profile)
            {
                return Err(CallerError::UnknownProfile {
                    entry: entry.clone(),
                    profile: profile.to_owned(),
                });
            }
            allow.push(grant);
        }
        let subjects = spec
            .subjects
            .map(|pattern| {
                regex::Regex::new(&pattern).map_err(|e| CallerError::Subjects {
                    pattern: pattern.clone(),
                    reason: e.to_string().lines().last().unwrap_or_default().to_owned(),
                })
            })
            .transpose()?;
        if let Some(claims) = &spec.claims {
            for (i, claim) in claims.iter().enumerate() {
                if claims[..i].contains(claim) {
                    return Err(CallerError::DuplicateClaim(claim.clone()));
                }
            }
        }
        if spec.max_ttl.is_some_and(|t| t < Duration::from_secs(1)) {
            return Err(CallerError::MaxTtl);
        }
        Ok(Caller {
            name: spec.name,
            identity: spec.identity,
            allow,
            subjects,
            claims: spec.claims,
            max_ttl: spec.max_ttl,
        })
    }

    /// The caller's name, as logs, audit records and answers show it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How the caller proves who it is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Whether any `allow` entry covers a `KeyAdmin` RPC.
    pub fn may_administer(&self) -> bool {
        self.allow.iter().any(Grant::is_admin)
    }

    /// Whether the caller may make `call`: a grant for its RPC and profile first, then, for
    /// Issue and LoginUrl, the subject pattern, the claims list and the ttl cap.
    pub fn decide(&self, call: &Call<'_>) -> Result<(), Forbidden> {
        let profile = if call.rpc.is_admin() {
            call.profile
        } else {
            requested(call.profile)
        };
        let denied = |denial| Forbidden {
            caller: self.name.clone(),
            rpc: call.rpc,
            profile: cut(profile),
            denial,
        };
        if !self.allow.iter().any(|g| g.covers(call.rpc, profile)) {
            return Err(denied(Denial::NotGranted));
        }
        if !call.rpc.issues() {
            return Ok(());
        }
        if let Some(pattern) = &self.subjects
            && !pattern.is_match(call.subject)
        {
            return Err(denied(Denial::Subject {
                pattern: pattern.as_str().to_owned(),
            }));
        }
        if let Some(allowed) = &self.claims
            && let Some(name) = call
                .claims
                .iter()
                .find(|c| !allowed.iter().any(|a| a == *c))
        {
            return Err(denied(Denial::Claim { name: cut(name) }));
        }
        if let (Some(cap), Some(ttl)) = (self.max_ttl, call.ttl)
            && ttl > cap
        {
            return Err(denied(Denial::Ttl {
                asked: ttl.as_secs(),
                cap: cap.as_secs(),
            }));
        }
        Ok(())
    }
}

/// One call as the policy sees it.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub rpc: Rpc,
    /// The profile as requested (empty means `default`); empty for ListKeys and Reload.
    pub profile: &'a str,
    /// Issue/LoginUrl: the subject asked for.
    pub subject: &'a str,
    /// Issue/LoginUrl: the names of the extra claims asked for.
    pub claims: &'a [&'a str],
    /// Issue/LoginUrl: the lifetime the token would get ([`asked_ttl`]).
    pub ttl: Option<Duration>,
}

impl<'a> Call<'a> {
    /// A call with no subject, claims or ttl (Verify, Jwks, KeyAdmin).
    pub fn of(rpc: Rpc, profile: &'a str) -> Call<'a> {
        Call {
            rpc,
            profile,
            subject: "",
            claims: &[],
            ttl: None,
        }
    }
}

/// The lifetime an Issue or LoginUrl call would give its token: the one asked for, else the
/// profile's `ttl` (Issue) or `login_ttl` (LoginUrl). A cap on what a caller may ask for must
/// also hold for what it gets by asking for nothing.
pub fn asked_ttl(profile: &Profile, rpc: Rpc, asked: Option<Duration>) -> Duration {
    asked.unwrap_or(if rpc == Rpc::LoginUrl {
        profile.login_ttl
    } else {
        profile.ttl
    })
}

/// A known caller asked for something its entry does not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("caller {caller:?} may not call {}: {denial}", self.what())]
pub struct Forbidden {
    pub caller: String,
    pub rpc: Rpc,
    /// The profile asked for, cut to 64 characters; empty for ListKeys and Reload.
    pub profile: String,
    pub denial: Denial,
}

impl Forbidden {
    fn what(&self) -> String {
        if self.profile.is_empty() {
            self.rpc.to_string()
        } else {
            format!("{} on profile {:?}", self.rpc, self.profile)
        }
    }
}

/// The rule a call broke.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("no allow entry grants it")]
    NotGranted,
    #[error("the subject does not match its subjects pattern {pattern:?}")]
    Subject { pattern: String },
    #[error("claim {name:?} is not in its claims list")]
    Claim { name: String },
    #[error("ttl {asked}s is above its max_ttl of {cap}s")]
    Ttl { asked: u64, cap: u64 },
}

impl Denial {
    /// The rule's name in audit records.
    pub fn rule(&self) -> &'static str {
        match self {
            Denial::NotGranted => "allow",
            Denial::Subject { .. } => "subjects",
            Denial::Claim { .. } => "claims",
            Denial::Ttl { .. } => "max_ttl",
        }
    }
}

/// A credential a call presented and the transport or a token check proved.
#[derive(Clone, Copy, Debug)]
pub enum Credential<'a> {
    /// A verified client certificate's subject alternative names.
    Certificate {
        uri_sans: &'a [String],
        dns_sans: &'a [String],
    },
    /// The subject of a verified bearer token.
    TokenSubject(&'a str),
    /// The API key as sent.
    ApiKey(&'a [u8]),
}

/// Every configured caller; names and identities are unique.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    callers: Vec<Caller>,
}

/// Two `[[callers]]` entries that cannot both exist.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("caller {0:?}: the name is used by another caller; names must be unique")]
    DuplicateName(String),
    #[error(
        "caller {second:?}: {kind} is also the identity of caller {first:?}; identities must be unique"
    )]
    DuplicateIdentity {
        first: String,
        second: String,
        kind: &'static str,
    },
}

impl Policy {
    /// The callers, refusing duplicate names or identities.
    pub fn new(callers: Vec<Caller>) -> Result<Policy, PolicyError> {
        for (i, caller) in callers.iter().enumerate() {
            for earlier in &callers[..i] {
                if earlier.name == caller.name {
                    return Err(PolicyError::DuplicateName(caller.name.clone()));
                }
                if earlier.identity == caller.identity {
                    return Err(PolicyError::DuplicateIdentity {
                        first: earlier.name.clone(),
                        second: caller.name.clone(),
                        kind: caller.identity.kind(),
                    });
                }
            }
        }
        Ok(Policy { callers })
    }

    /// Whether no callers are configured (every call is then anonymous).
    pub fn is_empty(&self) -> bool {
        self.callers.is_empty()
    }

    /// The callers in configuration order.
    pub fn callers(&self) -> &[Caller] {
        &self.callers
    }

    /// The caller a proven credential belongs to, with its index in [`Policy::callers`] and the
    /// identity it matched. A certificate is its first URI SAN (a SPIFFE ID) if it has one,
    /// else the first of its DNS SANs that names a caller. API keys are compared as SHA-256
    /// digests in constant time, against every caller.
    pub fn identify(&self, credential: Credential<'_>) -> Option<(usize, &Caller)> {
        let found = match credential {
            Credential::Certificate { uri_sans, dns_sans } => match uri_sans.first() {
                Some(uri) => self.position(|id| matches!(id, Identity::SpiffeId(s) if s == uri)),
                None => dns_sans.iter().find_map(|dns| {
                    self.position(
                        |id| matches!(id, Identity::DnsName(s) if s.eq_ignore_ascii_case(dns)),
                    )
                }),
            },
            Credential::TokenSubject(sub) => {
                self.position(|id| matches!(id, Identity::TokenSubject(s) if s == sub))
            }
            Credential::ApiKey(key) => {
                let digest = ring::digest::digest(&ring::digest::SHA256, key);
                let mut found = None;
                for (i, caller) in self.callers.iter().enumerate() {
                    if let Identity::ApiKeySha256(expected) = &caller.identity
                        && bool::from(expected.ct_eq(digest.as_ref()))
                    {
                        found = Some(i);
                    }
                }
                found
            }
        };
        found.map(|i| (i, &self.callers[i]))
    }

    fn position(&self, matches: impl Fn(&Identity) -> bool) -> Option<usize> {
        self.callers.iter().position(|c| matches(&c.identity))
    }
}

/// Caller text cut to [`SHOWN`] characters, so a denial never repeats a huge name.
fn cut(text: &str) -> String {
    text.chars().take(SHOWN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(identity: Identity, allow: &[&str]) -> CallerSpec {
        CallerSpec {
            name: "billing".into(),
            identity,
            allow: allow.iter().map(|s| s.to_string()).collect(),
            subjects: None,
            claims: None,
            max_ttl: None,
        }
    }

    fn checked(spec: CallerSpec) -> Caller {
        Caller::new(spec, &["default", "sso"]).unwrap()
    }

    fn issue<'a>(profile: &'a str, subject: &'a str, claims: &'a [&'a str], ttl: u64) -> Call<'a> {
        Call {
            rpc: Rpc::Issue,
            profile,
            subject,
            claims,
            ttl: Some(Duration::from_secs(ttl)),
        }
    }

    fn spiffe() -> Identity {
        Identity::SpiffeId("spiffe://example.org/billing".into())
    }

    #[test]
    fn a_grant_covers_exactly_its_rpc_and_profile() {
        let c = checked(caller(spiffe(), &["Issue:default", "Verify:*"]));
        assert!(
            c.decide(&issue("", "u", &[], 60)).is_ok(),
            "empty is default"
        );
        assert!(c.decide(&Call::of(Rpc::Verify, "sso")).is_ok());
        let e = c.decide(&issue("sso", "u", &[], 60)).unwrap_err();
        assert_eq!(e.denial, Denial::NotGranted);
        assert_eq!(
            e.to_string(),
            "caller \"billing\" may not call Issue on profile \"sso\": no allow entry grants it"
        );
        assert!(c.decide(&Call::of(Rpc::Jwks, "default")).is_err());
        assert!(c.decide(&Call::of(Rpc::ListKeys, "")).is_err());
    }

    #[test]
    fn key_admin_needs_its_own_grant_and_a_token_wildcard_does_not_give_it() {
        let tokens = checked(caller(spiffe(), &["*:*"]));
        let e = tokens
            .decide(&Call::of(Rpc::RotateKey, "default"))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "caller \"billing\" may not call KeyAdmin/RotateKey on profile \"default\": no allow entry grants it"
        );
        assert!(!tokens.may_administer());
        let rotate = checked(caller(spiffe(), &["KeyAdmin/RotateKey"]));
        assert!(rotate.decide(&Call::of(Rpc::RotateKey, "any")).is_ok());
        assert!(rotate.decide(&Call::of(Rpc::Reload, "")).is_err());
        assert!(rotate.decide(&Call::of(Rpc::Issue, "default")).is_err());
        let all = checked(caller(spiffe(), &["KeyAdmin/*"]));
        assert!(
            Rpc::ADMIN
                .iter()
                .all(|rpc| all.decide(&Call::of(*rpc, "")).is_ok())
        );
    }

    #[test]
    fn subjects_claims_and_ttl_bind_issue_and_login_url_only() {
        let mut spec = caller(spiffe(), &["Issue:*", "LoginUrl:*", "Verify:*"]);
        spec.subjects = Some("^user-[0-9]+$".into());
        spec.claims = Some(vec!["role".into(), "email".into()]);
        spec.max_ttl = Some(Duration::from_secs(600));
        let c = checked(spec);
        assert!(
            c.decide(&issue("default", "user-7", &["role"], 600))
                .is_ok()
        );
        let subject = c.decide(&issue("default", "admin", &[], 60)).unwrap_err();
        assert_eq!(subject.denial.rule(), "subjects");
        assert!(subject.to_string().contains("^user-[0-9]+$"), "{subject}");
        assert!(!subject.to_string().contains("admin"), "{subject}");
        let claim = c
            .decide(&issue("default", "user-7", &["role", "groups"], 60))
            .unwrap_err();
        assert_eq!(
            claim.denial,
            Denial::Claim {
                name: "groups".into()
            }
        );
        let ttl = c.decide(&issue("default", "user-7", &[], 601)).unwrap_err();
        assert_eq!(
            ttl.denial,
            Denial::Ttl {
                asked: 601,
                cap: 600
            }
        );
        let mut login = issue("sso", "nobody", &[], 9999);
        login.rpc = Rpc::LoginUrl;
        assert_eq!(c.decide(&login).unwrap_err().denial.rule(), "subjects");
        assert!(c.decide(&Call::of(Rpc::Verify, "sso")).is_ok());
    }

    #[test]
    fn bad_entries_say_what_to_write() {
        let e = |allow: &str| {
            Caller::new(caller(spiffe(), &[allow]), &["default"])
                .unwrap_err()
                .to_string()
        };
        assert!(e("Sign:default").contains("unknown RPC \"Sign\""));
        assert!(e("Issue").contains("write RPC:PROFILE"));
        assert!(e("KeyAdmin/Rotate").contains("unknown KeyAdmin RPC"));
        assert!(e("KeyAdmin/RotateKey:default").contains("covers every profile"));
        assert_eq!(
            e("Issue:nope"),
            "allow entry \"Issue:nope\" names profile \"nope\", which does not exist"
        );
        let mut spec = caller(spiffe(), &["Issue:*"]);
        spec.subjects = Some("user-(".into());
        let msg = Caller::new(spec, &[]).unwrap_err().to_string();
        assert!(
            msg.starts_with("subjects \"user-(\" is not a regular expression"),
            "{msg}"
        );
    }

    #[test]
    fn identities_find_their_caller_and_nothing_else() {
        let key = b"k3y-of-the-reports-service";
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, key)
            .as_ref()
            .try_into()
            .unwrap();
        let spec = |name: &str, identity| CallerSpec {
            name: name.into(),
            ..caller(identity, &["Verify:*"])
        };
        let policy = Policy::new(vec![
            checked(spec("billing", spiffe())),
            checked(spec("ops", Identity::DnsName("ops.internal".into()))),
            checked(spec("reports", Identity::ApiKeySha256(digest))),
            checked(spec(
                "k8s",
                Identity::TokenSubject("system:serviceaccount:a:b".into()),
            )),
        ])
        .unwrap();
        let name = |c: Credential<'_>| policy.identify(c).map(|(_, c)| c.name().to_owned());
        let uris = ["spiffe://example.org/billing".to_owned()];
        let dns = ["other.internal".to_owned(), "ops.internal".to_owned()];
        assert_eq!(
            name(Credential::Certificate {
                uri_sans: &uris,
                dns_sans: &dns
            })
            .as_deref(),
            Some("billing"),
            "a URI SAN wins over DNS SANs"
        );
        assert_eq!(
            name(Credential::Certificate {
                uri_sans: &[],
                dns_sans: &dns
            })
            .as_deref(),
            Some("ops")
        );
        assert_eq!(name(Credential::ApiKey(key)).as_deref(), Some("reports"));
        assert_eq!(
            name(Credential::ApiKey(b"k3y-of-the-reports-servicf")),
            None
        );
        assert_eq!(
            name(Credential::TokenSubject("system:serviceaccount:a:b")).as_deref(),
            Some("k8s")
        );
        assert_eq!(
            name(Credential::TokenSubject("spiffe://example.org/billing")),
            None
        );
        assert_eq!(
            policy.callers()[2].identity().to_string().len(),
            "api-key:sha256:".len() + 12
        );
    }

    #[test]
    fn duplicate_names_and_identities_are_refused() {
        let a = checked(caller(spiffe(), &["Verify:*"]));
        let mut b = a.clone();
        b.name = "other".into();
        let e = Policy::new(vec![a.clone(), b]).unwrap_err().to_string();
        assert!(
            e.contains("spiffe_id is also the identity of caller \"billing\""),
            "{e}"
        );
        let mut c = a.clone();
        c.identity = Identity::DnsName("x".into());
        let e = Policy::new(vec![a, c]).unwrap_err().to_string();
        assert!(e.contains("names must be unique"), "{e}");
    }
}
