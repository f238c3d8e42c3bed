//! The JWKS and OpenID discovery documents as a relying party sees them over HTTP: caching
//! headers and ETags, which keys are published (and which never are), discovery at the places
//! OpenID Connect Discovery puts it, and a relying party that caches the key set for its
//! max-age while managed keys rotate under it, verifying every token with an independent JOSE
//! library and the published key alone.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use jwt_simple::prelude::{
    ECDSAP256PublicKeyLike as _, ES256PublicKey, Ed25519PublicKey, EdDSAPublicKeyLike as _,
    RS256PublicKey, RSAPublicKeyLike as _, VerificationOptions,
};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, HOST, IF_NONE_MATCH};
use serde_json::{Map, Value};
use token_authority::proto::JwksRequest;

use crate::helpers::*;

const ISSUER: &str = "https://auth.example.test";
const TENANT_ISSUER: &str = "https://auth.example.test/tenants/a";

/// A managed ES256 profile, an RSA file key, an EdDSA key under an issuer that is not a URL,
/// an HMAC profile and a partner key that only verifies; JWKS cached for two minutes.
fn jwks_config() -> String {
    format!(
        r#"
[server]
jwks_cache = "2m"

[[keys]]
id = "rsa-key"
algorithm = "RS256"
private_key_file = {rsa:?}

[[keys]]
id = "ed-key"
algorithm = "EdDSA"
private_key_file = {ed:?}

[[keys]]
id = "hmac-key"
algorithm = "HS256"
secret_file = "hs256.secret"

[[keys]]
id = "partner-ec"
algorithm = "ES384"
public_key_file = {partner:?}

[profiles.managed]
issuer = "{ISSUER}"
ttl = "60s"
max_ttl = "60s"
[profiles.managed.rotation]
algorithm = "ES256"
rotate_every = "5m"

[profiles.sso]
signing_key = "hmac-key"
issuer = "{ISSUER}"

[profiles.tenant-a]
signing_key = "rsa-key"
verify_keys = ["rsa-key", "partner-ec"]
issuer = "{TENANT_ISSUER}"

[profiles.internal]
signing_key = "ed-key"
issuer = "token-authority-internal"

[profiles.partner]
verify_keys = ["partner-ec"]
"#,
        rsa = fixture("rsa-2048.pem"),
        ed = fixture("ed25519.pem"),
        partner = fixture("ec-p384.pub.pem"),
    )
}

// ---- 1. caching headers -------------------------------------------------------------------

#[tokio::test]
async fn key_sets_are_served_as_json_cacheable_for_jwks_cache_with_a_strong_etag() {
    let app = spawn_app_with(&jwks_config()).await;
    let http = reqwest::Client::new();
    for path in ["/.well-known/jwks.json", "/profiles/managed/jwks.json"] {
        let first = get(&http, &app, path, None).await;
        assert_eq!(first.status, StatusCode::OK, "{path}");
        assert_eq!(
            first.header(CONTENT_TYPE),
            Some("application/json"),
            "{path}"
        );
        assert_eq!(
            first.header(CACHE_CONTROL),
            Some("public, max-age=120"),
            "{path}"
        );
        let etag = first.header(ETAG).expect("an ETag").to_owned();
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
            "{path}: a strong ETag is a quoted string, got {etag}"
        );
        assert!(
            !first.json()["keys"].as_array().unwrap().is_empty(),
            "{path}"
        );

        let again = get(&http, &app, path, Some(&etag)).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(again.body.is_empty(), "{path}: a 304 has no body");
        assert_eq!(again.header(ETAG), Some(etag.as_str()), "{path}");
        assert_eq!(
            again.header(CACHE_CONTROL),
            Some("public, max-age=120"),
            "{path}"
        );

        // Weak comparison, as If-None-Match asks for, and a list of tags.
        let listed = format!("\"stale\", W/{etag}");
        let listed = get(&http, &app, path, Some(&listed)).await;
        assert_eq!(listed.status, StatusCode::NOT_MODIFIED, "{path}");
        let other = get(&http, &app, path, Some("\"something-else\"")).await;
        assert_eq!(other.status, StatusCode::OK, "{path}");
        assert_eq!(other.body, first.body, "{path}");
    }
}

