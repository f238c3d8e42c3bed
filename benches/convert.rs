//! What the gRPC conversions cost on their own, without a server: the protobuf bytes of a
//! request → the domain request, and the domain answer → the protobuf bytes of the response,
//! for `Issue` and `Verify` (valid and refused). Each row is what one call pays between tonic
//! and the core; the group `core` beside them times `token::issue` and `token::verify` on the
//! same HS256 profile and request, so a change in either side shows against the other.
//!
//! Run: `cargo bench --bench convert`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use prost::Message as _;
use prost_types::value::Kind;
use token_authority::api::convert::{
    claims_from_proto, issued_to_proto, refusal_to_proto, ttl_from_proto, verified_to_proto,
};
use token_authority::core::keys::{Algorithm, HmacSecret, Key, KeyId};
use token_authority::core::profile::{Profile, ProfileName, ProfileSpec};
use token_authority::core::random::Random;
use token_authority::core::token::{self, IssueRequest};
use token_authority::proto;

/// The request `benches/grpc.sh` sends (examples/grpc_bench.rs): a subject and two claims.
fn issue_request() -> proto::IssueRequest {
    let text = |s: &str| prost_types::Value {
        kind: Some(Kind::StringValue(s.into())),
    };
    proto::IssueRequest {
        profile: "hs256".into(),
        subject: "user-1234".into(),
        claims: Some(prost_types::Struct {
            fields: [
                ("role".to_owned(), text("editor")),
                ("email".to_owned(), text("user-1234@example.com")),
            ]
            .into(),
        }),
        ..Default::default()
    }
}

fn profile() -> Profile {
    let id = KeyId::parse("bench-hs256").expect("a valid kid");
    let secret = HmacSecret::new(Algorithm::HS256, vec![7; 32]).expect("a 32-byte secret");
    let key = Key::from_hmac_secret(id, secret, Algorithm::HS256).expect("an HS256 key");
    let mut spec = ProfileSpec::new(
        ProfileName::parse("hs256").expect("a valid profile name"),
        Some(Arc::new(key)),
    );
    spec.issuer = Some("https://auth.example.com".into());
    Profile::new(spec).expect("the bench profile is valid")
}

/// The domain request the service builds from the wire request.
fn domain_request(req: proto::IssueRequest) -> IssueRequest {
    IssueRequest {
        claims: claims_from_proto(req.claims).expect("the claims convert"),
        ttl: ttl_from_proto(req.ttl).expect("the ttl converts"),
        subject: req.subject,
        audience: req.audience,
    }
}

fn convert(c: &mut Criterion) {
    let profile = profile();
    let random = Random::new();
    let now = SystemTime::now();
    let request_bytes = issue_request().encode_to_vec();
    let issued = token::issue(&profile, domain_request(issue_request()), now, &random)
        .expect("the bench token issues");
    let verified = token::verify(&profile, &issued.token, None, now).expect("it verifies");
    let refusal = token::verify(
        &profile,
        &issued.token,
        None,
        now + Duration::from_secs(600),
    )
    .expect_err("it has expired by then");
    let verify_bytes = proto::VerifyRequest {
        profile: "hs256".into(),
        token: issued.token.clone(),
        ..Default::default()
    }
    .encode_to_vec();
    // The rows must measure what the service answers, not an empty message.
    let answer = verified_to_proto(verified.clone());
    assert!(answer.valid && answer.claims.is_some() && answer.header.is_some());
    assert_eq!(answer.subject, "user-1234");

    let mut group = c.benchmark_group("convert");
    group.bench_function("issue_request", |b| {
        b.iter(|| {
            let req = proto::IssueRequest::decode(black_box(request_bytes.as_slice()))
                .expect("the request decodes");
            domain_request(req)
        })
    });
    group.bench_function("issue_response", |b| {
        b.iter_batched(
            || issued.clone(),
            |issued| issued_to_proto(issued).encode_to_vec(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("verify_request", |b| {
        b.iter(|| {
            proto::VerifyRequest::decode(black_box(verify_bytes.as_slice()))
                .expect("the request decodes")
        })
    });
    group.bench_function("verify_response_valid", |b| {
        b.iter_batched(
            || verified.clone(),
            |verified| verified_to_proto(verified).encode_to_vec(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("verify_response_refused", |b| {
        b.iter_batched(
            || refusal.clone(),
            |refusal| refusal_to_proto(refusal).encode_to_vec(),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("core");
    group.bench_function("issue_hs256", |b| {
        b.iter_batched(
            || domain_request(issue_request()),
            |request| token::issue(&profile, request, now, &random),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("verify_hs256", |b| {
        b.iter(|| token::verify(&profile, black_box(&issued.token), None, now))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = convert
}
criterion_main!(benches);
