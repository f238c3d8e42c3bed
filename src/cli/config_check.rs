//! `config check`: load a configuration exactly as `serve` would and print what it holds,
//! without writing a byte (keys that `generate = true` would create are made in memory and
//! thrown away, managed key directories are only read).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;

use super::print_report;
use crate::core::clock::{Clock as _, SystemClock};
use crate::core::keys::{Key, KeyId};
use crate::core::profile::{ProfileName, Schedule};
use crate::core::rotation::{KeyRecord, RotationSpec};
use crate::state::config::{Config, ConfigSource, ProfileTemplate};
use crate::state::managed;

/// Loads the configuration exactly as `serve` does (same file, same defaults, same messages)
/// and prints what it holds. Writes nothing: keys `generate = true` would create are made in
/// memory only ([`Config::check`]), and managed key directories are only read.
pub fn check_config(config_file: Option<&Path>, data_dir: &Path) -> anyhow::Result<()> {
    let source = match config_file {
        Some(path) => ConfigSource::File(path.to_owned()),
        None => ConfigSource::Embedded,
    };
    let config = Config::check(source, data_dir)?;
    let report = Report {
        managed: read_managed(&config, data_dir)?,
        config: &config,
        data_dir,
        now: SystemClock.unix_seconds(),
    };
    print_report(&report.render())
}

/// What a managed profile's directory holds; `None` when serve would start it from nothing.
struct ManagedState {
    path: PathBuf,
    records: Vec<KeyRecord>,
}

/// The state of every managed profile, by name; a state file that does not parse is an error,
/// as it is for `serve`.
fn read_managed(
    config: &Config,
    data_dir: &Path,
) -> anyhow::Result<BTreeMap<ProfileName, Option<ManagedState>>> {
    config
        .profiles
        .iter()
        .filter(|p| p.rotation.is_some())
        .map(|p| {
            let name = &p.spec.name;
            let state = read_state(&managed::managed_dir(data_dir, name))
                .with_context(|| format!("{}: profile {name:?}", config.origin))?;
            Ok((name.clone(), state))
        })
        .collect()
}

fn read_state(dir: &Path) -> anyhow::Result<Option<ManagedState>> {
    let state = managed::read_state(dir)?;
    Ok(state.map(|(records, _)| ManagedState {
        path: dir.join(managed::STATE_FILE),
        records,
    }))
}