#[tokio::test]
async fn the_etag_stays_while_the_key_set_stays_and_changes_when_rotation_publishes_a_key() {
    let app = spawn_app_with(&jwks_config()).await;
    let http = reqwest::Client::new();
    let paths = ["/.well-known/jwks.json", "/profiles/managed/jwks.json"];
    let mut before = Vec::new();
    for path in paths {
        before.push(get(&http, &app, path, None).await);
    }

    // Time passing without a key event changes nothing a cache would notice.
    app.advance(60).await;
    for (path, old) in paths.iter().zip(&before) {
        let same = get(&http, &app, path, old.header(ETAG)).await;
        assert_eq!(same.status, StatusCode::NOT_MODIFIED, "{path}");
    }

    // publish_ahead = max_ttl (60s) + jwks_cache (2m): the successor of the first key (which
    // signs for 5m) is published 3m before it takes over, at 2m.
    app.advance(61).await;
    for (path, old) in paths.iter().zip(&before) {
        let changed = get(&http, &app, path, old.header(ETAG)).await;
        assert_eq!(changed.status, StatusCode::OK, "{path}");
        assert_ne!(changed.header(ETAG), old.header(ETAG), "{path}");
        let old_kids = kids(&old.json());
        let new_kids = kids(&changed.json());
        assert!(
            old_kids.is_subset(&new_kids),
            "{path}: {old_kids:?} ⊄ {new_kids:?}"
        );
        assert_eq!(
            new_kids.len(),
            old_kids.len() + 1,
            "{path}: one key published"
        );
    }
    let managed = get(&http, &app, "/profiles/managed/jwks.json", None).await;
    assert_eq!(kids(&managed.json()).len(), 2);
}

#[tokio::test]
async fn an_unknown_profile_answers_404_with_a_json_error_naming_it() {
    let app = spawn_app_with(&jwks_config()).await;
    let http = reqwest::Client::new();
    for path in [
        "/profiles/no-such-profile/jwks.json",
        "/profiles/no-such-profile/.well-known/openid-configuration",
    ] {
        let answer = get(&http, &app, path, None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            answer.header(CONTENT_TYPE),
            Some("application/json"),
            "{path}"
        );
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains("no-such-profile"), "{path}: {error}");
    }
    let status = app
        .client
        .clone()
        .jwks(JwksRequest {
            profile: "no-such-profile".into(),
        })
        .await
        .unwrap_err();
    assert_status(&status, tonic::Code::NotFound, "no-such-profile");
}

// ---- 2. content ---------------------------------------------------------------------------

#[tokio::test]
async fn published_keys_carry_only_public_members_and_never_hmac_or_verify_only_keys() {
    let app = spawn_app_with(&jwks_config()).await;
    let http = reqwest::Client::new();
    let all = get(&http, &app, "/.well-known/jwks.json", None)
        .await
        .json();
    let managed = get(&http, &app, "/profiles/managed/jwks.json", None)
        .await
        .json();
    let managed_kid = managed["keys"][0]["kid"].as_str().unwrap().to_owned();

    let expected: BTreeSet<String> = [managed_kid.as_str(), "rsa-key", "ed-key"]
        .map(String::from)
        .into();
    assert_eq!(kids(&all), expected);
    for jwk in all["keys"].as_array().unwrap() {
        let members: BTreeSet<&str> = jwk.as_object().unwrap().keys().map(|k| &**k).collect();
        let public: BTreeSet<&str> = match jwk["kty"].as_str().unwrap() {
            "EC" => ["kty", "kid", "alg", "use", "crv", "x", "y"].into(),
            "OKP" => ["kty", "kid", "alg", "use", "crv", "x"].into(),
            "RSA" => ["kty", "kid", "alg", "use", "n", "e"].into(),
            other => panic!("a published key of type {other}: {jwk}"),
        };
        assert_eq!(members, public, "{jwk}");
        assert_eq!(jwk["use"], "sig", "{jwk}");
        assert!(jwk.get("d").is_none() && jwk.get("k").is_none(), "{jwk}");
    }
    let text = get(&http, &app, "/.well-known/jwks.json", None).await.body;
    let partner_x = jwk_x_of_pem("ec-p384.pub.pem");
    assert!(
        !text.contains(&partner_x),
        "the partner's key is not ours to publish"
    );
    assert!(!text.contains("partner-ec") && !text.contains("hmac-key"));

    for profile in ["sso", "partner"] {
        let doc = get(&http, &app, &format!("/profiles/{profile}/jwks.json"), None).await;
        assert_eq!(doc.status, StatusCode::OK, "{profile}");
        assert_eq!(doc.json(), serde_json::json!({ "keys": [] }), "{profile}");
    }
    let tenant = get(&http, &app, "/profiles/tenant-a/jwks.json", None)
        .await
        .json();
    assert_eq!(kids(&tenant), BTreeSet::from(["rsa-key".to_owned()]));
}

