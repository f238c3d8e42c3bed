//! The key id (`kid`), checked once so every later use may trust it.
//!
//! RFC 7515 §4.1.4 lets a `kid` be any string, and real issuers use e-mail addresses, URNs and
//! UUIDs. So any printable text is accepted, and safety in logs and messages comes from
//! escaping: the `Debug` form quotes and escapes, and every log field and error message uses
//! it. Only managed keys, whose ids become file names, are held to a plain subset (see
//! `state::managed`).

use std::fmt;

use super::KeyError;

/// The longest key id accepted, in bytes of UTF-8.
pub const MAX_KEY_ID_BYTES: usize = 256;

/// A key id (`kid`): non-empty printable UTF-8 of at most [`MAX_KEY_ID_BYTES`]; log it with `Debug`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Accepts 1 to [`MAX_KEY_ID_BYTES`] bytes of text without control characters.
    pub fn parse(id: &str) -> Result<KeyId, KeyError> {
        // Control characters (newlines, escapes, NUL) are the only ones refused: no issuer
        // needs them, and a terminal or a log parser reading a kid printed raw would obey them.
        let ok =
            !id.is_empty() && id.len() <= MAX_KEY_ID_BYTES && !id.chars().any(char::is_control);
        if ok {
            Ok(KeyId(id.to_owned()))
        } else {
            Err(KeyError::BadKeyId(id.to_owned()))
        }
    }

    /// The id as it appears in the `kid` header.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id exactly as written, for the wire (`kid` headers, responses); logs use `Debug`.
impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Quoted and escaped, so a kid with quotes, bidi controls or odd spaces cannot forge a log line.
impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl std::borrow::Borrow<str> for KeyId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for KeyId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for KeyId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Written as the plain string, so files that hold key ids (a managed profile's state) read
/// like the `kid` headers they name.
impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Read back through [`KeyId::parse`], so a key id from a file is checked like any other.
impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        KeyId::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e_mail_urn_and_unicode_key_ids_are_accepted_as_written() {
        for id in [
            "bilbo.baggins@hobbiton.example",
            "urn:example:key:2024 #1",
            "018c0ae5-4d9b-471b-bfd6-eef314bc7037",
            "schlüssel-ä",
            "a\"quoted\" kid",
        ] {
            assert_eq!(KeyId::parse(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn empty_overlong_and_control_character_key_ids_are_refused() {
        let long = "k".repeat(MAX_KEY_ID_BYTES + 1);
        for id in [
            "",
            long.as_str(),
            "a\nb",
            "tab\there",
            "nul\0",
            "esc\u{1b}[31m",
        ] {
            assert!(KeyId::parse(id).is_err(), "{id:?}");
        }
        assert!(KeyId::parse(&"k".repeat(MAX_KEY_ID_BYTES)).is_ok());
    }

    #[test]
    fn the_debug_form_escapes_what_could_forge_a_log_line() {
        let id = KeyId::parse("evil\" level=\"error\u{202e}").unwrap();

        let shown = format!("{id:?}");

        assert_eq!(shown, r#""evil\" level=\"error\u{202e}""#);
    }
}
