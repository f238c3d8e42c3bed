//! `keys list`: what a running service's `KeyAdmin` holds, every key of every profile, as text
//! for a person or as one JSON document for a script. Both show the same fields of each key.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use prost_types::Timestamp;
use serde_json::{Value, json};

use super::{TlsOptions, connect, print_report, within};
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
    /// Plaintext, or TLS with a CA (and a client certificate).
    pub tls: TlsOptions,
}

/// Asks a running service's `KeyAdmin.ListKeys` and prints every key of every profile. An
/// answer of UNIMPLEMENTED means the admin service is off, and says how to turn it on.
pub async fn list_keys(options: &ListOptions) -> anyhow::Result<()> {
    let list = ask(options).await?;
    let text = if options.json {
        let mut json = serde_json::to_string_pretty(&list_json(&list))
            .context("cannot encode the key list as JSON")?;
        json.push('\n');
        json
    } else {
        list_text(&list)
    };
    print_report(&text)
}

/// The service's answer to `ListKeys`; a refusal becomes an error that says what to do.
async fn ask(options: &ListOptions) -> anyhow::Result<proto::ListKeysResponse> {
    use proto::key_admin_client::KeyAdminClient;
    let (url, connecting) = connect(&options.addr, &options.tls)?;
    let ask = async {
        let channel = connecting.await?;
        let answer = KeyAdminClient::new(channel)
            .list_keys(proto::ListKeysRequest {
                profile: options.profile.clone().unwrap_or_default(),
            })
            .await;
        anyhow::Ok(answer)
    };
    match within(&url, options.timeout, ask).await?? {
        Ok(response) => Ok(response.into_inner()),
        Err(status) if status.code() == tonic::Code::Unimplemented => bail!(
            "{url} does not serve tokenauthority.v1.KeyAdmin: the admin service is disabled; set `[server] admin = true` in its configuration and restart it to enable it (keep that port private)"
        ),
        Err(status) => bail!(
            "ListKeys at {url} failed ({:?}): {}",
            status.code(),
            status.message()
        ),
    }
}

/// One value of a key, which text and JSON each show in their own way.
enum Shown<'a> {
    Word(String),
    /// A point in time; unset is `-` in text and `null` in JSON.
    Time(Option<&'a Timestamp>),
    /// The public JWK as the service sent it; empty for HMAC keys, which are never published.
    Jwk(&'a str),
}

impl Shown<'_> {
    fn text(&self) -> String {
        match self {
            Shown::Word(word) => word.clone(),
            Shown::Time(time) => rfc3339(*time).unwrap_or_else(|| "-".into()),
            Shown::Jwk("") => "- (HMAC secrets are never published)".into(),
            Shown::Jwk(jwk) => (*jwk).to_owned(),
        }
    }

    fn json(&self) -> Value {
        match self {
            Shown::Word(word) => Value::String(word.clone()),
            Shown::Time(time) => rfc3339(*time).map_or(Value::Null, Value::String),
            Shown::Jwk("") => Value::Null,
            // A JWK that does not parse is still shown, as the text it came as.
            Shown::Jwk(jwk) => {
                serde_json::from_str(jwk).unwrap_or_else(|_| Value::String((*jwk).to_owned()))
            }
        }
    }
}

/// A key's fields after its id, in the order the text lists them: JSON member, text label, value.
fn key_fields(key: &proto::KeyInfo) -> [(&'static str, &'static str, Shown<'_>); 8] {
    [
        (
            "algorithm",
            "algorithm:",
            Shown::Word(key.algorithm.clone()),
        ),
        ("state", "state:", Shown::Word(state_name(key.state))),
        ("source", "source:", Shown::Word(key.source.clone())),
        (
            "published_at",
            "published:",
            Shown::Time(key.published_at.as_ref()),
        ),
        ("active_at", "active:", Shown::Time(key.active_at.as_ref())),
        ("retire_at", "retire:", Shown::Time(key.retire_at.as_ref())),
        ("remove_at", "remove:", Shown::Time(key.remove_at.as_ref())),
        ("public_jwk", "public JWK:", Shown::Jwk(&key.public_jwk)),
    ]
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
fn rfc3339(time: Option<&Timestamp>) -> Option<String> {
    let time = SystemTime::try_from(*time?).ok()?;
    Some(humantime::format_rfc3339_seconds(time).to_string())
}

fn list_json(list: &proto::ListKeysResponse) -> Value {
    let profiles: Vec<Value> = list
        .profiles
        .iter()
        .map(|p| {
            let keys: Vec<Value> = p.keys.iter().map(key_json).collect();
            json!({ "profile": p.profile, "managed": p.managed, "keys": keys })
        })
        .collect();
    json!({
        "config_origin": list.config_origin,
        "config_loaded_at": Shown::Time(list.config_loaded_at.as_ref()).json(),
        "last_reload_at": Shown::Time(list.last_reload_at.as_ref()).json(),
        "last_reload_error": (!list.last_reload_error.is_empty()).then_some(&list.last_reload_error),
        "profiles": profiles,
    })
}

fn key_json(key: &proto::KeyInfo) -> Value {
    let mut members = serde_json::Map::new();
    members.insert("key_id".into(), Value::String(key.key_id.clone()));
    for (member, _, value) in key_fields(key) {
        members.insert(member.into(), value.json());
    }
    Value::Object(members)
}

fn list_text(list: &proto::ListKeysResponse) -> String {
    let loaded_at = Shown::Time(list.config_loaded_at.as_ref()).text();
    let reload_at = Shown::Time(list.last_reload_at.as_ref()).text();
    let mut text = String::new();
    let _ = writeln!(text, "config:      {}", list.config_origin);
    let _ = writeln!(text, "loaded at:   {loaded_at}");
    if !list.last_reload_error.is_empty() {
        let _ = writeln!(
            text,
            "last reload: {reload_at} FAILED, the previous configuration keeps serving: {}",
            list.last_reload_error
        );
    } else if list.last_reload_at.is_some() {
        let _ = writeln!(text, "last reload: {reload_at} succeeded");
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
            write_key_text(&mut text, key);
        }
    }
    text
}

fn write_key_text(text: &mut String, key: &proto::KeyInfo) {
    let _ = writeln!(text, "  key {}", key.key_id);
    for (_, label, value) in key_fields(key) {
        let _ = writeln!(text, "    {label:11} {}", value.text());
    }
}