#[tokio::test]
async fn the_rsa_key_publishes_n_and_e_that_verify_its_tokens_elsewhere() {
    let app = spawn_app_with(&jwks_config()).await;
    let http = reqwest::Client::new();
    let set = get(&http, &app, "/profiles/tenant-a/jwks.json", None)
        .await
        .json();
    let jwk = &set["keys"][0];
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["alg"], "RS256");
    assert_eq!(jwk["e"], "AQAB");
    let n = unb64(jwk["n"].as_str().unwrap());
    assert_eq!(n.len(), 256, "a 2048-bit modulus without leading zeros");
    assert_ne!(n[0], 0);

    let issued = app.issue("tenant-a", "alice").await;
    let claims = verify_with_jwk(jwk, &issued.token, TENANT_ISSUER, app.unix_now()).unwrap();
    assert_eq!(claims.subject.as_deref(), Some("alice"));
    // jwt-simple's own JWK import reads the same key.
    RS256PublicKey::from_jwk(&jwk.to_string()).unwrap();
}

#[tokio::test]
async fn a_managed_key_id_is_the_rfc_7638_thumbprint_of_the_published_key() {
    let app = spawn_app_with(&jwks_config()).await;
    let http = reqwest::Client::new();
    let set = get(&http, &app, "/profiles/managed/jwks.json", None)
        .await
        .json();
    let jwk = &set["keys"][0];
    assert_eq!(
        (&jwk["kty"], &jwk["crv"], &jwk["alg"]),
        (&"EC".into(), &"P-256".into(), &"ES256".into())
    );
    // RFC 7638 §3.2: the required members in lexicographic order, no whitespace.
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk["x"].as_str().unwrap(),
        jwk["y"].as_str().unwrap()
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    let thumbprint = b64(digest.as_ref());
    assert_eq!(jwk["kid"], thumbprint.as_str());
    // And jwt-simple, reading the JWK on its own, computes the same.
    let theirs = ES256PublicKey::from_jwk(&jwk.to_string()).unwrap();
    assert_eq!(theirs.jwk_thumbprint(), thumbprint);

    let issued = app.issue("managed", "alice").await;
    assert_eq!(issued.key_id, thumbprint);
    verify_with_jwk(jwk, &issued.token, ISSUER, app.unix_now()).unwrap();
}

