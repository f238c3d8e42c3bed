//! Reading keys given as JWKs (RFC 7517) and JWK Sets: strictly, because a JWK names its own
//! algorithm and use, and a verifier that guesses or ignores them can be talked into the wrong
//! key (RFC 8725 §3.1).
//!
//! One JWK ([`Key::from_jwk`]) is all or nothing: it is a configured key, and any doubt is a
//! start-up error. A JWK Set ([`JwkSet::parse`]) is read entry by entry: a partner's published
//! set with one key we cannot use (an encryption key, an X25519 key, a newer algorithm) must not
//! stop us verifying with the others, so each refused entry is returned with its reason beside
//! the usable keys, and the caller decides whether to log or fail. Only what makes the whole set
//! untrustworthy (not JSON, duplicate members at the top, symmetric and asymmetric keys mixed)
//! refuses the set.
//!
//! Refused in a JWK: duplicate members (serde_json would silently keep the last), `use` other
//! than `sig`, `key_ops` without the operation the key is loaded for, an `alg` this service does
//! not know or that does not fit `kty`/`crv`, a `crv` that does not fit `kty`, members of another
//! `kty`, private members where a public key is expected, base64url with padding or non-zero
//! trailing bits, EC coordinates of the wrong length or off the curve, RSA under 2048 bits, with
//! an even or too small `e`, multi-prime (`oth`) or with the ROCA fingerprint, and HMAC secrets
//! shorter than the hash output.

use std::collections::{HashMap, HashSet};
use std::fmt;

use ring::signature::{EcdsaKeyPair, Ed25519KeyPair};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::key::Signer;
use super::{Algorithm, HmacSecret, Key, KeyError, KeyFamily, KeyId};

/// Which halves of a key a JWK may hold where it is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JwkForm {
    /// Public keys only: private members and `oct` secrets are refused (a published JWK Set).
    Public,
    /// A private key or an HMAC secret: the key signs.
    Private,
    /// Either; a JWK with private members becomes a signing key (a configured `jwk_file`).
    #[default]
    Either,
}

/// What the place a JWK is read from already says about it: where both give a `kid` or an
/// `alg`, they must agree.
#[derive(Clone, Copy, Debug, Default)]
pub struct JwkExpectations<'a> {
    pub form: JwkForm,
    /// The key id given beside the JWK (`id` in a `[[keys]]` entry).
    pub kid: Option<&'a str>,
    /// The algorithm given beside the JWK (`algorithm` in a `[[keys]]` entry).
    pub alg: Option<Algorithm>,
}

impl Key {
    /// Parses one JWK (JSON text) into a key, checked as the module docs list; a JWK with
    /// private members (or an `oct` secret) signs, a public one only verifies.
    pub fn from_jwk(json: &str, expect: &JwkExpectations<'_>) -> Result<Key, KeyError> {
        let value = parse_json(json)?;
        let Json::Object(members) = value else {
            return Err(KeyError::NotJwk("a JWK is a JSON object".into()));
        };
        parse_jwk(&members, expect)
    }
}

/// A parsed JWK Set: the keys this service can use, and each refused entry with its reason.
#[derive(Debug)]
pub struct JwkSet {
    pub keys: Vec<Key>,
    pub refused: Vec<RefusedJwk>,
}

/// One entry of a JWK Set that was not loaded.
#[derive(Debug)]
pub struct RefusedJwk {
    /// Position in the `keys` array, from 0.
    pub index: usize,
    /// The entry's `kid`, when it has a readable one.
    pub kid: Option<String>,
    pub reason: KeyError,
}

impl fmt::Display for RefusedJwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kid {
            Some(kid) => write!(f, "keys[{}] (kid {kid:?}): {}", self.index, self.reason),
            None => write!(f, "keys[{}]: {}", self.index, self.reason),
        }
    }
}

