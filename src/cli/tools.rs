//! The operator subcommands: `keys generate`, `keys list` and `config check`.
//!
//! None of them serves anything. `keys generate` makes key material for a `[[keys]]` entry,
//! `keys list` asks a running service's `KeyAdmin` what it holds, and `config check` loads a
//! configuration exactly as `serve` would, without writing a byte (keys that `generate = true`
//! would create are made in memory and thrown away).
//!
//! Their logs go to stderr, so stdout carries only the answer (for `keys generate --out -`,
//! only the key).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use ring::rand::SystemRandom;

use crate::core::clock::{Clock as _, SystemClock};
use crate::core::keys::{self, Algorithm, Key, KeyFamily, KeyId};
use crate::core::profile::{ProfileName, Schedule};
use crate::core::rotation::KeyRecord;
use crate::proto;
use crate::state::config::{Config, ConfigSource};
use crate::state::managed;

/// RSA keys are 2048 bits unless `--bits` says otherwise.
pub const DEFAULT_RSA_BITS: usize = 2048;

// ---- keys generate ----------------------------------------------------------------------------

/// What `keys generate` is asked to make, and where to put it.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// The one algorithm the key is for.
    pub algorithm: Algorithm,
    /// A file to write the key to, `-` for stdout; `None` is refused (see [`generate_key`]).
    pub out: Option<PathBuf>,
    /// RSA modulus size; refused for other algorithms. [`DEFAULT_RSA_BITS`] when `None`.
    pub bits: Option<usize>,
    /// Replace an existing `out` file.
    pub force: bool,
}

/// Creates a key and writes it where `--out` says: to a new 0600 file (then prints the kid,
/// public JWK and a `[[keys]]` snippet, never the key), or with `-` to stdout and nothing else.
/// Without `--out` it refuses whether or not stdout is a terminal, so the private key is never
/// printed by accident.
pub fn generate_key(options: &GenerateOptions) -> anyhow::Result<()> {
    let alg = options.algorithm;
    let Some(out) = &options.out else {
        bail!(
            "refusing to print a private key: give --out FILE to write it to a new file (mode 0600), or --out - to write it to standard output"
        );
    };
    let to_stdout = out.as_os_str() == "-";
    if options.force && to_stdout {
        bail!("--force applies only to --out FILE");
    }
    let bits = match (alg.family(), options.bits) {
        (KeyFamily::Rsa, bits) => Some(bits.unwrap_or(DEFAULT_RSA_BITS)),
        (_, None) => None,
        (_, Some(bits)) => bail!(
            "--bits {bits}: only RSA keys (RS256 … PS512) take a size; {alg} keys have a fixed one"
        ),
    };
    if !to_stdout && !options.force && fs::symlink_metadata(out).is_ok() {
        bail!(
            "{} already exists; refusing to overwrite it (give --force to replace it)",
            out.display()
        );
    }

    let material = match bits {
        Some(bits) => keys::generate_rsa(bits)?,
        None => keys::generate(alg, &SystemRandom::new())?,
    };
    let generated = describe(alg, &material)?;

    if to_stdout {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(material.as_bytes())
            .and_then(|()| {
                if material.ends_with('\n') {
                    Ok(())
                } else {
                    stdout.write_all(b"\n")
                }
            })
            .and_then(|()| stdout.flush())
            .context("cannot write the key to standard output")?;
        eprint!("{}", generated.summary(None));
        return Ok(());
    }

    crate::state::files::write_private(out, material.as_bytes())
        .with_context(|| format!("cannot write the key to {}", out.display()))?;
    // The config resolves relative key paths against --data-dir, not against our working
    // directory, so the snippet names the file absolutely.
    let absolute = fs::canonicalize(out).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|dir| dir.join(out))
            .unwrap_or_else(|_| out.clone())
    });
    print!("{}", generated.summary(Some(&absolute)));
    Ok(())
}

/// What is printed about a new key: never the key itself.
struct Generated {
    alg: Algorithm,
    /// The RFC 7638 thumbprint; `None` for HMAC.
    kid: Option<String>,
    /// The public JWK as one line of JSON; `None` for HMAC.
    jwk: Option<String>,
    /// Length of an HMAC secret's text.
    secret_len: usize,
}

/// Loads the new material the way `serve` will, so a key that would not load is never written.
fn describe(alg: Algorithm, material: &str) -> anyhow::Result<Generated> {
    let key = Key::from_material(KeyId::parse("new")?, alg, material.as_bytes())?;
    let Some(kid) = key.thumbprint() else {
        return Ok(Generated {
            alg,
            kid: None,
            jwk: None,
            secret_len: material.len(),
        });
    };
    let jwk = key
        .with_id(KeyId::parse(&kid)?)
        .public_jwk()
        .ok_or_else(|| anyhow!("{alg} key has no public JWK"))?;
    Ok(Generated {
        alg,
        kid: Some(kid),
        jwk: Some(serde_json::Value::Object(jwk.to_json()).to_string()),
        secret_len: 0,
    })
}

