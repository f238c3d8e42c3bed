//! The JWK parser against keys made by OpenSSL (tests/fixtures) and by this crate, and against
//! each refusal it promises. The Wycheproof JWK cases run in tests/api/jwk.rs.

use ring::rand::SystemRandom;
use serde_json::{Value, json};

use super::*;
use crate::core::keys::generate;

const RSA_2048: &str = include_str!("../../../../tests/fixtures/rsa-2048.pem");
const RSA_1024_PUB: &str = include_str!("../../../../tests/fixtures/rsa-1024.pub.pem");
const EC_P256: &str = include_str!("../../../../tests/fixtures/ec-p256.pem");
const EC_P384: &str = include_str!("../../../../tests/fixtures/ec-p384.pem");
const ED25519: &str = include_str!("../../../../tests/fixtures/ed25519.pem");

fn b64(bytes: &[u8]) -> String {
    super::super::jwk::b64(bytes)
}

fn any() -> JwkExpectations<'static> {
    JwkExpectations::default()
}

fn public() -> JwkExpectations<'static> {
    JwkExpectations {
        form: JwkForm::Public,
        ..Default::default()
    }
}

/// The public JWK of a PEM private key, as this crate publishes it.
fn public_jwk(alg: Algorithm, pem: &str) -> Value {
    let key = Key::from_private_pem(KeyId::parse("k1").unwrap(), alg, pem.as_bytes()).unwrap();
    Value::Object(key.public_jwk().unwrap().to_json())
}

/// The private JWK of a PEM private key: the public JWK plus the private members, read from the
/// PEM by other code than the parser under test (the `rsa`, `p521` and `sec1` crates).
fn private_jwk(alg: Algorithm, pem: &str) -> Value {
    let mut jwk = public_jwk(alg, pem);
    let obj = jwk.as_object_mut().unwrap();
    match alg.family() {
        KeyFamily::Rsa => {
            use rsa::pkcs8::DecodePrivateKey as _;
            use rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};
            let mut key = rsa::RsaPrivateKey::from_pkcs8_pem(pem).unwrap();
            key.precompute().unwrap();
            let primes = key.primes();
            let int = |n: &rsa::BigUint| json!(b64(&n.to_bytes_be()));
            assert_eq!(obj["n"], int(key.n()));
            obj.insert("d".into(), int(key.d()));
            obj.insert("p".into(), int(&primes[0]));
            obj.insert("q".into(), int(&primes[1]));
            obj.insert("dp".into(), int(key.dp().unwrap()));
            obj.insert("dq".into(), int(key.dq().unwrap()));
            let qi = key.crt_coefficient().unwrap();
            obj.insert("qi".into(), int(&qi));
        }
        KeyFamily::Ecdsa if alg == Algorithm::ES512 => {
            use p521::pkcs8::DecodePrivateKey as _;
            let secret = p521::SecretKey::from_pkcs8_pem(pem).unwrap();
            obj.insert("d".into(), json!(b64(&secret.to_bytes())));
        }
        KeyFamily::Ecdsa | KeyFamily::Ed25519 => {
            let der = ::pem::parse(pem).unwrap();
            let info = p521::pkcs8::PrivateKeyInfo::try_from(der.contents()).unwrap();
            let d = if alg == Algorithm::EdDSA {
                // RFC 8410: the private key is an OCTET STRING holding the 32-byte seed.
                info.private_key[2..].to_vec()
            } else {
                sec1::EcPrivateKey::try_from(info.private_key)
                    .unwrap()
                    .private_key
                    .to_vec()
            };
            obj.insert("d".into(), json!(b64(&d)));
        }
        KeyFamily::Hmac => unreachable!(),
    }
    jwk
}

fn with(mut jwk: Value, member: &str, value: Value) -> Value {
    jwk.as_object_mut().unwrap().insert(member.into(), value);
    jwk
}

fn without(mut jwk: Value, member: &str) -> Value {
    jwk.as_object_mut().unwrap().remove(member);
    jwk
}

