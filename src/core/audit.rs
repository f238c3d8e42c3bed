//! How audit records name a subject without writing it down: HMAC-SHA256 under a
//! per-deployment key, the practice of Vault's audit devices. The same subject always gives
//! the same value under one key, so records can be searched for a subject the operator knows
//! (see the README) while a leaked log reveals none.

use std::fmt;

/// The least key length: SHA-256's output, as for HMAC signing keys.
pub const MIN_KEY_BYTES: usize = 32;

/// The key subjects are hashed under. Its `Debug` prints nothing of it.
pub struct AuditKey(ring::hmac::Key);

impl AuditKey {
    /// A key from at least [`MIN_KEY_BYTES`] bytes; `None` when shorter.
    pub fn new(bytes: &[u8]) -> Option<AuditKey> {
        (bytes.len() >= MIN_KEY_BYTES)
            .then(|| AuditKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes)))
    }

    /// The subject as audit records show it: lower-case hex of its HMAC-SHA256.
    pub fn subject(&self, subject: &str) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let tag = ring::hmac::sign(&self.0, subject.as_bytes());
        // On every audited call: one allocation, no formatting machinery per byte.
        let mut hex = String::with_capacity(tag.as_ref().len() * 2);
        for b in tag.as_ref() {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        hex
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_is_hashed_the_same_way_every_time_and_as_openssl_would() {
        let key = AuditKey::new(&[7u8; 32]).unwrap();
        assert_eq!(key.subject("user-1"), key.subject("user-1"));
        assert_ne!(key.subject("user-1"), key.subject("user-2"));
        assert_eq!(key.subject("user-1").len(), 64);
        assert!(AuditKey::new(&[7u8; 31]).is_none());
        // RFC 4231 test case 2 ("Jefe" is short, so it goes straight to ring here).
        let jefe = AuditKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe"));
        assert_eq!(
            jefe.subject("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