#[tokio::test]
async fn the_jwks_rpc_returns_the_http_document_typed_keys_and_the_cache_lifetime() {
    let app = spawn_app_with(&jwks_config()).await;
    let http = reqwest::Client::new();
    for profile in ["managed", "tenant-a", "internal", "sso", "partner"] {
        let answer = app
            .client
            .clone()
            .jwks(JwksRequest {
                profile: profile.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let served = get(&http, &app, &format!("/profiles/{profile}/jwks.json"), None).await;
        assert_eq!(answer.json, served.body, "{profile}");
        assert_eq!(
            answer.max_age,
            Some(prost_types::Duration {
                seconds: 120,
                nanos: 0
            }),
            "{profile}"
        );
        let document = served.json();
        let documented = document["keys"].as_array().unwrap();
        assert_eq!(answer.keys.len(), documented.len(), "{profile}");
        for (typed, jwk) in answer.keys.iter().zip(documented) {
            let member = |name: &str| jwk.get(name).and_then(Value::as_str).unwrap_or("");
            let fields = [
                ("kty", &typed.kty),
                ("kid", &typed.kid),
                ("alg", &typed.alg),
                ("use", &typed.r#use),
                ("crv", &typed.crv),
                ("x", &typed.x),
                ("y", &typed.y),
                ("n", &typed.n),
                ("e", &typed.e),
            ];
            for (name, value) in fields {
                assert_eq!(value.as_str(), member(name), "{profile}: {name}");
            }
        }
    }
}

// ---- 3. discovery -------------------------------------------------------------------------

#[tokio::test]
async fn discovery_for_an_issuer_at_the_root_is_at_the_well_known_root() {
    let app = spawn_app_with(&jwks_config()).await;
    let http = reqwest::Client::new();
    let answer = get(&http, &app, "/.well-known/openid-configuration", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header(CONTENT_TYPE), Some("application/json"));
    assert_eq!(answer.header(CACHE_CONTROL), Some("public, max-age=120"));
    assert!(answer.header(ETAG).is_some());
    let doc = answer.json();
    assert_eq!(doc["issuer"], ISSUER);
    assert_eq!(
        doc["jwks_uri"],
        "https://auth.example.test/.well-known/jwks.json"
    );
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );

    // The jwks_uri's path on this server holds the issuer's keys.
    let jwks = get(&http, &app, "/.well-known/jwks.json", None)
        .await
        .json();
    let managed = get(&http, &app, "/profiles/managed/jwks.json", None)
        .await
        .json();
    assert!(kids(&managed).is_subset(&kids(&jwks)));
}

#[tokio::test]
async fn discovery_for_an_issuer_with_a_path_lists_only_that_issuers_keys() {
    let app = spawn_app_with(&jwks_config()).await;
    let http = reqwest::Client::new();
    let doc = get(
        &http,
        &app,
        "/tenants/a/.well-known/openid-configuration",
        None,
    )
    .await
    .json();
    assert_eq!(doc["issuer"], TENANT_ISSUER);
    assert_eq!(
        doc["jwks_uri"],
        "https://auth.example.test/tenants/a/.well-known/jwks.json"
    );
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"])
    );

    let answer = get(&http, &app, "/tenants/a/.well-known/jwks.json", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header(CACHE_CONTROL), Some("public, max-age=120"));
    assert_eq!(kids(&answer.json()), BTreeSet::from(["rsa-key".to_owned()]));

    // Paths no issuer has, and documents that do not exist, find nothing.
    for path in [
        "/tenants/b/.well-known/openid-configuration",
        "/tenants/.well-known/jwks.json",
        "/tenants/a/jwks.json",
    ] {
        let answer = get(&http, &app, path, None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert!(answer.json()["error"].is_string(), "{path}");
    }
}

#[tokio::test]
async fn discovery_for_an_issuer_that_is_not_a_url_points_at_the_host_it_was_asked_on() {
    let app = spawn_app_with(&jwks_config()).await;
    let http = reqwest::Client::new();
    let path = "/profiles/internal/.well-known/openid-configuration";
    let doc = get(&http, &app, path, None).await.json();
    assert_eq!(doc["issuer"], "token-authority-internal");
    assert_eq!(
        doc["jwks_uri"],
        format!("{}/profiles/internal/jwks.json", app.http_base)
    );
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        serde_json::json!(["EdDSA"])
    );

    let behind_a_name = http
        .get(format!("{}{path}", app.http_base))
        .header(HOST, "keys.internal.test:8080")
        .send()
        .await
        .unwrap();
    let doc: Value = serde_json::from_str(&behind_a_name.text().await.unwrap()).unwrap();
    assert_eq!(
        doc["jwks_uri"],
        "http://keys.internal.test:8080/profiles/internal/jwks.json"
    );

    // The jwks_uri it names serves the profile's key, which verifies the profile's tokens.
    let jwks = get(&http, &app, "/profiles/internal/jwks.json", None)
        .await
        .json();
    let issued = app.issue("internal", "alice").await;
    verify_with_jwk(
        &jwks["keys"][0],
        &issued.token,
        "token-authority-internal",
        app.unix_now(),
    )
    .unwrap();

    // A profile with no issuer has no discovery document.
    let config = format!(
        "[[keys]]\nid = \"ed-key\"\nalgorithm = \"EdDSA\"\nprivate_key_file = {:?}\n\n[profiles.anonymous]\nsigning_key = \"ed-key\"\n",
        fixture("ed25519.pem")
    );
    let app = spawn_app_with(&config).await;
    let answer = get(
        &http,
        &app,
        "/profiles/anonymous/.well-known/openid-configuration",
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("anonymous")
    );
}

// ---- 4. a relying party across many rotations ----------------------------------------------

#[tokio::test]
async fn a_relying_party_that_caches_the_key_set_for_max_age_verifies_every_token_across_forty_rotations()
 {
    let run =
        relying_party_across_rotations("ES256", "5m", Refetch::OnExpiryOrUnknownKid, 40).await;
    run.assert_clean();
}

#[tokio::test]
async fn a_relying_party_that_refetches_only_when_max_age_expires_still_verifies_every_token() {
    // No fallback on an unknown kid: every key must be in the cached set before its first
    // token, which is what publishing a key max_ttl + jwks_cache ahead promises.
    let run = relying_party_across_rotations("ES256", "5m", Refetch::OnlyOnExpiry, 40).await;
    run.assert_clean();
}

#[tokio::test]
async fn keys_published_ahead_reach_a_strict_relying_party_even_when_rotation_outpaces_the_lead() {
    // rotate_every (1m) is shorter than publish_ahead (60s + 30s), so two keys wait ahead.
    let run = relying_party_across_rotations("ES256", "1m", Refetch::OnlyOnExpiry, 40).await;
    run.assert_clean();
}

#[tokio::test]
async fn a_strict_relying_party_verifies_every_eddsa_token_across_forty_rotations() {
    let run = relying_party_across_rotations("EdDSA", "2m", Refetch::OnlyOnExpiry, 40).await;
    run.assert_clean();
}

/// When the simulated relying party fetches the key set again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refetch {
    /// When its cached copy is older than max-age, or a token names a kid it does not hold.
    OnExpiryOrUnknownKid,
    /// Only when its cached copy is older than max-age.
    OnlyOnExpiry,
}

