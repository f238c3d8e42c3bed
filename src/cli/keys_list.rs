//! `keys list`: what a running service's `KeyAdmin` holds, every key of every profile, as text
//! for a person or as one JSON document for a script.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};

use super::{service_url, within};
use crate::proto;

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
    let url = service_url(&options.addr);
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
    let answer = within(&url, options.timeout, ask).await??;
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
