//! Prometheus metrics, served as `GET /metrics` on the HTTP listener: calls and their latency,
//! counted as they finish; key states, rotation deadlines, reloads and build info, read from
//! the live state at each scrape.
//!
//! Every label value comes from the service, never from a caller: the profile label is a
//! configured profile's name or `(unknown)`, reasons are fixed codes, so a caller cannot make
//! new series.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::error::ApiError;
use crate::core::profile::{self, Profile};
use crate::core::rotation::KeyState;
use crate::proto;
use crate::state::live::{Live, Snapshot};

/// The `profile` label of a call naming a profile that does not exist.
pub const UNKNOWN_PROFILE: &str = "(unknown)";

/// The registry of one server and the call metrics its services update.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    latency: Family<RpcLabel, Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    rpc: &'static str,
    profile: String,
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabel {
    rpc: &'static str,
}

/// How a call ended, in the words of the `outcome` and `reason` labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A token or login link was issued, or a JWKS answered.
    Ok,
    /// A token verified.
    Valid,
    /// A token was refused; the reason is the `VerifyFailure` in lower case without its prefix.
    Refused(proto::VerifyFailure),
    /// The call failed with a gRPC error of this kind.
    Error(crate::api::error::Kind),
}

impl Outcome {
    /// The outcome of a call that answered `result`.
    pub fn of<T>(result: &Result<T, ApiError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Error(e.kind()),
        }
    }

    /// The outcome of a `Verify` call: valid, refused with its reason, or an error.
    pub fn of_verify(result: &Result<proto::VerifyResponse, ApiError>) -> Outcome {
        match result {
            Ok(answer) if answer.valid => Outcome::Valid,
            Ok(answer) => Outcome::Refused(answer.failure()),
            Err(e) => Outcome::Error(e.kind()),
        }
    }

    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Outcome::Ok => ("ok", ""),
            Outcome::Valid => ("valid", ""),
            Outcome::Refused(failure) => ("refused", refusal_reason(failure)),
            Outcome::Error(kind) => ("error", kind.as_str()),
        }
    }
}

fn refusal_reason(failure: proto::VerifyFailure) -> &'static str {
    use proto::VerifyFailure as F;
    match failure {
        F::Unspecified => "unspecified",
        F::Malformed => "malformed",
        F::AlgorithmNotAllowed => "algorithm_not_allowed",
        F::UnknownKey => "unknown_key",
        F::BadSignature => "bad_signature",
        F::Expired => "expired",
        F::NotYetValid => "not_yet_valid",
        F::WrongIssuer => "wrong_issuer",
        F::WrongAudience => "wrong_audience",
        F::MissingClaim => "missing_claim",
        F::WrongType => "wrong_type",
        F::ClaimMismatch => "claim_mismatch",
        F::Revoked => "revoked",
        F::AlreadyUsed => "already_used",
    }
}

impl Metrics {
    /// A registry with the call metrics and, read at each scrape, the state of `live`.
    pub fn new(live: Arc<Live>) -> Metrics {
        let mut registry = Registry::with_prefix("token_authority");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "calls",
            "Finished calls by RPC, profile and outcome (ok, valid, refused, error) with its reason",
            calls.clone(),
        );
        // 100 µs to about 1.6 s: a call is well under a millisecond, a slow disk or a stuck lock
        // shows up in the upper buckets.
        let latency = Family::<RpcLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 15))
        });
        registry.register_with_unit(
            "call_duration",
            "How long calls took, by RPC",
            prometheus_client::registry::Unit::Seconds,
            latency.clone(),
        );
        registry.register_collector(Box::new(LiveCollector { live }));
        Metrics {
            registry,
            calls,
            latency,
        }
    }

    /// The `profile` label for a call that asked for `requested`: the profile's name if the
    /// snapshot the call reads has it, [`UNKNOWN_PROFILE`] otherwise.
    pub fn profile_label(snapshot: &Snapshot, requested: &str) -> String {
        let name = profile::requested(requested);
        if snapshot.profiles.get(name).is_some() {
            name.to_owned()
        } else {
            UNKNOWN_PROFILE.to_owned()
        }
    }

    /// Counts a finished call and its latency.
    pub fn observe_call(
        &self,
        rpc: &'static str,
        profile: String,
        outcome: Outcome,
        started: Instant,
    ) {
        let (outcome, reason) = outcome.labels();
        self.calls
            .get_or_create(&CallLabels {
                rpc,
                profile,
                outcome,
                reason,
            })
            .inc();
        self.latency
            .get_or_create(&RpcLabel { rpc })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Every metric in the Prometheus text format (OpenMetrics 1.0).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The metrics that describe the live state, computed at each scrape so they are never stale.
struct LiveCollector {
    live: Arc<Live>,
}

// Collector requires Debug; the live state has no short form worth printing.
impl std::fmt::Debug for LiveCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveCollector")
    }
}