/// What a run of the relying party saw.
struct Run {
    /// How many times the signing key had to change.
    rotations: usize,
    rotate_every: u64,
    elapsed: u64,
    tokens: usize,
    reverified: usize,
    signing_kids: BTreeSet<String>,
    published_kids: BTreeSet<String>,
    fetches: usize,
    not_modified: usize,
    unknown_kid_refetches: usize,
    failures: Vec<String>,
}

impl Run {
    fn assert_clean(&self) {
        println!(
            "{} s, rotate_every {} s: {} tokens, {} re-verified, {} signing kids ({} rotations), {} published kids, {} fetches ({} answered 304), {} refetches for an unknown kid",
            self.elapsed,
            self.rotate_every,
            self.tokens,
            self.reverified,
            self.signing_kids.len(),
            self.signing_kids.len().saturating_sub(1),
            self.published_kids.len(),
            self.fetches,
            self.not_modified,
            self.unknown_kid_refetches,
        );
        assert!(
            self.failures.is_empty(),
            "{} of {} verifications failed:\n{}",
            self.failures.len(),
            self.tokens + self.reverified,
            self.failures.join("\n")
        );
        assert!(
            self.signing_kids.len() > self.rotations,
            "only {} kids signed in {} s",
            self.signing_kids.len(),
            self.elapsed
        );
        assert!(self.signing_kids.is_subset(&self.published_kids));
    }
}