impl JwkSet {
    /// Parses a JWK Set (`{"keys": [...]}`). Entries are checked one by one as
    /// [`Key::from_jwk`] checks a JWK, with `form` and no outside `kid`/`alg`; an entry also needs
    /// a `kid` (a token must be able to name it), and entries sharing a `kid` are all refused,
    /// since a verifier could not tell which was meant.
    pub fn parse(json: &str, form: JwkForm) -> Result<JwkSet, KeyError> {
        let Json::Object(members) = parse_json(json)? else {
            return Err(KeyError::NotJwk("a JWK Set is a JSON object".into()));
        };
        let members = unique(&members)?;
        let Some(Json::Array(entries)) = members.get("keys") else {
            return Err(KeyError::NotJwk(
                "a JWK Set needs a \"keys\" member holding an array".into(),
            ));
        };
        let kid_of = |entry: &Json| match entry {
            Json::Object(m) => m.iter().find_map(|(k, v)| match (k.as_str(), v) {
                ("kid", Json::String(s)) => Some(s.clone()),
                _ => None,
            }),
            _ => None,
        };
        let mut seen: HashMap<String, usize> = HashMap::new();
        for kid in entries.iter().filter_map(kid_of) {
            *seen.entry(kid).or_default() += 1;
        }
        // Symmetric secrets beside public keys invite algorithm confusion (a public key used as
        // an HMAC secret, RFC 8725 §2.1); such a set is not trusted at all.
        let kty_of = |entry: &Json| match entry {
            Json::Object(m) => m.iter().find_map(|(k, v)| match (k.as_str(), v) {
                ("kty", Json::String(s)) => Some(s.as_str() == "oct"),
                _ => None,
            }),
            _ => None,
        };
        let octs: Vec<bool> = entries.iter().filter_map(kty_of).collect();
        if form != JwkForm::Public && octs.contains(&true) && octs.contains(&false) {
            return Err(KeyError::NotJwk(
                "the set mixes symmetric (oct) and public keys; keep HMAC secrets apart".into(),
            ));
        }
        let mut set = JwkSet {
            keys: Vec::new(),
            refused: Vec::new(),
        };
        for (index, entry) in entries.iter().enumerate() {
            let kid = kid_of(entry);
            let result = match (entry, &kid) {
                (Json::Object(_), None) => Err(bad("kid", "missing; a key in a set needs a kid")),
                (Json::Object(_), Some(k)) if seen.get(k).copied().unwrap_or(0) > 1 => Err(bad(
                    "kid",
                    "used by more than one key in the set; none of them is used",
                )),
                (Json::Object(m), Some(_)) => parse_jwk(
                    m,
                    &JwkExpectations {
                        form,
                        ..Default::default()
                    },
                ),
                _ => Err(KeyError::NotJwk("a JWK is a JSON object".into())),
            };
            match result {
                Ok(key) => set.keys.push(key),
                Err(reason) => set.refused.push(RefusedJwk { index, kid, reason }),
            }
        }
        Ok(set)
    }
}

/// Members registered for one `kty` (RFC 7518 §6, RFC 8037 §2), refused under another.
const EC_PUBLIC: &[&str] = &["crv", "x", "y"];
const OKP_PUBLIC: &[&str] = &["crv", "x"];
const RSA_PUBLIC: &[&str] = &["n", "e"];
const RSA_PRIVATE: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth"];
const KTY_MEMBERS: &[&str] = &[
    "crv", "x", "y", "d", "n", "e", "p", "q", "dp", "dq", "qi", "oth", "k",
];

/// The `key_ops` values RFC 7517 §4.3 registers.
const KEY_OPS: &[&str] = &[
    "sign",
    "verify",
    "encrypt",
    "decrypt",
    "wrapKey",
    "unwrapKey",
    "deriveKey",
    "deriveBits",
];

