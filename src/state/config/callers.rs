//! `[[callers]]`, `[server] caller_profile` and `[audit]` → the checked [`Callers`] and
//! [`Audit`] settings. Each entry becomes a `core::policy::Caller` (which owns the rules);
//! this file reads the identity, the rate and the audit key file, and names the entry in
//! every message.

use std::fmt;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::raw::{AuditSubjects, RawAudit, RawCaller};
use super::{Writes, duration};
use crate::core::audit::{AuditKey, MIN_KEY_BYTES};
use crate::core::policy::{Caller, CallerSpec, Identity, Policy};
use crate::state::files;

/// Where the generated audit key lives in the data directory, unless `[audit] key_file` says.
pub const AUDIT_KEY_FILE: &str = "audit.key";

/// Every configured caller, how bearer tokens are verified, and each caller's rate.
#[derive(Debug, Default)]
pub struct Callers {
    policy: Policy,
    /// By the index of the caller in `policy`.
    rates: Vec<Option<RateLimit>>,
    caller_profile: Option<String>,
}

impl Callers {
    /// The callers and their rules.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Whether any caller is configured; without one every call is anonymous.
    pub fn is_empty(&self) -> bool {
        self.policy.is_empty()
    }

    /// The profile that verifies bearer tokens, if bearer tokens are accepted.
    pub fn caller_profile(&self) -> Option<&str> {
        self.caller_profile.as_deref()
    }

    /// The rate of the caller at `index` in [`Callers::policy`], if it has one.
    pub fn rate(&self, index: usize) -> Option<&RateLimit> {
        self.rates.get(index).and_then(Option::as_ref)
    }
}

/// A caller's `rate` and `burst` for Issue and LoginUrl, and the calls it has made.
pub struct RateLimit {
    text: String,
    limiter: DefaultDirectRateLimiter,
}

impl RateLimit {
    /// Takes one call from the budget; `false` when the caller is over its rate.
    pub fn take(&self) -> bool {
        self.limiter.check().is_ok()
    }

    /// The rate as configured ("200/s, burst 200").
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RateLimit({})", self.text)
    }
}

/// How audit records write subjects.
#[derive(Debug)]
pub struct Audit {
    /// `None` when subjects are written plain.
    key: Option<AuditKey>,
}

impl Audit {
    /// The audit field and value for `subject`: `subject_hmac` (hex) unless subjects are
    /// configured plain.
    pub fn subject(&self, subject: &str) -> (&'static str, String) {
        match &self.key {
            Some(key) => ("subject_hmac", key.subject(subject)),
            None => ("subject", subject.to_owned()),
        }
    }
}

/// Checks every `[[callers]]` entry against the configured `profiles` and `caller_profile`.
pub(super) fn build(
    raw: &[RawCaller],
    caller_profile: Option<&str>,
    profiles: &[&str],
    origin: &str,
) -> anyhow::Result<Callers> {
    if let Some(name) = caller_profile
        && !profiles.contains(&name)
    {
        bail!(
            "{origin}: server.caller_profile {name:?}: no such profile; it names the profile that verifies callers' bearer tokens"
        );
    }
    let mut callers = Vec::new();
    let mut rates = Vec::new();
    for (i, entry) in raw.iter().enumerate() {
        let in_entry = || format!("{origin}: callers[{i}] {:?}", entry.name);
        let identity = identity(entry).with_context(in_entry)?;
        if matches!(identity, Identity::TokenSubject(_)) && caller_profile.is_none() {
            return Err(anyhow!(
                "token_subject needs [server] caller_profile, the profile that verifies bearer tokens"
            ))
            .with_context(in_entry);
        }
        let max_ttl = entry
            .max_ttl
            .as_deref()
            .map(|t| duration(Some(t), Duration::ZERO).context("max_ttl"))
            .transpose()
            .with_context(in_entry)?;
        let spec = CallerSpec {
            name: entry.name.clone(),
            identity,
            allow: entry.allow.clone(),
            subjects: entry.subjects.clone(),
            claims: entry.claims.clone(),
            max_ttl,
        };
        callers.push(Caller::new(spec, profiles).with_context(in_entry)?);
        let rate = match &entry.rate {
            Some(text) => Some(rate(text, entry.burst).with_context(in_entry)?),
            None if entry.burst.is_some() => {
                return Err(anyhow!("burst needs a rate")).with_context(in_entry);
            }
            None => None,
        };
        rates.push(rate);
    }
    let policy = Policy::new(callers).map_err(|e| anyhow!("{origin}: {e}"))?;
    Ok(Callers {
        policy,
        rates,
        caller_profile: caller_profile.map(str::to_owned),
    })
}

/// The one identity of an entry.
fn identity(entry: &RawCaller) -> anyhow::Result<Identity> {
    let given: Vec<(&str, &String)> = [
        ("spiffe_id", &entry.spiffe_id),
        ("dns_name", &entry.dns_name),
        ("token_subject", &entry.token_subject),
        ("api_key_sha256", &entry.api_key_sha256),
    ]
    .into_iter()
    .filter_map(|(key, value)| value.as_ref().map(|v| (key, v)))
    .collect();
    let [(key, value)] = given.as_slice() else {
        bail!(
            "set exactly one of spiffe_id, dns_name, token_subject or api_key_sha256, not {}",
            if given.is_empty() {
                "none".to_owned()
            } else {
                given
                    .iter()
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(" and ")
            }
        );
    };
    if value.trim().is_empty() {
        bail!("{key} is empty");
    }
    Ok(match *key {
        "spiffe_id" => {
            if !value.starts_with("spiffe://") {
                bail!("spiffe_id {value:?} must start with spiffe://");
            }
            Identity::SpiffeId((*value).clone())
        }
        "dns_name" => Identity::DnsName(value.to_ascii_lowercase()),
        "token_subject" => Identity::TokenSubject((*value).clone()),
        _ => Identity::ApiKeySha256(digest(value)?),
    })
}

