// Issue, verify and build a login link with token-authority, from Node.js.
//
//     node client.js --addr 127.0.0.1:50051
//
// Runs against the embedded default configuration (examples/default.toml): the `default`
// profile (ES256) for Issue and Verify, the `sso` profile (HS256, login URL) for LoginUrl. It
// checks every answer and exits 1 on the first unexpected one, so examples/clients/run.sh uses
// it as a test. The proto is loaded as it is at run time; nothing is generated.
"use strict";

const path = require("node:path");
const { parseArgs } = require("node:util");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTO_DIR = path.resolve(__dirname, "../../../proto");
// Every call gets a deadline; without one a call to a stuck server waits forever.
const TIMEOUT_MS = 5000;

const definition = protoLoader.loadSync("tokenauthority/v1/token_authority.proto", {
  includeDirs: [PROTO_DIR],
  longs: Number, // Timestamp seconds; far below 2^53.
  enums: String, // failure: "VERIFY_FAILURE_BAD_SIGNATURE" rather than 4
  defaults: true, // a refusal's valid: false is there rather than undefined
  oneofs: true, // a Struct Value says which kind it holds
});
const { TokenAuthority } = grpc.loadPackageDefinition(definition).tokenauthority.v1;

class Unexpected extends Error {}

function expect(condition, what) {
  if (!condition) throw new Unexpected(what);
}

// proto-loader hands google.protobuf.Struct over as its message form ({fields: {role:
// {stringValue: "admin"}}}), not as a plain object, so claims are converted both ways here.
function toValue(v) {
  if (v === null) return { nullValue: "NULL_VALUE" };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  switch (typeof v) {
    case "number": return { numberValue: v };
    case "string": return { stringValue: v };
    case "boolean": return { boolValue: v };
    case "object": return { structValue: toStruct(v) };
    default: throw new TypeError(`a claim cannot be a ${typeof v}`);
  }
}
function toStruct(obj) {
  return { fields: Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, toValue(v)])) };
}
function fromValue(value) {
  switch (value.kind) {
    case "nullValue": return null;
    case "listValue": return value.listValue.values.map(fromValue);
    case "structValue": return fromStruct(value.structValue);
    default: return value[value.kind];
  }
}
function fromStruct(struct) {
  return Object.fromEntries(Object.entries(struct?.fields ?? {}).map(([k, v]) => [k, fromValue(v)]));
}

// grpc-js calls take a callback; this makes each one a promise with a deadline.
function call(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + TIMEOUT_MS }, (err, answer) =>
      err ? reject(err) : resolve(answer));
  });
}

// Changes the first character of the signature, so that only the signature is wrong. The last
// character carries padding bits: changing those makes the part non-canonical base64url, which
// is refused as MALFORMED before any signature check.
function tamper(token) {
  const [header, payload, signature] = token.split(".");
  return [header, payload, (signature[0] === "A" ? "B" : "A") + signature.slice(1)].join(".");
}

// Makes a call that must fail with `code`, and prints the code and message as a caller would log them.
async function expectError(client, method, request, code) {
  try {
    await call(client, method, request);
  } catch (err) {
    if (err.code === undefined) throw err;
    console.log(`  -> ${grpc.status[err.code]}: ${err.details}`);
    expect(err.code === code, `expected ${grpc.status[code]}, got ${grpc.status[err.code]}: ${err.details}`);
    return;
  }
  throw new Unexpected(`expected ${grpc.status[code]}, the call succeeded`);
}

async function run(client) {
  // Issue: claims are a google.protobuf.Struct, the lifetime a Duration.
  const issued = await call(client, "Issue", {
    subject: "user-42",
    claims: toStruct({ role: "admin", teams: ["billing", "search"] }),
    ttl: { seconds: 120 },
  });
  const lifetime = issued.expiresAt.seconds - issued.issuedAt.seconds;
  console.log(`Issue: ${issued.algorithm} token, kid ${issued.keyId}, jti ${issued.tokenId}, lives ${lifetime}s`);
  expect(issued.token.split(".").length === 3, "Issue answered something that is not a JWS compact token");
  expect(issued.algorithm === "ES256", `the default profile signs with ES256, not ${issued.algorithm}`);
  expect(lifetime === 120, `asked for a 120s token, got ${lifetime}s`);

  // Verify: a valid answer carries the subject and the claims.
  const verified = await call(client, "Verify", { token: issued.token });
  const claims = fromStruct(verified.claims);
  console.log(`Verify: valid=${verified.valid} subject=${verified.subject} claims=${JSON.stringify(claims)}`);
  expect(verified.valid, `our own token was refused: ${verified.failure}: ${verified.detail}`);
  expect(verified.subject === "user-42", `subject is ${JSON.stringify(verified.subject)}`);
  expect(claims.role === "admin" && JSON.stringify(claims.teams) === '["billing","search"]',
    `claims are ${JSON.stringify(claims)}`);
  expect(verified.tokenId === issued.tokenId, "Verify's jti is not Issue's");

  // A refused token is an answer, not an error: valid is false, failure and detail say why.
  const refused = await call(client, "Verify", { token: tamper(issued.token) });
  console.log(`Verify (tampered): valid=${refused.valid} failure=${refused.failure} detail=${JSON.stringify(refused.detail)}`);
  expect(!refused.valid, "a tampered token was accepted");
  expect(refused.failure === "VERIFY_FAILURE_BAD_SIGNATURE", `expected VERIFY_FAILURE_BAD_SIGNATURE, got ${refused.failure}`);
  expect(refused.detail, "a refusal came without a detail");

  // LoginUrl: the sso profile wraps a 30-second HS256 token in its login URL template.
  const login = await call(client, "LoginUrl", { profile: "sso", subject: "a7b3c@auth.local", next: "/workspace/1/" });
  console.log(`LoginUrl: ${login.url.slice(0, 70)}... (expires ${new Date(login.expiresAt.seconds * 1000).toISOString()})`);
  expect(login.url.startsWith("http://127.0.0.1:8000/sso-auto-login/?token="), `unexpected URL ${login.url}`);
  expect(login.url.includes(login.token) && login.url.endsWith("&next=%2Fworkspace%2F1%2F"), `unexpected URL ${login.url}`);
  const sso = await call(client, "Verify", { token: login.token, profile: "sso" });
  expect(sso.valid && sso.subject === "a7b3c@auth.local", `the login token does not verify: ${sso.detail}`);

  // Caller mistakes are gRPC errors; the message names the field and the reason.
  console.log("Issue under a profile that does not exist:");
  await expectError(client, "Issue", { profile: "billing", subject: "user-42" }, grpc.status.NOT_FOUND);
  console.log("LoginUrl with a next outside the allowed origins:");
  await expectError(client, "LoginUrl", { profile: "sso", subject: "a7b3c@auth.local", next: "https://evil.example/" },
    grpc.status.INVALID_ARGUMENT);
}

async function main() {
  const { values } = parseArgs({ options: { addr: { type: "string", default: "127.0.0.1:50051" } } });
  const client = new TokenAuthority(values.addr, grpc.credentials.createInsecure());
  try {
    await run(client);
    console.log("node client: all answers as expected");
    return 0;
  } catch (err) {
    const what = err instanceof Unexpected ? err.message
      : err.code !== undefined ? `unexpected error ${grpc.status[err.code]}: ${err.details}`
      : err.stack;
    console.error(`FAIL: ${what}`);
    return 1;
  } finally {
    client.close();
  }
}

main().then((code) => { process.exitCode = code; });
