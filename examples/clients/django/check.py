"""Django REST framework simplejwt accepts what token-authority's simplejwt profiles hand out.

Runs against a service on examples/simplejwt.toml with DJANGO_JWT_SIGNING_KEY set to the same
secret given here as --signing-key. It obtains a pair (IssuePair: simplejwt's
TokenObtainPairView), refreshes it (Refresh: TokenRefreshView with ROTATE_REFRESH_TOKENS), and
hands every token to simplejwt's own classes, configured as a Django project would configure
them, so a Django service keeps its JWTAuthentication while signing moves to the service:

    python examples/clients/django/check.py --addr 127.0.0.1:50051 --signing-key "$KEY"
"""

import argparse
import os
import sys
import tempfile

import django
from django.conf import settings

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
from client import load_stubs  # noqa: E402  (the stub generator of the Python client)

TIMEOUT_S = 5


def expect(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    print(f"  ok: {what}")


def configure(signing_key):
    settings.configure(
        SECRET_KEY="not-used-for-tokens",
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "rest_framework_simplejwt",
        ],
        DATABASES={},
        USE_TZ=True,
        SIMPLE_JWT={
            "ALGORITHM": "HS256",
            "SIGNING_KEY": signing_key,
            "USER_ID_CLAIM": "user_id",
            "TOKEN_TYPE_CLAIM": "token_type",
            "JTI_CLAIM": "jti",
        },
    )
    django.setup()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", required=True)
    parser.add_argument("--signing-key", required=True)
    args = parser.parse_args()
    configure(args.signing_key)

    import grpc
    from rest_framework_simplejwt.exceptions import TokenError
    from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

    repo = os.path.join(os.path.dirname(__file__), "..", "..", "..")
    with tempfile.TemporaryDirectory() as out_dir:
        pb2, pb2_grpc = load_stubs(os.path.join(repo, "proto"), out_dir)
        stub = pb2_grpc.TokenAuthorityStub(grpc.insecure_channel(args.addr))

        print("IssuePair on access (simplejwt's TokenObtainPairView):")
        pair = stub.IssuePair(pb2.IssueRequest(profile="access", subject="42"), timeout=TIMEOUT_S)
        access = AccessToken(pair.access.token)
        expect(access["user_id"] == "42", "simplejwt's AccessToken accepts the access token")
        refresh = RefreshToken(pair.refresh.token)
        expect(refresh["user_id"] == "42", "simplejwt's RefreshToken accepts the refresh token")

        print("Refresh (TokenRefreshView with ROTATE_REFRESH_TOKENS):")
        renewed = stub.Refresh(
            pb2.RefreshRequest(profile="access", refresh_token=pair.refresh.token), timeout=TIMEOUT_S
        )
        new_access = AccessToken(renewed.access.token)
        expect(new_access["user_id"] == "42", "the access token from Refresh is one simplejwt accepts")
        expect(
            new_access["jti"] != access["jti"] and renewed.refresh.token != pair.refresh.token,
            "Refresh returns a new access token and a new refresh token",
        )
        RefreshToken(renewed.refresh.token)
        expect(True, "simplejwt accepts the rotated refresh token")

        print("What simplejwt refuses:")
        try:
            AccessToken(pair.refresh.token)
            expect(False, "a refresh token is refused as an access token")
        except TokenError:
            expect(True, "a refresh token is refused as an access token")
        head, body, sig = renewed.access.token.split(".")
        forged = f"{head}.{body}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}"
        try:
            AccessToken(forged)
            expect(False, "a token with a changed signature is refused")
        except TokenError:
            expect(True, "a token with a changed signature is refused")

        print("Revoke with the refresh token (the blacklist's logout):")
        stub.Revoke(pb2.RevokeRequest(profile="refresh", token=renewed.refresh.token), timeout=TIMEOUT_S)
        verified = stub.Verify(
            pb2.VerifyRequest(token=renewed.access.token, profile="access"), timeout=TIMEOUT_S
        )
        expect(
            not verified.valid and pb2.VerifyFailure.Name(verified.failure) == "VERIFY_FAILURE_REVOKED",
            "after logout the service answers REVOKED for the family's access token",
        )
        try:
            stub.Refresh(
                pb2.RefreshRequest(profile="access", refresh_token=renewed.refresh.token),
                timeout=TIMEOUT_S,
            )
            expect(False, "a revoked refresh token cannot refresh")
        except grpc.RpcError as e:
            expect(e.code() == grpc.StatusCode.UNAUTHENTICATED, "a revoked refresh token cannot refresh")
    print("django: all checks passed")


if __name__ == "__main__":
    main()