const STATES: [KeyState; 5] = [
    KeyState::Pending,
    KeyState::Published,
    KeyState::Active,
    KeyState::Retired,
    KeyState::Removed,
];

impl Collector for LiveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.live.current();
        let now = self.live.clock().unix_seconds();
        let profiles = snapshot.profiles.sorted();

        let mut keys = encoder.encode_descriptor(
            "keys",
            "Signing keys of each profile by lifecycle state; verify_only counts keys that only verify.",
            None,
            MetricType::Gauge,
        )?;
        for profile in &profiles {
            for state in STATES {
                let count = profile
                    .signers()
                    .iter()
                    .filter(|s| profile.state_of(s, now) == state)
                    .count();
                gauge(&mut keys, profile.name(), state.as_str(), count as i64)?;
            }
            let verify_only = profile.verify_only_keys().count();
            gauge(&mut keys, profile.name(), "verify_only", verify_only as i64)?;
        }

        let deadlines: [(&str, &str, Deadline); 2] = [
            (
                "active_key_retire",
                "Seconds until the signing key of each profile stops signing (absent: it never does, or none signs).",
                active_retire_at,
            ),
            (
                "next_key_activate",
                "Seconds until the next signing key of each profile starts signing (absent: none is scheduled).",
                next_activate_at,
            ),
        ];
        for (name, help, deadline) in deadlines {
            let mut metric = encoder.encode_descriptor(
                name,
                help,
                Some(&prometheus_client::registry::Unit::Seconds),
                MetricType::Gauge,
            )?;
            for profile in &profiles {
                if let Some(at) = deadline(profile, now) {
                    let family = [("profile", profile.name())];
                    ConstGauge::new(at as i64 - now as i64)
                        .encode(metric.encode_family(&family)?)?;
                }
            }
        }

        let remote: Vec<_> = snapshot
            .remote
            .iter()
            .map(|(name, set)| (name.as_str(), set.stats(now)))
            .collect();
        let mut fetches = encoder.encode_descriptor(
            "remote_jwks_fetches",
            "Fetches of each federated profile's remote JWK Set by result.",
            None,
            MetricType::Counter,
        )?;
        for (profile, stats) in &remote {
            for (result, count) in [("ok", stats.ok), ("failed", stats.failed)] {
                let family = [("profile", *profile), ("result", result)];
                ConstCounter::new(count).encode(fetches.encode_family(&family)?)?;
            }
        }
        let mut age = encoder.encode_descriptor(
            "remote_jwks_age",
            "Seconds since each federated profile's key set was last fetched good (absent: never).",
            Some(&prometheus_client::registry::Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (profile, stats) in &remote {
            if let Some(secs) = stats.age {
                ConstGauge::new(secs as i64)
                    .encode(age.encode_family(&[("profile", *profile)])?)?;
            }
        }
        let mut remote_keys = encoder.encode_descriptor(
            "remote_jwks_keys",
            "Keys in each federated profile's last good key set.",
            None,
            MetricType::Gauge,
        )?;
        for (profile, stats) in &remote {
            ConstGauge::new(stats.keys as i64)
                .encode(remote_keys.encode_family(&[("profile", *profile)])?)?;
        }

        let counts = self.live.reload_counts();
        let mut reloads = encoder.encode_descriptor(
            "reloads",
            "Configuration reloads (SIGHUP or the Reload RPC) by result.",
            None,
            MetricType::Counter,
        )?;
        for (result, count) in [("ok", counts.ok), ("refused", counts.refused)] {
            ConstCounter::new(count).encode(reloads.encode_family(&[("result", result)])?)?;
        }

        let info =
            encoder.encode_descriptor("build", "The running build.", None, MetricType::Info)?;
        prometheus_client::metrics::info::Info::new([("version", env!("CARGO_PKG_VERSION"))])
            .encode(info)?;
        Ok(())
    }
}

fn gauge(
    encoder: &mut prometheus_client::encoding::MetricEncoder<'_>,
    profile: &str,
    state: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let family = [("profile", profile), ("state", state)];
    ConstGauge::new(value).encode(encoder.encode_family(&family)?)
}

/// When something happens to a profile's keys, seen from `now`.
type Deadline = fn(&Profile, u64) -> Option<u64>;

/// When the key signing at `now` stops signing: at its retirement, or when a later key takes
/// over, whichever comes first; `None` if neither is scheduled.
fn active_retire_at(profile: &Profile, now: u64) -> Option<u64> {
    let retire_at = profile.signer_at(now)?.times().retire_at;
    let retire_at = (retire_at != u64::MAX).then_some(retire_at);
    match (retire_at, next_activate_at(profile, now)) {
        (Some(retire), Some(next)) => Some(retire.min(next)),
        (retire, next) => retire.or(next),
    }
}

/// When the next key after the one signing at `now` starts signing.
fn next_activate_at(profile: &Profile, now: u64) -> Option<u64> {
    profile
        .signers()
        .iter()
        .map(|s| s.times().activate_at)
        .filter(|&at| at > now && at != u64::MAX)
        .min()
}