fn parse_jwk(members: &[(String, Json)], expect: &JwkExpectations<'_>) -> Result<Key, KeyError> {
    let m = unique(members)?;
    let kty = string(&m, "kty")?.ok_or_else(|| bad("kty", "missing"))?;
    let (family, allowed, private_members): (KeyFamily, &[&str], &[&str]) = match kty {
        "EC" => (KeyFamily::Ecdsa, EC_PUBLIC, &["d"]),
        "OKP" => (KeyFamily::Ed25519, OKP_PUBLIC, &["d"]),
        "RSA" => (KeyFamily::Rsa, RSA_PUBLIC, RSA_PRIVATE),
        "oct" => (KeyFamily::Hmac, &[], &["k"]),
        other => {
            return Err(bad(
                "kty",
                &format!("{other:?} is not a signature key type (EC, OKP, RSA or oct)"),
            ));
        }
    };
    for name in KTY_MEMBERS {
        if m.contains_key(name) && !allowed.contains(name) && !private_members.contains(name) {
            return Err(bad(name, &format!("does not belong to a kty {kty:?} key")));
        }
    }
    let private = private_members.iter().any(|name| m.contains_key(name));
    match expect.form {
        JwkForm::Public if family == KeyFamily::Hmac => {
            return Err(bad(
                "kty",
                "\"oct\" is a shared secret, never part of a public key",
            ));
        }
        JwkForm::Public if private => {
            let found: Vec<&str> = private_members
                .iter()
                .copied()
                .filter(|n| m.contains_key(n))
                .collect();
            return Err(bad(
                found[0],
                "is private key material where only a public key belongs",
            ));
        }
        JwkForm::Private if !private => {
            return Err(bad("d", "missing; a private key is expected here"));
        }
        _ => {}
    }
    check_use(&m, family, private)?;
    let id = match (string(&m, "kid")?, expect.kid) {
        (Some(a), Some(b)) if a != b => {
            return Err(bad(
                "kid",
                &format!("{a:?} does not match the key id {b:?} given beside the JWK"),
            ));
        }
        (Some(kid), _) | (None, Some(kid)) => KeyId::parse(kid)?,
        (None, None) => return Err(bad("kid", "missing, and no key id given beside the JWK")),
    };
    let named = match string(&m, "alg")? {
        Some(name) => Some(
            Algorithm::from_name(name).ok_or_else(|| KeyError::UnknownAlgorithm(name.into()))?,
        ),
        None => None,
    };
    let alg = match (named, expect.alg) {
        (Some(a), Some(b)) if a != b => {
            return Err(bad(
                "alg",
                &format!("{a} does not match the algorithm {b} given beside the JWK"),
            ));
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => inferred_alg(&m, family)?,
    };
    if alg.family() != family {
        return Err(bad("alg", &format!("{alg} does not fit a kty {kty:?} key")));
    }
    match family {
        KeyFamily::Ecdsa => ec_key(&m, id, alg, private),
        KeyFamily::Ed25519 => okp_key(&m, id, alg, private),
        KeyFamily::Rsa => rsa_key(&m, id, alg, private),
        KeyFamily::Hmac => {
            let secret = HmacSecret::new(alg, b64_member(&m, "k")?)?;
            Key::from_hmac_secret(id, secret, alg)
        }
    }
}

/// The algorithm of a JWK without `alg`, where its type and curve allow only one: each EC curve
/// has one ECDSA algorithm and Ed25519 one EdDSA; RSA and HMAC keys have several.
fn inferred_alg(m: &Members<'_>, family: KeyFamily) -> Result<Algorithm, KeyError> {
    match family {
        KeyFamily::Ecdsa => curve_alg(string(m, "crv")?.ok_or_else(|| bad("crv", "missing"))?),
        KeyFamily::Ed25519 => Ok(Algorithm::EdDSA),
        _ => Err(bad(
            "alg",
            "missing; an RSA or oct key fits several algorithms, so name one (in the JWK or beside it)",
        )),
    }
}

fn curve_alg(crv: &str) -> Result<Algorithm, KeyError> {
    match crv {
        "P-256" => Ok(Algorithm::ES256),
        "P-384" => Ok(Algorithm::ES384),
        "P-521" => Ok(Algorithm::ES512),
        other => Err(bad(
            "crv",
            &format!("{other:?} is not an EC curve this service uses (P-256, P-384, P-521)"),
        )),
    }
}

/// `use` must be `sig` where given; `key_ops` must name the operation the key is loaded for
/// (`sign` for a private key, `verify` for a public one, either for an HMAC secret) and only registered operations.
fn check_use(m: &Members<'_>, family: KeyFamily, private: bool) -> Result<(), KeyError> {
    if let Some(value) = string(m, "use")?
        && value != "sig"
    {
        return Err(bad(
            "use",
            &format!("{value:?}: only signature keys (\"sig\") are used here"),
        ));
    }
    let Some(ops) = m.get("key_ops") else {
        return Ok(());
    };
    let Json::Array(items) = ops else {
        return Err(bad("key_ops", "is not an array of strings"));
    };
    let mut names = HashSet::new();
    for item in items {
        let Json::String(op) = item else {
            return Err(bad("key_ops", "is not an array of strings"));
        };
        if !KEY_OPS.contains(&op.as_str()) {
            return Err(bad(
                "key_ops",
                &format!("{op:?} is not a registered operation"),
            ));
        }
        if !names.insert(op.as_str()) {
            return Err(bad("key_ops", &format!("lists {op:?} twice")));
        }
    }
    // An HMAC secret does both; a profile may use it only to verify.
    let needed = if private { "sign" } else { "verify" };
    let allowed = names.contains(needed) || (family == KeyFamily::Hmac && names.contains("verify"));
    if !allowed {
        return Err(bad(
            "key_ops",
            &format!("does not allow {needed:?}, which this key is loaded for"),
        ));
    }
    Ok(())
}

fn ec_key(m: &Members<'_>, id: KeyId, alg: Algorithm, private: bool) -> Result<Key, KeyError> {
    let crv = string(m, "crv")?.ok_or_else(|| bad("crv", "missing"))?;
    let curve = curve_alg(crv)?;
    if curve != alg {
        return Err(bad("crv", &format!("{crv} does not fit {alg}")));
    }
    let size = match alg {
        Algorithm::ES256 => 32,
        Algorithm::ES384 => 48,
        _ => 66,
    };
    let x = fixed(m, "x", size)?;
    let y = fixed(m, "y", size)?;
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    if alg != Algorithm::ES512 && !on_curve(alg, &x, &y) {
        return Err(bad("x", &format!("(x, y) is not a point on {crv}")));
    }
    let wrong = |reason: String| KeyError::WrongKeyType {
        alg,
        expected: "an EC private key",
        reason,
    };
    let signer = if private {
        let d = fixed(m, "d", size)?;
        Some(if alg == Algorithm::ES512 {
            let signing = p521::ecdsa::SigningKey::from_slice(&d)
                .map_err(|_| wrong("the private scalar d is out of range".into()))?;
            let derived = p521::ecdsa::VerifyingKey::from(&signing).to_encoded_point(false);
            if derived.as_bytes() != point.as_slice() {
                return Err(wrong("d does not belong to the public point (x, y)".into()));
            }
            Signer::P521(Box::new(signing))
        } else {
            let signing = alg
                .ecdsa_signing()
                .ok_or(KeyError::UnknownAlgorithm(alg.to_string()))?;
            let rng = ring::rand::SystemRandom::new();
            let pair = EcdsaKeyPair::from_private_key_and_public_key(signing, &d, &point, &rng)
                .map_err(|e| wrong(format!("d and (x, y) do not form a key pair ({e})")))?;
            Signer::Ecdsa(pair)
        })
    } else {
        None
    };
    Key::from_public_parts(id, alg, signer, point)
}

fn okp_key(m: &Members<'_>, id: KeyId, alg: Algorithm, private: bool) -> Result<Key, KeyError> {
    let crv = string(m, "crv")?.ok_or_else(|| bad("crv", "missing"))?;
    if crv != "Ed25519" {
        return Err(bad(
            "crv",
            &format!("{crv:?} is not a signature curve this service uses (Ed25519)"),
        ));
    }
    let x = fixed(m, "x", 32)?;
    let signer = if private {
        let d = fixed(m, "d", 32)?;
        let pair = Ed25519KeyPair::from_seed_and_public_key(&d, &x).map_err(|e| {
            KeyError::WrongKeyType {
                alg,
                expected: "an Ed25519 private key",
                reason: format!("d does not belong to x ({e})"),
            }
        })?;
        Some(Signer::Ed25519(pair))
    } else {
        None
    };
    Key::from_public_parts(id, alg, signer, x)
}

fn rsa_key(m: &Members<'_>, id: KeyId, alg: Algorithm, private: bool) -> Result<Key, KeyError> {
    use pkcs1::der::Encode as _;
    let n = b64_member(m, "n")?;
    let e = b64_member(m, "e")?;
    let (n, e) = (strip_zeros(&n), strip_zeros(&e));
    let bits = match n.first() {
        Some(first) => n.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    };
    if bits < 2048 {
        return Err(KeyError::RsaTooSmall(format!("{bits} bits")));
    }
    if bits > 8192 {
        return Err(bad(
            "n",
            &format!("{bits} bits; at most 8192 are supported"),
        ));
    }
    // ring's bounds for e: odd, at least 3, below 2^33.
    let odd = e.last().is_some_and(|b| b & 1 == 1);
    if !odd || e.len() > 5 || (e.len() == 1 && e[0] < 3) || (e.len() == 5 && e[0] > 1) {
        return Err(bad(
            "e",
            "the public exponent must be odd, at least 3 and below 2^33 (usually 65537)",
        ));
    }
    if has_roca_fingerprint(n) {
        return Err(bad(
            "n",
            "the modulus has the ROCA fingerprint (CVE-2017-15361): the key was made by a flawed generator and can be factored; replace it",
        ));
    }
    let der_err = |err: pkcs1::der::Error| KeyError::WrongKeyType {
        alg,
        expected: "an RSA key",
        reason: format!("cannot encode the key ({err})"),
    };
    if !private {
        let public = pkcs1::RsaPublicKey {
            modulus: uint(n, "n")?,
            public_exponent: uint(e, "e")?,
        };
        let der = public.to_der().map_err(der_err)?;
        return Key::from_public_parts(id, alg, None, der);
    }
    if m.contains_key("oth") {
        return Err(bad("oth", "multi-prime RSA keys are not supported"));
    }
    let mut parts = Vec::new();
    for name in ["d", "p", "q", "dp", "dq", "qi"] {
        if !m.contains_key(name) {
            return Err(bad(
                name,
                "missing; a private RSA JWK needs d, p, q, dp, dq and qi",
            ));
        }
        parts.push(b64_member(m, name)?);
    }
    let [d, p, q, dp, dq, qi] = [0, 1, 2, 3, 4, 5].map(|i| strip_zeros(&parts[i]));
    let private_key = pkcs1::RsaPrivateKey {
        modulus: uint(n, "n")?,
        public_exponent: uint(e, "e")?,
        private_exponent: uint(d, "d")?,
        prime1: uint(p, "p")?,
        prime2: uint(q, "q")?,
        exponent1: uint(dp, "dp")?,
        exponent2: uint(dq, "dq")?,
        coefficient: uint(qi, "qi")?,
        other_prime_infos: None,
    };
    let der = private_key.to_der().map_err(der_err)?;
    let pair =
        ring::signature::RsaKeyPair::from_der(&der).map_err(|err| KeyError::WrongKeyType {
            alg,
            expected: "an RSA private key",
            reason: format!("its parts do not form a key pair (ring: {err})"),
        })?;
    let encoding = alg
        .rsa_encoding()
        .ok_or(KeyError::UnknownAlgorithm(alg.to_string()))?;
    let public = ring::signature::KeyPair::public_key(&pair)
        .as_ref()
        .to_vec();
    Key::from_public_parts(id, alg, Some(Signer::Rsa(pair, encoding)), public)
}

/// A big-endian unsigned integer for the DER encoder.
fn uint<'a>(bytes: &'a [u8], name: &str) -> Result<pkcs1::UintRef<'a>, KeyError> {
    pkcs1::UintRef::new(bytes).map_err(|err| bad(name, &format!("is not an integer ({err})")))
}