/// Seconds since the epoch as RFC 3339 UTC.
fn at(seconds: u64) -> String {
    if seconds == u64::MAX {
        return "never".into();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
}

/// A lifetime as a configuration would write it: `24h`, `90m`, `1h 5m`, never `1day`.
fn span(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    let parts: Vec<String> = [(h, "h"), (m, "m"), (s, "s")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

/// Key ids joined with commas; `-` for none.
fn ids(keys: &mut dyn Iterator<Item = &KeyId>) -> String {
    let ids: Vec<String> = keys.map(|k| k.to_string()).collect();
    if ids.is_empty() {
        "-".to_owned()
    } else {
        ids.join(", ")
    }
}

/// Everything the summary `config check` prints is drawn from.
struct Report<'a> {
    config: &'a Config,
    managed: BTreeMap<ProfileName, Option<ManagedState>>,
    data_dir: &'a Path,
    now: u64,
}

impl Report<'_> {
    /// The human-readable summary: server settings, the keys, each profile, and the verdict.
    fn render(&self) -> String {
        let config = self.config;
        let mut text = String::new();
        self.write_server(&mut text);
        self.write_keys(&mut text);
        let _ = writeln!(text, "\nprofiles:");
        for template in &config.profiles {
            self.write_profile(&mut text, template);
        }
        let _ = writeln!(
            text,
            "\nOK: the configuration is valid (keys: {}, profiles: {}); nothing was written",
            config.keys.sorted().len(),
            config.profiles.len()
        );
        text
    }

    fn write_server(&self, text: &mut String) {
        let config = self.config;
        let http_listen = config
            .http_listen
            .map_or_else(|| "off".to_owned(), |a| a.to_string());
        let admin = if config.admin {
            "on (KeyAdmin is served; keep the port private)"
        } else {
            "off"
        };
        let _ = writeln!(text, "configuration: {}", config.origin);
        let _ = writeln!(text, "data dir:      {}", self.data_dir.display());
        let _ = writeln!(text, "listen:        {}", config.listen);
        let _ = writeln!(text, "http_listen:   {http_listen}");
        let _ = writeln!(text, "admin:         {admin}");
        match &config.tls {
            None => {
                let _ = writeln!(text, "tls:           off (plaintext on both listeners)");
            }
            Some(tls) => {
                let (files, leaf) = (tls.files(), tls.leaf());
                let names = if leaf.names.is_empty() {
                    "no DNS or IP names".to_owned()
                } else {
                    leaf.names.join(", ")
                };
                let _ = writeln!(
                    text,
                    "tls:           on, certificate {} ({}; for {names}; valid until {}; chain of {})",
                    files.cert_file.display(),
                    leaf.subject,
                    leaf.not_after,
                    leaf.chain_len
                );
                let _ = writeln!(text, "tls key:       {}", files.key_file.display());
                let clients = files.client_ca_file.as_ref().map_or_else(
                    || "not requested (no client_ca_file)".to_owned(),
                    |ca| format!("requested, checked against {}", ca.display()),
                );
                let _ = writeln!(text, "client certs:  {clients}");
            }
        }
        self.write_callers(text);
    }

    /// Who may call: the callers by name and identity kind, or why none are needed.
    fn write_callers(&self, text: &mut String) {
        let config = self.config;
        let callers = config.callers.policy().callers();
        if callers.is_empty() {
            let why = if config.allow_unauthenticated {
                "none (allow_unauthenticated = true: anyone who reaches the port may call)"
            } else {
                "none (calls are not authenticated; served on loopback only)"
            };
            let _ = writeln!(text, "callers:       {why}");
            return;
        }
        let listed: Vec<String> = callers
            .iter()
            .map(|c| format!("{} ({})", c.name(), c.identity().kind()))
            .collect();
        let _ = writeln!(text, "callers:       {}", listed.join(", "));
        if let Some(profile) = config.callers.caller_profile() {
            let _ = writeln!(text, "bearer tokens: verified by profile {profile:?}");
        }
    }

    /// One line a key, its id padded to the longest so the columns line up.
    fn write_keys(&self, text: &mut String) {
        let keys = self.config.keys.sorted();
        let _ = writeln!(text, "\nkeys:");
        if keys.is_empty() {
            let _ = writeln!(text, "  none configured");
        }
        let width = keys
            .iter()
            .map(|k| k.id().as_str().len())
            .max()
            .unwrap_or(0);
        for key in keys {
            let _ = writeln!(text, "{}", self.key_line(key, width).trim_end());
        }
    }

    /// Id, algorithm, role, the signing window from the file, and a note if serve would create it.
    fn key_line(&self, key: &Key, width: usize) -> String {
        let role = if key.can_sign() {
            "signs"
        } else {
            "verify-only"
        };
        let mut line = String::new();
        let _ = write!(
            line,
            "  {:width$}  {:5}  {role:11}",
            key.id().as_str(),
            key.algorithm().name()
        );
        let (not_before, not_after) = self.window(key.id());
        if let Some(t) = not_before {
            let _ = write!(line, "  not_before {}", at(t));
        }
        if let Some(t) = not_after {
            let _ = write!(line, "  not_after {}", at(t));
        }
        let would_generate = &self.config.would_generate;
        if let Some((_, file)) = would_generate.iter().find(|(id, _)| id == key.id()) {
            let _ = write!(
                line,
                "  (generate = true: {} does not exist yet; serve creates it on first start)",
                file.display()
            );
        }
        line
    }

    /// The `not_before`/`not_after` the file gives the first profile that signs with `id`.
    fn window(&self, id: &KeyId) -> (Option<u64>, Option<u64>) {
        let schedule = self
            .config
            .profiles
            .iter()
            .flat_map(|p| &p.spec.signing_keys)
            .find(|s| s.key.id() == id)
            .map(|s| &s.schedule);
        match schedule {
            Some(Schedule::File(window)) => (window.not_before(), window.not_after()),
            Some(Schedule::Managed(_)) | None => (None, None),
        }
    }

    /// A profile's block: its signing keys (or rotation and managed state), then its settings.
    fn write_profile(&self, text: &mut String, template: &ProfileTemplate) {
        let spec = &template.spec;
        let _ = writeln!(text, "  {}", spec.name);
        match &template.rotation {
            None => {
                let _ = writeln!(
                    text,
                    "    signing keys:  {}",
                    ids(&mut spec.signing_keys.iter().map(|s| s.key.id()))
                );
            }
            Some(rotation) => self.write_rotation(text, &spec.name, rotation),
        }
        // No verify_keys means the profile verifies with the keys it signs with.
        let verify = if spec.verify_keys.is_empty() {
            if spec.remote_jwks.is_some() {
                "-".to_owned()
            } else {
                "its signing keys".to_owned()
            }
        } else {
            // Keys from a jwks_file are listed apart, after the file they came from.
            let from_file = template
                .jwks_file
                .as_ref()
                .map_or(&[][..], |(_, ids)| ids.as_slice());
            let own: Vec<&KeyId> = spec
                .verify_keys
                .iter()
                .map(|k| k.id())
                .filter(|id| !from_file.contains(id))
                .collect();
            let mut shown = Vec::new();
            if !own.is_empty() {
                shown.push(ids(&mut own.into_iter()));
            }
            if let Some((path, file_ids)) = &template.jwks_file {
                shown.push(format!(
                    "from jwks_file {}: {}",
                    path.display(),
                    ids(&mut file_ids.iter())
                ));
            }
            shown.join("; ")
        };
        let _ = writeln!(text, "    verify keys:   {verify}");
        if let Some(remote) = &template.remote {
            let algorithms: Vec<&str> = spec.algorithms.iter().map(|a| a.name()).collect();
            let _ = writeln!(
                text,
                "    remote keys:   {} ({}; fetched when the service starts)",
                remote.location.url(),
                algorithms.join(", ")
            );
        }
        let _ = writeln!(
            text,
            "    issuer:        {}",
            spec.issuer.as_deref().unwrap_or("-")
        );
        let audience = if spec.audience.is_empty() {
            "-".to_owned()
        } else {
            spec.audience.join(", ")
        };
        let _ = writeln!(text, "    audience:      {audience}");
        // Loading checked the lifetimes already; an error here cannot happen and prints nothing.
        if let Ok(lifetimes) = spec.lifetimes() {
            // The value shown is the one the profile uses; "(default)" says the file left it out.
            let shown = |value: Duration, configured: bool| {
                let value = span(value.as_secs());
                if configured {
                    value.to_string()
                } else {
                    format!("{value} (default)")
                }
            };
            let _ = writeln!(
                text,
                "    ttl:           {}",
                shown(lifetimes.ttl, spec.ttl.is_some())
            );
            let _ = writeln!(
                text,
                "    max_ttl:       {}",
                shown(lifetimes.max_ttl, spec.max_ttl.is_some())
            );
            let _ = writeln!(
                text,
                "    login_ttl:     {}",
                shown(lifetimes.login_ttl, spec.login_ttl.is_some())
            );
        }
        let login_url = if spec.login_url.is_some() {
            "yes"
        } else {
            "no"
        };
        let _ = writeln!(text, "    login URL:     {login_url}");
    }

    /// A managed profile's rotation settings, then the keys its state file holds, or where
    /// serve would create them.
    fn write_rotation(&self, text: &mut String, name: &str, rotation: &RotationSpec) {
        let _ = writeln!(
            text,
            "    signing keys:  managed: {}, rotate_every {}, publish_ahead {}, verify_after {}",
            rotation.algorithm,
            span(rotation.rotate_every),
            span(rotation.publish_ahead),
            span(rotation.verify_after),
        );
        let Some(state) = self.managed.get(name).and_then(Option::as_ref) else {
            let _ = writeln!(
                text,
                "    managed state: none yet; keys would be generated on first start (in {})",
                managed::managed_dir(self.data_dir, name).display()
            );
            return;
        };
        let _ = writeln!(text, "    managed state: {}", state.path.display());
        for record in &state.records {
            let times = record.times;
            let _ = writeln!(
                text,
                "      {}  {}  {}  published {}  active {}  retire {}  remove {}",
                record.kid,
                record.algorithm,
                times.state_at(self.now).as_str(),
                at(times.publish_at),
                at(times.activate_at),
                at(times.retire_at),
                at(times.remove_at),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_check_generates_missing_keys_in_memory_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let absolute = dir.path().join("abs").join("gen.pem");
        let toml = format!(
            "[[keys]]\nid = \"gen\"\nalgorithm = \"ES256\"\nprivate_key_file = {}\ngenerate = true\n\n[[keys]]\nid = \"rel\"\nalgorithm = \"EdDSA\"\nprivate_key_file = 'rel.pem'\ngenerate = true\n\n[profiles.default]\nsigning_key = \"gen\"\n",
            toml::Value::String(absolute.to_str().unwrap().to_owned())
        );
        let file = dir.path().join("c.toml");
        std::fs::write(&file, &toml).unwrap();
        let data = dir.path().join("data");
        let config = Config::check(ConfigSource::File(file.clone()), &data).unwrap();
        let made: Vec<(&str, &Path)> = config
            .would_generate
            .iter()
            .map(|(id, path)| (id.as_str(), path.as_path()))
            .collect();
        assert_eq!(
            made,
            [
                ("gen", absolute.as_path()),
                ("rel", data.join("rel.pem").as_path())
            ]
        );
        assert!(!absolute.exists() && !data.exists());
    }
}
