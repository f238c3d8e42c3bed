//! Reading the token's hostile bytes strictly, so each token has one reading: canonical
//! base64url parts, JSON objects that refuse duplicate members, and claims of the JSON type
//! RFC 7519 gives them. Every failure here is a `Malformed` refusal.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::{Failure, Refusal, clip, refuse};

/// The bytes of one part; an empty signature decodes, and is left for the signature check.
pub(super) fn decode_part(name: &str, part: &str) -> Result<Vec<u8>, Refusal> {
    if part.is_empty() && name != "signature" {
        return refuse(Failure::Malformed, format!("the {name} part is empty"));
    }
    // URL_SAFE_NO_PAD refuses padding, characters outside base64url and non-zero trailing bits,
    // so every token has exactly one accepted spelling.
    URL_SAFE_NO_PAD.decode(part).map_err(|e| Refusal {
        failure: Failure::Malformed,
        detail: format!("the {name} part is not canonical unpadded base64url: {e}"),
    })
}

/// The part as a JSON object, refusing duplicate members at any depth.
pub(super) fn parse_object(name: &str, bytes: &[u8]) -> Result<Map<String, Value>, Refusal> {
    let value = serde_json::from_slice::<Strict>(bytes).map_err(|e| Refusal {
        failure: Failure::Malformed,
        detail: format!("the {name} is not valid JSON: {e}"),
    })?;
    match value.0 {
        Value::Object(map) => Ok(map),
        _ => refuse(
            Failure::Malformed,
            format!("the {name} is not a JSON object"),
        ),
    }
}

/// A NumericDate claim if present, as any JSON number: RFC 7519 allows fractions.
pub(super) fn numeric_date(
    claims: &Map<String, Value>,
    name: &str,
) -> Result<Option<f64>, Refusal> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) => Ok(Some(v)),
            None => refuse(
                Failure::Malformed,
                format!("the {name:?} claim is not a usable number"),
            ),
        },
        Some(_) => refuse(
            Failure::Malformed,
            format!("the {name:?} claim is not a JSON number (NumericDate, RFC 7519 §2)"),
        ),
    }
}

/// The `aud` claim as a list, whichever of its two RFC 7519 spellings the token uses.
pub(super) fn audience_claim(claims: &Map<String, Value>) -> Result<Option<Vec<&str>>, Refusal> {
    let bad = || Refusal {
        failure: Failure::Malformed,
        detail: "the \"aud\" claim is neither a string nor a list of strings".into(),
    };
    match claims.get("aud") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(vec![s.as_str()])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad()),
    }
}

/// A JSON value that refuses duplicate object members at any depth; serde_json keeps the last
/// one silently, which lets two parsers read one token two ways (RFC 8725 §3.1 spirit).
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let Strict(value) = access.next_value()?;
            match map.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                serde_json::map::Entry::Occupied(slot) => {
                    return Err(de::Error::custom(format_args!(
                        "duplicate member {:?}",
                        clip(slot.key())
                    )));
                }
            }
        }
        Ok(Value::Object(map))
    }
}