impl Generated {
    /// The report; with `file`, also where the key went and a `[[keys]]` snippet naming it.
    fn summary(&self, file: Option<&Path>) -> String {
        let alg = self.alg;
        let mut text = String::new();
        match &self.kid {
            Some(kid) => {
                let _ = writeln!(text, "kid:        {kid}");
                let _ = writeln!(text, "            (RFC 7638 thumbprint of the public key)");
            }
            None => {
                let _ = writeln!(
                    text,
                    "kid:        none derived: an HMAC secret has no public key to take a thumbprint of; the key id is yours to choose"
                );
            }
        }
        let _ = writeln!(text, "algorithm:  {alg}");
        match &self.jwk {
            Some(jwk) => {
                let _ = writeln!(text, "public JWK: {jwk}");
            }
            None => {
                let _ = writeln!(
                    text,
                    "secret:     {} characters of base64url text; the secret is that text as written (use it as is on the other side, do not decode it)",
                    self.secret_len
                );
            }
        }
        let Some(file) = file else {
            return text;
        };
        let what = if self.kid.is_some() {
            "private key"
        } else {
            "secret"
        };
        let _ = writeln!(text, "{what} written to {} (mode 0600)", file.display());
        let _ = writeln!(
            text,
            "\n# Add to the configuration (relative paths there resolve against --data-dir):"
        );
        let path = toml::Value::String(file.to_string_lossy().into_owned());
        let _ = writeln!(text, "[[keys]]");
        match &self.kid {
            Some(kid) => {
                let _ = writeln!(text, "id = {}", toml::Value::String(kid.clone()));
                let _ = writeln!(text, "algorithm = \"{alg}\"");
                let _ = writeln!(text, "private_key_file = {path}");
            }
            None => {
                let day = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
                let id = format!(
                    "{}-{}",
                    alg.name().to_lowercase(),
                    day.get(..10).unwrap_or("1")
                );
                let _ = writeln!(
                    text,
                    "id = \"{id}\"  # yours to choose: 1 to 128 of A-Z a-z 0-9 . _ - : + / ="
                );
                let _ = writeln!(text, "algorithm = \"{alg}\"");
                let _ = writeln!(text, "secret_file = {path}");
            }
        }
        text
    }
}

// ---- keys list --------------------------------------------------------------------------------

/// Where to ask and what to show for `keys list`.
#[derive(Debug, Clone)]
pub struct ListOptions {
    /// `HOST:PORT`, or a URL with a scheme.
    pub addr: String,
    /// One profile; `None` lists them all.
    pub profile: Option<String>,
    /// One JSON document instead of text.
    pub json: bool,
    /// Give up on connecting and answering after this long.
    pub timeout: Duration,
}