/// Whether `(x, y)` satisfies y² = x³ − 3x + b over the P-256 or P-384 field, both below p.
/// ring checks the point again when it verifies; checking here refuses a bad key at load.
fn on_curve(alg: Algorithm, x: &[u8], y: &[u8]) -> bool {
    use rsa::BigUint;
    let (p_hex, b_hex) = match alg {
        Algorithm::ES256 => (
            "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff",
            "5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b",
        ),
        _ => (
            "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff",
            "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef",
        ),
    };
    let (Some(p), Some(b)) = (
        BigUint::parse_bytes(p_hex.as_bytes(), 16),
        BigUint::parse_bytes(b_hex.as_bytes(), 16),
    ) else {
        return false;
    };
    let x = BigUint::from_bytes_be(x);
    let y = BigUint::from_bytes_be(y);
    if x >= p || y >= p {
        return false;
    }
    let three = BigUint::from(3u8);
    let lhs = (&y * &y) % &p;
    // x³ + (p − 3)·x + b ≡ x³ − 3x + b (mod p), kept non-negative.
    let rhs = (&x * &x * &x + (&p - &three) * &x + &b) % &p;
    lhs == rhs
}

/// The ROCA test (Nemec et al., CCS 2017): moduli from the flawed Infineon generator are, modulo
/// each small prime r below, a power of 65537. A sound modulus passes every prime by chance with
/// odds far below 2^-100.
fn has_roca_fingerprint(n: &[u8]) -> bool {
    const PRIMES: [u64; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&r| {
        let residue = n
            .iter()
            .fold(0u64, |acc, &b| (acc * 256 + u64::from(b)) % r);
        let generator = 65537 % r;
        let mut power = 1 % r;
        // The powers of 65537 mod r repeat within r steps.
        for _ in 0..r {
            if power == residue {
                return true;
            }
            power = power * generator % r;
        }
        false
    })
}