/// A SHA-256 digest written as 64 hex characters.
fn digest(text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex(text.trim())
        .filter(|b| b.len() == 32)
        .ok_or_else(|| {
            anyhow!(
                "api_key_sha256 must be the 64 hex characters of the key's SHA-256 (printf %s \"$KEY\" | sha256sum), never the key itself"
            )
        })?;
    let mut digest = [0; 32];
    digest.copy_from_slice(&bytes);
    Ok(digest)
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `"200/s"` (or `/m`, `/h`) and an optional burst, which defaults to a second's worth.
fn rate(text: &str, burst: Option<u32>) -> anyhow::Result<RateLimit> {
    let bad = || {
        anyhow!(
            "rate {text:?}: write calls per second, minute or hour, such as \"200/s\", \"30/m\" or \"1000/h\""
        )
    };
    let (count, unit) = text.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let count = NonZeroU32::new(count).ok_or_else(bad)?;
    let (quota, seconds) = match unit.trim() {
        "s" => (Quota::per_second(count), 1),
        "m" => (Quota::per_minute(count), 60),
        "h" => (Quota::per_hour(count), 3600),
        _ => return Err(bad()),
    };
    let burst = match burst {
        Some(b) => NonZeroU32::new(b).ok_or_else(|| anyhow!("burst must be at least 1"))?,
        None => NonZeroU32::new(count.get().div_ceil(seconds)).unwrap_or(NonZeroU32::MIN),
    };
    Ok(RateLimit {
        text: format!("{text}, burst {burst}"),
        limiter: RateLimiter::direct(quota.allow_burst(burst)),
    })
}

/// The `[audit]` settings; the key is read from `key_file`, or from the data directory's
/// `audit.key`, generated there (0600) the first time.
pub(super) fn audit(
    raw: &RawAudit,
    data_dir: &Path,
    origin: &str,
    writes: Writes,
) -> anyhow::Result<Audit> {
    if raw.subjects == AuditSubjects::Plain {
        return Ok(Audit { key: None });
    }
    let (path, explicit): (PathBuf, bool) = match &raw.key_file {
        Some(file) => (data_dir.join(file), true),
        None => (data_dir.join(AUDIT_KEY_FILE), false),
    };
    let field = if explicit {
        "audit.key_file"
    } else {
        "the audit key"
    };
    let in_file = || format!("{origin}: {field} {}", path.display());
    let bytes = match std::fs::read_to_string(&path) {
        Ok(text) => hex(text.trim())
            .ok_or_else(|| anyhow!("must hold the key as hex text"))
            .with_context(in_file)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            generate(&path, writes).with_context(in_file)?
        }
        Err(e) => return Err(e).context("cannot read it").with_context(in_file),
    };
    let key = AuditKey::new(&bytes)
        .ok_or_else(|| anyhow!("the key must be at least {MIN_KEY_BYTES} bytes"))
        .with_context(in_file)?;
    Ok(Audit { key: Some(key) })
}

/// A new random audit key, written as hex to `path` unless writes are forbidden.
fn generate(path: &Path, writes: Writes) -> anyhow::Result<Vec<u8>> {
    use ring::rand::SecureRandom as _;
    let mut bytes = vec![0; MIN_KEY_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow!("the system random source failed"))?;
    if writes == Writes::Allowed {
        let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        files::write_private(path, format!("{text}\n").as_bytes())
            .context("cannot write the generated key")?;
        tracing::info!(path = %path.display(), "audit key generated");
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_bursts_a_second_s_worth_unless_told_and_then_refuses() {
        assert_eq!(rate("200/s", None).unwrap().text(), "200/s, burst 200");
        assert_eq!(rate("90/m", None).unwrap().text(), "90/m, burst 2");
        assert_eq!(rate("10/h", None).unwrap().text(), "10/h, burst 1");
        let limited = rate("1/h", Some(3)).unwrap();
        assert!((0..3).all(|_| limited.take()));
        assert!(
            !limited.take(),
            "the fourth call within the hour is over the rate"
        );
        for bad in ["0/s", "200", "200/d", "x/s", "-1/s"] {
            assert!(rate(bad, None).is_err(), "{bad}");
        }
        assert!(rate("1/s", Some(0)).is_err());
    }

    #[test]
    fn an_api_key_digest_is_64_hex_characters() {
        let hex64 = "ab".repeat(32);
        assert_eq!(digest(&hex64).unwrap(), [0xab; 32]);
        assert_eq!(digest(&hex64.to_uppercase()).unwrap(), [0xab; 32]);
        for bad in [
            "ab".repeat(31),
            "zz".repeat(32),
            "the-key-itself".to_owned(),
        ] {
            let e = digest(&bad).unwrap_err().to_string();
            assert!(e.contains("never the key itself"), "{e}");
            assert!(!e.contains(&bad), "the value is not repeated: {e}");
        }
    }
}
