//! `config check`: load a configuration exactly as `serve` would and print what it holds,
//! without writing a byte (keys that `generate = true` would create are made in memory and
//! thrown away, managed key directories are only read).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;

use crate::core::clock::{Clock as _, SystemClock};
use crate::core::keys::KeyId;
use crate::core::profile::Schedule;
use crate::core::rotation::KeyRecord;
use crate::state::config::{Config, ConfigSource};
use crate::state::managed;

/// Loads the configuration exactly as `serve` does (same file, same defaults, same messages)
/// and prints what it holds. Writes nothing: keys `generate = true` would create are made in
/// memory only ([`Config::check`]), and managed key directories are only read.
pub fn check_config(config_file: Option<&Path>, data_dir: &Path) -> anyhow::Result<()> {
    let source = match config_file {
        Some(path) => ConfigSource::File(path),
        None => ConfigSource::Embedded,
    };
    let config = Config::check(source, data_dir)?;
    let managed = config
        .profiles
        .iter()
        .filter(|p| p.rotation.is_some())
        .map(|p| {
            let name = &p.spec.name;
            let dir = managed::managed_dir(data_dir, name);
            managed::read_state(&dir)
                .with_context(|| format!("{}: profile {name:?}", config.origin))
                .map(|state| {
                    let state = state.map(|(records, _)| ManagedState {
                        path: dir.join(managed::STATE_FILE),
                        records,
                    });
                    (name.clone(), state)
                })
        })
        .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(report(&config, &managed, data_dir, SystemClock.unix_seconds()).as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to standard output")?;
    Ok(())
}

/// What a managed profile's directory holds; `None` when serve would start it from nothing.
struct ManagedState {
    path: PathBuf,
    records: Vec<KeyRecord>,
}

/// Seconds since the epoch as RFC 3339 UTC.
fn at(seconds: u64) -> String {
    if seconds == u64::MAX {
        return "never".into();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
}

fn span(seconds: u64) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_secs(seconds))
}

/// The human-readable summary `config check` prints.
fn report(
    config: &Config,
    managed: &BTreeMap<String, Option<ManagedState>>,
    data_dir: &Path,
    now: u64,
) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "configuration: {}", config.origin);
    let _ = writeln!(text, "data dir:      {}", data_dir.display());
    let _ = writeln!(text, "listen:        {}", config.listen);
    let _ = writeln!(
        text,
        "http_listen:   {}",
        config
            .http_listen
            .map_or_else(|| "off".to_owned(), |a| a.to_string())
    );
    let _ = writeln!(
        text,
        "admin:         {}",
        if config.admin {
            "on (KeyAdmin is served; keep the port private)"
        } else {
            "off"
        }
    );

    let _ = writeln!(text, "\nkeys:");
    if config.keys.sorted().is_empty() {
        let _ = writeln!(text, "  none configured");
    }
    let width = config
        .keys
        .sorted()
        .iter()
        .map(|k| k.id().as_str().len())
        .max()
        .unwrap_or(0);
    for key in config.keys.sorted() {
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
        let window = config
            .profiles
            .iter()
            .flat_map(|p| &p.spec.signing_keys)
            .find(|s| s.key.id() == key.id())
            .and_then(|s| match s.schedule {
                Schedule::File {
                    not_before,
                    not_after,
                } => Some((not_before, not_after)),
                Schedule::Managed(_) => None,
            });
        if let Some((not_before, not_after)) = window {
            if let Some(t) = not_before {
                let _ = write!(line, "  not_before {}", at(t));
            }
            if let Some(t) = not_after {
                let _ = write!(line, "  not_after {}", at(t));
            }
        }
        if let Some((_, file)) = config.would_generate.iter().find(|(id, _)| id == key.id()) {
            let _ = write!(
                line,
                "  (generate = true: {} does not exist yet; serve creates it on first start)",
                file.display()
            );
        }
        let _ = writeln!(text, "{}", line.trim_end());
    }

    let _ = writeln!(text, "\nprofiles:");
    for template in &config.profiles {
        let spec = &template.spec;
        let _ = writeln!(text, "  {}", spec.name);
        let ids = |keys: &mut dyn Iterator<Item = &KeyId>| {
            let ids: Vec<String> = keys.map(|k| k.to_string()).collect();
            if ids.is_empty() {
                "-".to_owned()
            } else {
                ids.join(", ")
            }
        };
        match &template.rotation {
            None => {
                let _ = writeln!(
                    text,
                    "    signing keys:  {}",
                    ids(&mut spec.signing_keys.iter().map(|s| s.key.id()))
                );
            }
            Some(rotation) => {
                let _ = writeln!(
                    text,
                    "    signing keys:  managed: {}, rotate_every {}, publish_ahead {}, verify_after {}",
                    rotation.algorithm,
                    span(rotation.rotate_every),
                    span(rotation.publish_ahead),
                    span(rotation.verify_after),
                );
                match managed.get(&spec.name) {
                    Some(Some(state)) => {
                        let _ = writeln!(text, "    managed state: {}", state.path.display());
                        for record in &state.records {
                            let times = record.times;
                            let _ = writeln!(
                                text,
                                "      {}  {}  {}  published {}  active {}  retire {}  remove {}",
                                record.kid,
                                record.algorithm,
                                times.state_at(now).as_str(),
                                at(times.publish_at),
                                at(times.activate_at),
                                at(times.retire_at),
                                at(times.remove_at),
                            );
                        }
                    }
                    _ => {
                        let _ = writeln!(
                            text,
                            "    managed state: none yet; keys would be generated on first start (in {})",
                            managed::managed_dir(data_dir, &spec.name).display()
                        );
                    }
                }
            }
        }
        let _ = writeln!(
            text,
            "    verify keys:   {}",
            ids(&mut spec.verify_keys.iter().map(|k| k.id()))
        );
        let _ = writeln!(
            text,
            "    issuer:        {}",
            spec.issuer.as_deref().unwrap_or("-")
        );
        let _ = writeln!(
            text,
            "    audience:      {}",
            if spec.audience.is_empty() {
                "-".to_owned()
            } else {
                spec.audience.join(", ")
            }
        );
        let ttl = spec.ttl.map_or_else(
            || "5m (default)".to_owned(),
            |t| humantime::format_duration(t).to_string(),
        );
        let max_ttl = spec.max_ttl.map_or_else(
            || "the ttl (default)".to_owned(),
            |t| humantime::format_duration(t).to_string(),
        );
        let _ = writeln!(text, "    ttl:           {ttl}");
        let _ = writeln!(text, "    max_ttl:       {max_ttl}");
        let _ = writeln!(
            text,
            "    login URL:     {}",
            if spec.login_url.is_some() {
                "yes"
            } else {
                "no"
            }
        );
    }
    let _ = writeln!(
        text,
        "\nOK: the configuration is valid (keys: {}, profiles: {}); nothing was written",
        config.keys.sorted().len(),
        config.profiles.len()
    );
    text
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
        let config = Config::check(ConfigSource::File(&file), &data).unwrap();
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