/// Runs a managed `alg` profile until its signing key has changed `rotations` times, moving the
/// clock 7 to 45 seconds at a time, and has a relying party verify each new token and every
/// earlier one not yet expired, using only the key set it fetched over HTTP.
///
/// Keys sign a little longer than rotate_every here: the test runs rotation only after each
/// step, so a successor is planned late and its predecessor is stretched to keep the lead.
async fn relying_party_across_rotations(
    alg: &str,
    rotate_every: &str,
    refetch: Refetch,
    rotations: usize,
) -> Run {
    let config = format!(
        r#"
[server]
jwks_cache = "30s"

[profiles.rotating]
issuer = "{ISSUER}"
ttl = "60s"
max_ttl = "60s"
[profiles.rotating.rotation]
algorithm = "{alg}"
rotate_every = "{rotate_every}"
"#
    );
    let app = spawn_app_with(&config).await;
    let rotate_every = humantime::parse_duration(rotate_every).unwrap().as_secs();
    let mut rp = RelyingParty::new("/profiles/rotating/jwks.json", ISSUER, refetch);
    let start = app.unix_now();
    let mut run = Run {
        rotations,
        rotate_every,
        elapsed: 0,
        tokens: 0,
        reverified: 0,
        signing_kids: BTreeSet::new(),
        published_kids: BTreeSet::new(),
        fetches: 0,
        not_modified: 0,
        unknown_kid_refetches: 0,
        failures: Vec::new(),
    };
    // (token, its exp, its subject, its kid)
    let mut recent: VecDeque<(String, u64, String, String)> = VecDeque::new();
    let mut steps = Steps(0x9E37_79B9);
    // The bound only stops a schedule that has stalled; assert_clean then reports it.
    let give_up = start + 3 * rotate_every * rotations as u64;
    while run.signing_kids.len() <= rotations && app.unix_now() < give_up {
        app.advance(steps.next()).await;
        let now = app.unix_now();
        let at = now - start;

        let subject = format!("user-{}", run.tokens);
        let issued = app.issue("rotating", &subject).await;
        let exp = issued.expires_at.unwrap().seconds as u64;
        assert_eq!(header(&issued.token)["kid"], issued.key_id.as_str());
        assert_eq!(header(&issued.token)["alg"], alg);
        run.tokens += 1;
        run.signing_kids.insert(issued.key_id.clone());
        if let Err(e) = rp.check(&app, &issued.token, &subject, now).await {
            run.failures
                .push(format!("t+{at}s: new token of kid {}: {e}", issued.key_id));
        }

        recent.retain(|(_, exp, _, _)| now < *exp);
        for (token, exp, subject, kid) in &recent {
            run.reverified += 1;
            if let Err(e) = rp.check(&app, token, subject, now).await {
                run.failures.push(format!(
                    "t+{at}s: token of kid {kid} expiring at t+{}s: {e}",
                    exp - start
                ));
            }
        }
        recent.push_back((issued.token, exp, subject, issued.key_id));
    }
    run.elapsed = app.unix_now() - start;
    run.published_kids = rp.seen;
    run.fetches = rp.fetches;
    run.not_modified = rp.not_modified;
    run.unknown_kid_refetches = rp.unknown_kid_refetches;
    run
}

/// A deterministic sequence of clock steps of 7 to 45 seconds (xorshift32).
struct Steps(u32);

impl Steps {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        7 + u64::from(x % 39)
    }
}

/// A service that trusts our tokens and knows only the key set URL: it caches the set for the
/// max-age it was served with (on the test's clock), revalidates with If-None-Match, and
/// verifies with jwt-simple and the cached key alone.
struct RelyingParty {
    http: reqwest::Client,
    path: String,
    issuer: String,
    refetch: Refetch,
    cache: Option<Cached>,
    seen: BTreeSet<String>,
    fetches: usize,
    not_modified: usize,
    unknown_kid_refetches: usize,
}

struct Cached {
    fetched_at: u64,
    max_age: u64,
    etag: String,
    body: String,
    keys: HashMap<String, Value>,
}

impl RelyingParty {
    fn new(path: &str, issuer: &str, refetch: Refetch) -> RelyingParty {
        RelyingParty {
            http: reqwest::Client::new(),
            path: path.to_owned(),
            issuer: issuer.to_owned(),
            refetch,
            cache: None,
            seen: BTreeSet::new(),
            fetches: 0,
            not_modified: 0,
            unknown_kid_refetches: 0,
        }
    }