/// A base64url member decoded to exactly `len` bytes (RFC 7518 §6.2.1.2: coordinates and EC
/// private keys are full length).
fn fixed(m: &Members<'_>, name: &str, len: usize) -> Result<Vec<u8>, KeyError> {
    let bytes = b64_member(m, name)?;
    if bytes.len() != len {
        return Err(bad(
            name,
            &format!("is {} bytes; this curve needs exactly {len}", bytes.len()),
        ));
    }
    Ok(bytes)
}

/// A required base64url member, decoded strictly: no padding, no whitespace, no other alphabet
/// and no non-zero trailing bits, so each value has exactly one spelling.
fn b64_member(m: &Members<'_>, name: &str) -> Result<Vec<u8>, KeyError> {
    use base64::Engine as _;
    let text = string(m, name)?.ok_or_else(|| bad(name, "missing"))?;
    // The decoder's message would quote key bytes; say only what is wrong.
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| {
            bad(
                name,
                "is not canonical base64url without padding (RFC 7515 §2)",
            )
        })
}

/// A big-endian integer without its leading zero bytes.
fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn bad(member: &str, reason: &str) -> KeyError {
    KeyError::BadJwk {
        member: member.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The members of one JSON object by name, each name once.
type Members<'a> = HashMap<&'a str, &'a Json>;

/// The members of an object, refusing a name that appears twice.
fn unique(members: &[(String, Json)]) -> Result<Members<'_>, KeyError> {
    let mut map = HashMap::with_capacity(members.len());
    for (name, value) in members {
        if map.insert(name.as_str(), value).is_some() {
            return Err(bad(
                name,
                "appears twice; JSON parsers disagree on which one counts",
            ));
        }
    }
    Ok(map)
}

/// A string member, `None` when absent; any other JSON type is refused.
fn string<'a>(m: &Members<'a>, name: &str) -> Result<Option<&'a str>, KeyError> {
    match m.get(name) {
        None => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(name, "is not a string")),
    }
}

fn parse_json(text: &str) -> Result<Json, KeyError> {
    // serde_json's message gives a line and column, never the text around it.
    serde_json::from_str(text).map_err(|e| KeyError::NotJwk(format!("not JSON: {e}")))
}

/// JSON with every object's members kept in order, duplicates included, so they can be refused
/// (serde_json's own `Value` keeps only the last of a repeated name).
#[derive(Debug)]
enum Json {
    Null,
    Bool,
    Number,
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Json, E> {
        Ok(Json::Bool)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Json, E> {
        Ok(Json::Number)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Json, E> {
        Ok(Json::Number)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Json, E> {
        Ok(Json::Number)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Json, E> {
        Ok(Json::String(s.to_owned()))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Json, E> {
        Ok(Json::String(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        while let Some((name, value)) = map.next_entry::<String, Json>()? {
            members.push((name, value));
        }
        Ok(Json::Object(members))
    }
}

#[cfg(test)]
mod tests;