fn refusal(jwk: &Value, expect: &JwkExpectations<'_>) -> String {
    Key::from_jwk(&jwk.to_string(), expect)
        .expect_err("the JWK should be refused")
        .to_string()
}

fn cases() -> Vec<(Algorithm, String)> {
    let es512 = generate(Algorithm::ES512, &SystemRandom::new()).unwrap();
    vec![
        (Algorithm::RS256, RSA_2048.to_owned()),
        (Algorithm::PS512, RSA_2048.to_owned()),
        (Algorithm::ES256, EC_P256.to_owned()),
        (Algorithm::ES384, EC_P384.to_owned()),
        (Algorithm::ES512, es512),
        (Algorithm::EdDSA, ED25519.to_owned()),
    ]
}

#[test]
fn a_private_jwk_signs_what_its_public_jwk_verifies_for_every_asymmetric_algorithm() {
    let rng = SystemRandom::new();
    for (alg, pem) in cases() {
        let signer = Key::from_jwk(&private_jwk(alg, &pem).to_string(), &any())
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert!(signer.can_sign(), "{alg}");
        assert_eq!(signer.algorithm(), alg);
        assert_eq!(signer.id().as_str(), "k1");
        let verifier = Key::from_jwk(&public_jwk(alg, &pem).to_string(), &public()).unwrap();
        assert!(!verifier.can_sign(), "{alg}");
        let signature = signer.sign(&rng, b"message").unwrap();
        assert!(verifier.verify(b"message", &signature), "{alg}");
        assert!(!verifier.verify(b"messagf", &signature), "{alg}");
        // The key parsed from the JWK publishes the same JWK again.
        assert_eq!(
            Value::Object(verifier.public_jwk().unwrap().to_json()),
            public_jwk(alg, &pem),
            "{alg}"
        );
    }
}

#[test]
fn a_private_jwk_whose_parts_do_not_belong_together_is_refused() {
    for (alg, pem) in cases() {
        let mut jwk = private_jwk(alg, &pem);
        jwk["d"] = if alg.family() == KeyFamily::Rsa {
            // Another modulus-sized value in place of d.
            jwk["n"].clone()
        } else {
            // The private key of another key pair on the same curve.
            let other = generate(alg, &SystemRandom::new()).unwrap();
            private_jwk(alg, &other)["d"].clone()
        };
        let message = refusal(&jwk, &any());
        assert!(
            message.contains("key pair") || message.contains("belong"),
            "{alg}: {message}"
        );
    }
}

#[test]
fn an_hmac_jwk_loads_and_a_secret_shorter_than_the_hash_is_refused() {
    let secret = [7u8; 32];
    let jwk = json!({"kty": "oct", "kid": "h", "alg": "HS256", "k": b64(&secret)});
    let key = Key::from_jwk(&jwk.to_string(), &any()).unwrap();
    assert!(key.can_sign());
    let reference = Key::from_hmac_secret(
        KeyId::parse("h").unwrap(),
        HmacSecret::new(Algorithm::HS256, secret.to_vec()).unwrap(),
        Algorithm::HS256,
    )
    .unwrap();
    let rng = SystemRandom::new();
    assert!(key.verify(b"m", &reference.sign(&rng, b"m").unwrap()));
    let short = with(jwk.clone(), "k", json!(b64(&[7u8; 31])));
    assert!(refusal(&short, &any()).contains("31 bytes"));
    let empty = with(jwk.clone(), "k", json!(""));
    assert!(refusal(&empty, &any()).contains("0 bytes"));
    let no_alg = without(jwk.clone(), "alg");
    assert!(refusal(&no_alg, &any()).contains("\"alg\" missing"));
    assert!(refusal(&jwk, &public()).contains("shared secret"));
    assert!(refusal(&with(jwk, "alg", json!("A256GCM")), &any()).contains("unknown algorithm"));
}