    /// Verifies `token` for `subject` at clock time `now`, fetching at most once.
    async fn check(
        &mut self,
        app: &TestApp,
        token: &str,
        subject: &str,
        now: u64,
    ) -> Result<(), String> {
        // Fresh while its age is at most max-age: holding a copy one second longer than
        // RFC 9111 allows only makes the server's promise harder to keep.
        let stale = self
            .cache
            .as_ref()
            .is_none_or(|c| now > c.fetched_at + c.max_age);
        let mut fetched = false;
        if stale {
            self.fetch(app, now).await;
            fetched = true;
        }
        let kid = header(token)["kid"].as_str().unwrap_or("").to_owned();
        let holds = |rp: &RelyingParty| rp.cache.as_ref().unwrap().keys.contains_key(&kid);
        if !holds(self) && !fetched && self.refetch == Refetch::OnExpiryOrUnknownKid {
            self.unknown_kid_refetches += 1;
            self.fetch(app, now).await;
        }
        let cache = self.cache.as_ref().unwrap();
        let jwk = cache.keys.get(&kid).ok_or_else(|| {
            format!(
                "kid {kid} is not in the key set fetched at t-{}s (max-age {}s), which holds {:?}",
                now - cache.fetched_at,
                cache.max_age,
                cache.keys.keys().collect::<BTreeSet<_>>()
            )
        })?;
        let claims = verify_with_jwk(jwk, token, &self.issuer, now)?;
        if claims.subject.as_deref() != Some(subject) {
            return Err(format!("subject {:?}, not {subject:?}", claims.subject));
        }
        Ok(())
    }

    async fn fetch(&mut self, app: &TestApp, now: u64) {
        self.fetches += 1;
        let etag = self.cache.as_ref().map(|c| c.etag.as_str());
        let answer = get(&self.http, app, &self.path, etag).await;
        let max_age = max_age(&answer);
        let etag = answer.header(ETAG).unwrap().to_owned();
        if answer.status == StatusCode::NOT_MODIFIED {
            self.not_modified += 1;
            let cache = self.cache.as_mut().unwrap();
            // The 304 must mean what it says: the set has not changed.
            let current = get(&self.http, app, &self.path, None).await;
            assert_eq!(current.body, cache.body, "a 304 answered a changed key set");
            assert_eq!(etag, cache.etag);
            cache.fetched_at = now;
            cache.max_age = max_age;
            return;
        }
        assert_eq!(answer.status, StatusCode::OK);
        let keys: HashMap<String, Value> = answer.json()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (k["kid"].as_str().unwrap().to_owned(), k.clone()))
            .collect();
        self.seen.extend(keys.keys().cloned());
        self.cache = Some(Cached {
            fetched_at: now,
            max_age,
            etag,
            body: answer.body,
            keys,
        });
    }
}

// ---- 5. removal ---------------------------------------------------------------------------

#[tokio::test]
async fn a_retired_key_leaves_the_key_set_once_max_ttl_and_leeway_have_passed_and_not_before() {
    let config = format!(
        r#"
[server]
jwks_cache = "30s"

[profiles.rotating]
issuer = "{ISSUER}"
ttl = "60s"
max_ttl = "60s"
leeway = "5s"
[profiles.rotating.rotation]
algorithm = "ES256"
rotate_every = "5m"
"#
    );
    let app = spawn_app_with(&config).await;
    let http = reqwest::Client::new();
    let path = "/profiles/rotating/jwks.json";
    let start = app.unix_now();
    let first = app.issue("rotating", "alice").await.key_id;

    // The successor is published publish_ahead (60s + 30s) before the first key's 5m end.
    app.advance_to(start + 210).await;
    let published = kids(&get(&http, &app, path, None).await.json());
    assert_eq!(published.len(), 2);
    assert!(published.contains(&first));

    app.advance_to(start + 299).await;
    let last_of_first = app.issue("rotating", "alice").await;
    assert_eq!(last_of_first.key_id, first, "the first key signs until 5m");
    app.advance_to(start + 300).await;
    let second = app.issue("rotating", "alice").await.key_id;
    assert_ne!(second, first, "the first key retires at 5m");

    // Retired at 300: its tokens live up to max_ttl (60s) and are accepted leeway (5s) longer.
    app.advance_to(start + 364).await;
    let set = get(&http, &app, path, None).await.json();
    assert!(
        kids(&set).contains(&first),
        "still published 1s before removal"
    );
    let jwk = set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == first.as_str())
        .unwrap();
    // Its last token checks out against the key still published, up to its exp.
    let exp = last_of_first.expires_at.unwrap().seconds as u64;
    assert_eq!(exp, start + 359);
    verify_with_jwk(jwk, &last_of_first.token, ISSUER, exp).unwrap();

    app.advance_to(start + 365).await;
    let set = get(&http, &app, path, None).await.json();
    assert!(
        !kids(&set).contains(&first),
        "gone at retirement + max_ttl + leeway"
    );
    assert!(kids(&set).contains(&second));
    let all = get(&http, &app, "/.well-known/jwks.json", None)
        .await
        .json();
    assert!(!kids(&all).contains(&first));
}

