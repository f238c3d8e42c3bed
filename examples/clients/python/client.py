"""Issue, verify and build a login link with token-authority, from Python.

    python client.py --addr 127.0.0.1:50051

Runs against the embedded default configuration (examples/default.toml): the `default` profile
(ES256) for Issue and Verify, the `sso` profile (HS256, login URL) for LoginUrl. It checks every
answer and exits 1 on the first unexpected one, so examples/clients/run.sh uses it as a test.
"""

import argparse
import importlib
import importlib.resources
import json
import sys
import tempfile
from pathlib import Path

import grpc
from google.protobuf import duration_pb2, json_format, struct_pb2
from grpc_tools import protoc

PROTO = "tokenauthority/v1/token_authority.proto"
REPO_PROTO_DIR = Path(__file__).resolve().parents[3] / "proto"
# Every call gets a deadline; without one a call to a stuck server waits forever.
TIMEOUT_S = 5


class Unexpected(Exception):
    """An answer the program did not expect: the run fails."""


def expect(condition, what):
    if not condition:
        raise Unexpected(what)


def load_stubs(proto_dir, out_dir):
    """Generates the message and service modules from our proto into out_dir and imports them.

    A service would rather run grpc_tools.protoc at build time; generating here keeps generated
    code out of the repository and always in step with the proto.
    """
    well_known = importlib.resources.files("grpc_tools") / "_proto"  # struct.proto, duration.proto, ...
    status = protoc.main([
        "protoc",
        f"-I{proto_dir}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(Path(proto_dir) / PROTO),
    ])
    expect(status == 0, f"protoc could not compile {PROTO} (status {status})")
    sys.path.insert(0, str(out_dir))
    pb2 = importlib.import_module("tokenauthority.v1.token_authority_pb2")
    pb2_grpc = importlib.import_module("tokenauthority.v1.token_authority_pb2_grpc")
    return pb2, pb2_grpc


def tamper(token):
    """Changes the first character of the signature, so that only the signature is wrong.

    The last character is left alone: it carries padding bits, and changing those makes the part
    non-canonical base64url, which is refused as MALFORMED before any signature check.
    """
    header, payload, signature = token.split(".")
    first = "B" if signature[0] == "A" else "A"
    return ".".join([header, payload, first + signature[1:]])


def expect_error(call, request, code):
    """Makes a call that must fail with `code`, and prints the code and message as a caller would log them."""
    try:
        call(request, timeout=TIMEOUT_S)
    except grpc.RpcError as err:
        print(f"  -> {err.code().name}: {err.details()}")
        expect(err.code() == code, f"expected {code.name}, got {err.code().name}: {err.details()}")
        return
    raise Unexpected(f"expected {code.name}, the call succeeded")


def run(stub, pb2):
    # Issue: claims are a google.protobuf.Struct, the lifetime a Duration.
    claims = struct_pb2.Struct()
    claims.update({"role": "admin", "teams": ["billing", "search"]})
    issued = stub.Issue(
        pb2.IssueRequest(subject="user-42", claims=claims, ttl=duration_pb2.Duration(seconds=120)),
        timeout=TIMEOUT_S,
    )
    lifetime = issued.expires_at.seconds - issued.issued_at.seconds
    print(f"Issue: {issued.algorithm} token, kid {issued.key_id}, jti {issued.token_id}, lives {lifetime}s")
    expect(issued.token.count(".") == 2, "Issue answered something that is not a JWS compact token")
    expect(issued.algorithm == "ES256", f"the default profile signs with ES256, not {issued.algorithm}")
    expect(lifetime == 120, f"asked for a 120s token, got {lifetime}s")

    # Verify: a valid answer carries the subject and the claims.
    verified = stub.Verify(pb2.VerifyRequest(token=issued.token), timeout=TIMEOUT_S)
    # Struct numbers are doubles; MessageToDict gives exp and iat back as 1795438827.0.
    got = json_format.MessageToDict(verified.claims)
    print(f"Verify: valid={verified.valid} subject={verified.subject} claims={json.dumps(got, sort_keys=True)}")
    expect(verified.valid, f"our own token was refused: {pb2.VerifyFailure.Name(verified.failure)}: {verified.detail}")
    expect(verified.subject == "user-42", f"subject is {verified.subject!r}")
    expect(got.get("role") == "admin" and got.get("teams") == ["billing", "search"], f"claims are {got}")
    expect(verified.token_id == issued.token_id, "Verify's jti is not Issue's")

    # A refused token is an answer, not an error: valid is false, failure and detail say why.
    refused = stub.Verify(pb2.VerifyRequest(token=tamper(issued.token)), timeout=TIMEOUT_S)
    failure = pb2.VerifyFailure.Name(refused.failure)
    print(f"Verify (tampered): valid={refused.valid} failure={failure} detail={refused.detail!r}")
    expect(not refused.valid, "a tampered token was accepted")
    expect(refused.failure == pb2.VERIFY_FAILURE_BAD_SIGNATURE, f"expected VERIFY_FAILURE_BAD_SIGNATURE, got {failure}")
    expect(refused.detail, "a refusal came without a detail")

    # LoginUrl: the sso profile wraps a 30-second HS256 token in its login URL template.
    login = stub.LoginUrl(
        pb2.LoginUrlRequest(profile="sso", subject="a7b3c@auth.local", next="/workspace/1/"),
        timeout=TIMEOUT_S,
    )
    print(f"LoginUrl: {login.url[:70]}... (expires {login.expires_at.ToJsonString()})")
    expect(login.url.startswith("http://127.0.0.1:8000/sso-auto-login/?token="), f"unexpected URL {login.url}")
    expect(login.token in login.url and login.url.endswith("&next=%2Fworkspace%2F1%2F"), f"unexpected URL {login.url}")
    sso = stub.Verify(pb2.VerifyRequest(token=login.token, profile="sso"), timeout=TIMEOUT_S)
    expect(sso.valid and sso.subject == "a7b3c@auth.local", f"the login token does not verify: {sso.detail}")

    # Caller mistakes are gRPC errors; the message names the field and the reason.
    print("Issue under a profile that does not exist:")
    expect_error(stub.Issue, pb2.IssueRequest(profile="billing", subject="user-42"), grpc.StatusCode.NOT_FOUND)
    print("LoginUrl with a next outside the allowed origins:")
    expect_error(
        stub.LoginUrl,
        pb2.LoginUrlRequest(profile="sso", subject="a7b3c@auth.local", next="https://evil.example/"),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="127.0.0.1:50051", help="the service's gRPC address")
    parser.add_argument("--proto-dir", default=str(REPO_PROTO_DIR), help="the root of the .proto files")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="token-authority-stubs-") as out_dir:
        try:
            pb2, pb2_grpc = load_stubs(args.proto_dir, out_dir)
            with grpc.insecure_channel(args.addr) as channel:
                grpc.channel_ready_future(channel).result(timeout=TIMEOUT_S)
                run(pb2_grpc.TokenAuthorityStub(channel), pb2)
        except grpc.FutureTimeoutError:
            print(f"FAIL: no connection to {args.addr} within {TIMEOUT_S}s", file=sys.stderr)
            return 1
        except grpc.RpcError as err:
            print(f"FAIL: unexpected error {err.code().name}: {err.details()}", file=sys.stderr)
            return 1
        except Unexpected as err:
            print(f"FAIL: {err}", file=sys.stderr)
            return 1
    print("python client: all answers as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