#[test]
fn a_duplicate_member_is_refused_instead_of_taking_the_last() {
    let jwk = public_jwk(Algorithm::ES256, EC_P256).to_string();
    let twice = jwk.replacen("\"kty\":\"EC\"", "\"kty\":\"EC\",\"alg\":\"ES384\"", 1);
    let err = Key::from_jwk(&twice, &any()).unwrap_err().to_string();
    assert!(err.contains("\"alg\" appears twice"), "{err}");
}

#[test]
fn use_and_key_ops_must_allow_signatures() {
    let jwk = public_jwk(Algorithm::ES256, EC_P256);
    assert!(refusal(&with(jwk.clone(), "use", json!("enc")), &any()).contains("\"enc\""));
    let ops = |v: Value| with(without(jwk.clone(), "use"), "key_ops", v);
    assert!(refusal(&ops(json!(["encrypt"])), &any()).contains("\"verify\""));
    assert!(refusal(&ops(json!(["verify", "verify"])), &any()).contains("twice"));
    assert!(refusal(&ops(json!(["fly"])), &any()).contains("registered"));
    assert!(refusal(&ops(json!("verify")), &any()).contains("array"));
    Key::from_jwk(&ops(json!(["verify"])).to_string(), &public()).unwrap();
    let private = with(
        private_jwk(Algorithm::ES256, EC_P256),
        "key_ops",
        json!(["verify"]),
    );
    assert!(refusal(&private, &any()).contains("\"sign\""));
}

#[test]
fn alg_crv_and_kty_must_fit_each_other() {
    let ec = public_jwk(Algorithm::ES256, EC_P256);
    assert!(refusal(&with(ec.clone(), "alg", json!("ES384")), &any()).contains("P-256"));
    assert!(refusal(&with(ec.clone(), "alg", json!("RS256")), &any()).contains("kty \"EC\""));
    assert!(refusal(&with(ec.clone(), "alg", json!("ES521")), &any()).contains("ES521"));
    assert!(refusal(&with(ec.clone(), "crv", json!("Ed25519")), &any()).contains("crv"));
    assert!(refusal(&with(ec.clone(), "kty", json!("RSA")), &any()).contains("crv"));
    assert!(refusal(&with(ec.clone(), "n", json!("AQAB")), &any()).contains("\"n\""));
    let okp = public_jwk(Algorithm::EdDSA, ED25519);
    assert!(refusal(&with(okp.clone(), "crv", json!("P-256")), &any()).contains("Ed25519"));
    assert!(refusal(&with(okp, "crv", json!("X25519")), &any()).contains("X25519"));
    // Without alg, EC and OKP keys name their one algorithm by curve; RSA keys cannot.
    let inferred = Key::from_jwk(&without(ec, "alg").to_string(), &any()).unwrap();
    assert_eq!(inferred.algorithm(), Algorithm::ES256);
    let rsa = without(public_jwk(Algorithm::RS256, RSA_2048), "alg");
    assert!(refusal(&rsa, &any()).contains("several algorithms"));
    let given = JwkExpectations {
        alg: Some(Algorithm::PS256),
        ..Default::default()
    };
    assert_eq!(
        Key::from_jwk(&rsa.to_string(), &given).unwrap().algorithm(),
        Algorithm::PS256
    );
}

#[test]
fn kid_and_alg_given_beside_the_jwk_must_agree_with_it() {
    let jwk = public_jwk(Algorithm::ES256, EC_P256);
    let beside = |kid, alg| JwkExpectations {
        form: JwkForm::Either,
        kid,
        alg,
    };
    assert!(refusal(&jwk, &beside(Some("k2"), None)).contains("\"k2\""));
    assert!(refusal(&jwk, &beside(None, Some(Algorithm::ES384))).contains("ES384"));
    Key::from_jwk(
        &jwk.to_string(),
        &beside(Some("k1"), Some(Algorithm::ES256)),
    )
    .unwrap();
    let anonymous = without(jwk, "kid");
    assert!(refusal(&anonymous, &any()).contains("\"kid\" missing"));
    let named = Key::from_jwk(&anonymous.to_string(), &beside(Some("outside"), None)).unwrap();
    assert_eq!(named.id().as_str(), "outside");
}