// ---- helpers ------------------------------------------------------------------------------

/// An HTTP answer, read whole.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: reqwest::header::HeaderName) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// GETs `path` from the test server's HTTP listener, with If-None-Match if given.
async fn get(
    http: &reqwest::Client,
    app: &TestApp,
    path: &str,
    if_none_match: Option<&str>,
) -> Answer {
    let mut request = http.get(format!("{}{path}", app.http_base));
    if let Some(tag) = if_none_match {
        request = request.header(IF_NONE_MATCH, tag);
    }
    let response = request.send().await.unwrap();
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

/// The max-age of a `Cache-Control: public, max-age=N` answer.
fn max_age(answer: &Answer) -> u64 {
    let value = answer
        .header(CACHE_CONTROL)
        .expect("a Cache-Control header");
    value
        .split(',')
        .find_map(|d| d.trim().strip_prefix("max-age="))
        .unwrap_or_else(|| panic!("no max-age in {value:?}"))
        .parse()
        .unwrap()
}

fn kids(set: &Value) -> BTreeSet<String> {
    set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Verifies `token` with jwt-simple and nothing but the public key in `jwk`, at `now` on the
/// test's clock, requiring `issuer` and the JWK's kid and algorithm.
fn verify_with_jwk(jwk: &Value, token: &str, issuer: &str, now: u64) -> Result<JoseClaims, String> {
    let member = |name: &str| jwk[name].as_str().ok_or(format!("no {name} in {jwk}"));
    let kid = member("kid")?;
    let alg = member("alg")?;
    let token_alg = header(token)["alg"].as_str().unwrap_or("").to_owned();
    if token_alg != alg {
        return Err(format!("token alg {token_alg}, key {kid} is for {alg}"));
    }
    let options = Some(VerificationOptions {
        time_tolerance: Some(jwt_simple::prelude::Duration::from_secs(0)),
        artificial_time: Some(jwt_simple::prelude::Duration::from_secs(now)),
        allowed_issuers: Some(HashSet::from([issuer.to_owned()])),
        required_key_id: Some(kid.to_owned()),
        ..Default::default()
    });
    let result = match (member("kty")?, alg) {
        ("EC", "ES256") => {
            if member("crv")? != "P-256" {
                return Err(format!("{kid}: ES256 with curve {}", member("crv")?));
            }
            let mut point = vec![0x04];
            point.extend(unb64(member("x")?));
            point.extend(unb64(member("y")?));
            ES256PublicKey::from_bytes(&point)
                .map_err(|e| format!("{kid}: {e}"))?
                .verify_token::<Map<String, Value>>(token, options)
        }
        ("OKP", "EdDSA") => {
            if member("crv")? != "Ed25519" {
                return Err(format!("{kid}: EdDSA with curve {}", member("crv")?));
            }
            Ed25519PublicKey::from_bytes(&unb64(member("x")?))
                .map_err(|e| format!("{kid}: {e}"))?
                .verify_token::<Map<String, Value>>(token, options)
        }
        ("RSA", "RS256") => {
            RS256PublicKey::from_components(&unb64(member("n")?), &unb64(member("e")?))
                .map_err(|e| format!("{kid}: {e}"))?
                .verify_token::<Map<String, Value>>(token, options)
        }
        (kty, alg) => return Err(format!("{kid}: no verifier for {kty}/{alg}")),
    };
    result.map_err(|e| format!("jwt-simple refused it with key {kid}: {e}"))
}

/// The base64url x coordinate of the EC public key in a fixture, to look for in documents.
fn jwk_x_of_pem(name: &str) -> String {
    let key = jwt_simple::prelude::ES384PublicKey::from_pem(&fixture_text(name)).unwrap();
    let jwk: Value = serde_json::from_str(&key.to_jwk()).unwrap();
    jwk["x"].as_str().unwrap().to_owned()
}