/// Asks a running service's `KeyAdmin.ListKeys` and prints every key of every profile. An
/// answer of UNIMPLEMENTED means the admin service is off, and says how to turn it on.
pub async fn list_keys(options: &ListOptions) -> anyhow::Result<()> {
    use proto::key_admin_client::KeyAdminClient;
    let url = if options.addr.contains("://") {
        options.addr.clone()
    } else {
        format!("http://{}", options.addr)
    };
    let ask = async {
        let channel = tonic::transport::Endpoint::from_shared(url.clone())?
            .connect()
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        let answer = KeyAdminClient::new(channel)
            .list_keys(proto::ListKeysRequest {
                profile: options.profile.clone().unwrap_or_default(),
            })
            .await;
        anyhow::Ok(answer)
    };
    let answer = tokio::time::timeout(options.timeout, ask)
        .await
        .map_err(|_| {
            anyhow!(
                "no answer from {url} within {}",
                humantime::format_duration(options.timeout)
            )
        })??;
    let list = match answer {
        Ok(response) => response.into_inner(),
        Err(status) if status.code() == tonic::Code::Unimplemented => bail!(
            "{url} does not serve tokenauthority.v1.KeyAdmin: the admin service is disabled; set `[server] admin = true` in its configuration and restart it to enable it (keep that port private)"
        ),
        Err(status) => bail!(
            "ListKeys at {url} failed ({:?}): {}",
            status.code(),
            status.message()
        ),
    };
    let text = if options.json {
        let mut json = serde_json::to_string_pretty(&list_json(&list))
            .context("cannot encode the key list as JSON")?;
        json.push('\n');
        json
    } else {
        list_text(&list)
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to standard output")?;
    Ok(())
}

/// A key state as a lower-case word: "active", "verify_only", …
fn state_name(state: i32) -> String {
    match proto::KeyState::try_from(state) {
        Ok(state) => state
            .as_str_name()
            .trim_start_matches("KEY_STATE_")
            .to_lowercase(),
        Err(_) => format!("unknown({state})"),
    }
}

/// RFC 3339 UTC to the second; `None` when unset.
fn rfc3339(time: Option<&prost_types::Timestamp>) -> Option<String> {
    let time = SystemTime::try_from(*time?).ok()?;
    Some(humantime::format_rfc3339_seconds(time).to_string())
}

fn list_json(list: &proto::ListKeysResponse) -> serde_json::Value {
    use serde_json::{Value, json};
    let time = |t: Option<&prost_types::Timestamp>| rfc3339(t).map_or(Value::Null, Value::String);
    let profiles: Vec<Value> = list
        .profiles
        .iter()
        .map(|p| {
            let keys: Vec<Value> = p
                .keys
                .iter()
                .map(|k| {
                    let jwk = if k.public_jwk.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_str(&k.public_jwk)
                            .unwrap_or_else(|_| Value::String(k.public_jwk.clone()))
                    };
                    json!({
                        "key_id": k.key_id,
                        "algorithm": k.algorithm,
                        "state": state_name(k.state),
                        "source": k.source,
                        "published_at": time(k.published_at.as_ref()),
                        "active_at": time(k.active_at.as_ref()),
                        "retire_at": time(k.retire_at.as_ref()),
                        "remove_at": time(k.remove_at.as_ref()),
                        "public_jwk": jwk,
                    })
                })
                .collect();
            json!({ "profile": p.profile, "managed": p.managed, "keys": keys })
        })
        .collect();
    json!({
        "config_origin": list.config_origin,
        "config_loaded_at": time(list.config_loaded_at.as_ref()),
        "last_reload_at": time(list.last_reload_at.as_ref()),
        "last_reload_error": (!list.last_reload_error.is_empty()).then_some(&list.last_reload_error),
        "profiles": profiles,
    })
}

fn list_text(list: &proto::ListKeysResponse) -> String {
    let time = |t: Option<&prost_types::Timestamp>| rfc3339(t).unwrap_or_else(|| "-".into());
    let mut text = String::new();
    let _ = writeln!(text, "config:      {}", list.config_origin);
    let _ = writeln!(
        text,
        "loaded at:   {}",
        time(list.config_loaded_at.as_ref())
    );
    if !list.last_reload_error.is_empty() {
        let _ = writeln!(
            text,
            "last reload: {} FAILED, the previous configuration keeps serving: {}",
            time(list.last_reload_at.as_ref()),
            list.last_reload_error
        );
    } else if list.last_reload_at.is_some() {
        let _ = writeln!(
            text,
            "last reload: {} succeeded",
            time(list.last_reload_at.as_ref())
        );
    }
    for profile in &list.profiles {
        let kind = if profile.managed {
            "managed keys"
        } else {
            "configured keys"
        };
        let _ = writeln!(text, "\nprofile {} ({kind})", profile.profile);
        if profile.keys.is_empty() {
            let _ = writeln!(text, "  no keys");
        }
        for key in &profile.keys {
            let _ = writeln!(text, "  key {}", key.key_id);
            let _ = writeln!(text, "    algorithm:  {}", key.algorithm);
            let _ = writeln!(text, "    state:      {}", state_name(key.state));
            let _ = writeln!(text, "    source:     {}", key.source);
            let _ = writeln!(text, "    published:  {}", time(key.published_at.as_ref()));
            let _ = writeln!(text, "    active:     {}", time(key.active_at.as_ref()));
            let _ = writeln!(text, "    retire:     {}", time(key.retire_at.as_ref()));
            let _ = writeln!(text, "    remove:     {}", time(key.remove_at.as_ref()));
            let jwk = if key.public_jwk.is_empty() {
                "- (HMAC secrets are never published)"
            } else {
                key.public_jwk.as_str()
            };
            let _ = writeln!(text, "    public JWK: {jwk}");
        }
    }
    text
}

// ---- config check -----------------------------------------------------------------------------

/// Loads the configuration exactly as `serve` does (same file, same defaults, same messages)
/// and prints what it holds. Writes nothing: keys `generate = true` would create are made in
/// memory only ([`Config::check`]), and managed key directories are only read.
pub fn check_config(config_file: Option<&Path>, data_dir: &Path) -> anyhow::Result<()> {
    let source = match config_file {
        Some(path) => ConfigSource::File(path.to_owned()),
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
    managed: &BTreeMap<ProfileName, Option<ManagedState>>,
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
                Schedule::File(window) => Some((window.not_before(), window.not_after())),
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
                match managed.get(spec.name.as_str()) {
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
        fs::write(&file, &toml).unwrap();
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