#[test]
fn private_members_are_refused_where_a_public_key_is_expected() {
    for (alg, pem) in cases() {
        let message = refusal(&private_jwk(alg, &pem), &public());
        assert!(message.contains("private key material"), "{alg}: {message}");
    }
    let private_only = JwkExpectations {
        form: JwkForm::Private,
        ..Default::default()
    };
    assert!(refusal(&public_jwk(Algorithm::ES256, EC_P256), &private_only).contains("private"));
}

#[test]
fn base64url_must_be_canonical_and_coordinates_full_length() {
    let jwk = public_jwk(Algorithm::ES256, EC_P256);
    let x = jwk["x"].as_str().unwrap().to_owned();
    assert_eq!(x.len(), 43);
    assert!(refusal(&with(jwk.clone(), "x", json!(format!("{x}="))), &any()).contains("base64url"));
    // 43 characters carry 258 bits; the last 2 must be zero.
    let last = x.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let index = alphabet.find(last).unwrap();
    let flipped = alphabet.chars().nth(index ^ 1).unwrap();
    let noncanonical = format!("{}{flipped}", &x[..42]);
    assert!(refusal(&with(jwk.clone(), "x", json!(noncanonical)), &any()).contains("base64url"));
    let standard = x.replace('-', "+").replace('_', "/");
    if standard != x {
        assert!(refusal(&with(jwk.clone(), "x", json!(standard)), &any()).contains("base64url"));
    }
    assert!(refusal(&with(jwk.clone(), "x", json!(b64(&[1u8; 31]))), &any()).contains("31 bytes"));
    assert!(refusal(&with(jwk, "x", json!(7)), &any()).contains("not a string"));
}

#[test]
fn a_point_off_the_curve_is_refused_at_load() {
    for (alg, pem) in [
        (Algorithm::ES256, EC_P256.to_owned()),
        (Algorithm::ES384, EC_P384.to_owned()),
        (
            Algorithm::ES512,
            generate(Algorithm::ES512, &SystemRandom::new()).unwrap(),
        ),
    ] {
        let jwk = public_jwk(alg, &pem);
        let mut bytes = {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(jwk["y"].as_str().unwrap())
                .unwrap()
        };
        *bytes.last_mut().unwrap() ^= 1;
        let message = refusal(&with(jwk, "y", json!(b64(&bytes))), &any());
        assert!(message.contains("point"), "{alg}: {message}");
    }
}

#[test]
fn weak_rsa_keys_are_refused() {
    let small = public_jwk_of_rsa_pub(RSA_1024_PUB);
    assert!(refusal(&small, &any()).contains("1024 bits"));
    let jwk = public_jwk(Algorithm::RS256, RSA_2048);
    for e in [b64(&[1]), b64(&[2]), b64(&[0x01, 0x00, 0x00]), b64(&[3; 6])] {
        let message = refusal(&with(jwk.clone(), "e", json!(e)), &any());
        assert!(message.contains("exponent"), "{message}");
    }
    Key::from_jwk(
        &with(jwk.clone(), "e", json!(b64(&[3]))).to_string(),
        &any(),
    )
    .unwrap();
    let multi = with(private_jwk(Algorithm::RS256, RSA_2048), "oth", json!([]));
    assert!(refusal(&multi, &any()).contains("multi-prime"));
    let partial = without(private_jwk(Algorithm::RS256, RSA_2048), "qi");
    assert!(refusal(&partial, &any()).contains("\"qi\" missing"));
}

#[test]
fn a_modulus_with_the_roca_fingerprint_is_refused() {
    // 65537^128 is odd, 2049 bits long, and a power of 65537 modulo every prime: exactly the
    // residues the flawed generator's moduli have. The fixture modulus passes the same test.
    let mut n = rsa::BigUint::from(1u8);
    for _ in 0..128 {
        n *= 65537u32;
    }
    let jwk = with(
        public_jwk(Algorithm::RS256, RSA_2048),
        "n",
        json!(b64(&n.to_bytes_be())),
    );
    assert!(refusal(&jwk, &any()).contains("ROCA"));
    Key::from_jwk(&public_jwk(Algorithm::RS256, RSA_2048).to_string(), &any()).unwrap();
}

fn public_jwk_of_rsa_pub(pem: &str) -> Value {
    use rsa::pkcs8::DecodePublicKey as _;
    use rsa::traits::PublicKeyParts as _;
    let key = rsa::RsaPublicKey::from_public_key_pem(pem).unwrap();
    json!({"kty": "RSA", "kid": "small", "alg": "RS256",
        "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be())})
}

#[test]
fn a_jwk_set_keeps_the_usable_keys_and_says_why_each_other_entry_was_refused() {
    let good = public_jwk(Algorithm::ES256, EC_P256);
    let ed = with(public_jwk(Algorithm::EdDSA, ED25519), "kid", json!("ed"));
    let enc = with(
        with(public_jwk(Algorithm::RS256, RSA_2048), "kid", json!("enc")),
        "use",
        json!("enc"),
    );
    let x25519 = json!({"kty": "OKP", "crv": "X25519", "kid": "x", "x": b64(&[9; 32])});
    let anonymous = without(public_jwk(Algorithm::ES384, EC_P384), "kid");
    let set = json!({"keys": [good, enc, ed, x25519, anonymous, "text"]});
    let parsed = JwkSet::parse(&set.to_string(), JwkForm::Public).unwrap();
    let ids: Vec<&str> = parsed.keys.iter().map(|k| k.id().as_str()).collect();
    assert_eq!(ids, ["k1", "ed"]);
    let refused: Vec<String> = parsed.refused.iter().map(ToString::to_string).collect();
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert!(refused[0].starts_with("keys[1] (kid \"enc\")") && refused[0].contains("\"use\""));
    assert!(refused[1].starts_with("keys[3] (kid \"x\")") && refused[1].contains("X25519"));
    assert!(refused[2].starts_with("keys[4]:") && refused[2].contains("\"kid\" missing"));
    assert!(refused[3].starts_with("keys[5]:"));
}

#[test]
fn entries_sharing_a_kid_are_all_refused() {
    let a = public_jwk(Algorithm::ES256, EC_P256);
    let b = public_jwk(Algorithm::ES384, EC_P384);
    let c = with(public_jwk(Algorithm::EdDSA, ED25519), "kid", json!("c"));
    let set = json!({"keys": [a, b, c]}).to_string();
    let parsed = JwkSet::parse(&set, JwkForm::Public).unwrap();
    assert_eq!(parsed.keys.len(), 1);
    assert_eq!(parsed.refused.len(), 2);
    assert!(parsed.refused[0].to_string().contains("more than one key"));
}

#[test]
fn a_set_is_refused_whole_only_for_what_makes_all_of_it_doubtful() {
    let ec = public_jwk(Algorithm::ES256, EC_P256);
    let oct = json!({"kty": "oct", "kid": "h", "alg": "HS256", "k": b64(&[7; 32])});
    let mixed = json!({"keys": [ec, oct]}).to_string();
    let err = JwkSet::parse(&mixed, JwkForm::Either)
        .unwrap_err()
        .to_string();
    assert!(err.contains("mixes"), "{err}");
    // Where only public keys belong, the secret is one refused entry.
    let parsed = JwkSet::parse(&mixed, JwkForm::Public).unwrap();
    assert_eq!((parsed.keys.len(), parsed.refused.len()), (1, 1));
    for (text, needle) in [
        ("[]", "JSON object"),
        ("{\"keys\": {}}", "\"keys\""),
        ("{\"keys\": [], \"keys\": []}", "appears twice"),
        ("{\"keys\": [", "not JSON"),
    ] {
        let err = JwkSet::parse(text, JwkForm::Public)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{text}: {err}");
    }
    let dup_in_entry = r#"{"keys":[{"kty":"OKP","kid":"a","kty":"OKP"}]}"#;
    let parsed = JwkSet::parse(dup_in_entry, JwkForm::Public).unwrap();
    assert!(parsed.refused[0].to_string().contains("appears twice"));
}
