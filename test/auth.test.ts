/**
 * Authentication: JWTs missing, valid, expired, forged, for another audience or issuer, unsigned
 * (`alg: none`), from a local JWKS; a custom authenticate hook; and a WebSocket watch that ends
 * with UNAUTHENTICATED when its token expires mid-session. docs/auth.md describes the behaviour.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "graphql-ws";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { KoraError } from "../core/errors.ts";
import type { Interceptor } from "../interceptors/types.ts";
import { type AuthOptions, createAuthenticator } from "../server/auth.ts";
import { pgliteTarget } from "./helpers/db.ts";
import { EventQueue } from "./helpers/events.ts";
import { type TestServer, startTestServer } from "./helpers/server.ts";

const SECRET = "another-test-secret-with-32-or-more-chars";
const key = new TextEncoder().encode(SECRET);
const WHOAMI = `{ path(path: ["whoami"]) }`;

/** Answers `whoami` with the caller's claims, so a test sees exactly what hooks see as `auth`. */
const whoami: Interceptor = { name: "whoami", path: ["whoami"], resolveQuery: ({ auth }) => (auth ? { sub: String(auth.sub) } : "anonymous") };

function sign(claims: Record<string, unknown>, options: { aud?: string; iss?: string; exp?: number | string; secret?: Uint8Array } = {}) {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setIssuedAt().setExpirationTime(options.exp ?? "1h");
  jwt.setAudience(options.aud ?? "kora-test");
  jwt.setIssuer(options.iss ?? "https://issuer.test");
  return jwt.sign(options.secret ?? key);
}

function unsigned(claims: Record<string, unknown>): string {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "none", typ: "JWT" })}.${b64({ ...claims, aud: "kora-test", iss: "https://issuer.test", exp: Math.floor(Date.now() / 1000) + 3600 })}.`;
}

async function post(url: string, query: string, jwt?: string) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...(jwt ? { authorization: `Bearer ${jwt}` } : {}) },
    body: JSON.stringify({ query }),
  });
  return (await res.json()) as { data?: { path?: unknown } | null; errors?: { message: string; extensions?: { code?: string } }[] };
}

function serve(auth: AuthOptions): Promise<TestServer> {
  return startTestServer(pgliteTarget, { interceptors: [whoami], authenticate: createAuthenticator(auth) });
}

describe("JWT with an HS256 secret", () => {
  let server: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    server = await serve({ jwt: { secret: SECRET, audience: "kora-test", issuer: "https://issuer.test" } });
  });
  afterAll(() => server?.close());

  it.each([
    ["no token: anonymous (auth = null)", async () => undefined, { data: "anonymous" }],
    ["a valid token: its claims are auth", () => sign({ sub: "dax" }), { data: { sub: "dax" } }],
    ["an expired token", () => sign({ sub: "dax" }, { exp: Math.floor(Date.now() / 1000) - 60 }), { code: "UNAUTHENTICATED", message: /expired/ }],
    ["a wrong signature", () => sign({ sub: "dax" }, { secret: new TextEncoder().encode("x".repeat(40)) }), { code: "UNAUTHENTICATED", message: /signature/ }],
    ["a wrong audience", () => sign({ sub: "dax" }, { aud: "someone-else" }), { code: "UNAUTHENTICATED", message: /"aud"/ }],
    ["a wrong issuer", () => sign({ sub: "dax" }, { iss: "https://evil.test" }), { code: "UNAUTHENTICATED", message: /"iss"/ }],
    ["alg: none", async () => unsigned({ sub: "dax" }), { code: "UNAUTHENTICATED", message: /algorithm|malformed/ }],
    ["garbage", async () => "not-a-jwt", { code: "UNAUTHENTICATED", message: /malformed/ }],
  ] as [string, () => Promise<string | undefined>, { data?: unknown; code?: string; message?: RegExp }][])(
    "HTTP: %s",
    async (_what, make, expected) => {
      const r = await post(server.kora.url, WHOAMI, await make());
      if (expected.code) {
        expect(r.errors?.[0]?.extensions?.code).toBe(expected.code);
        expect(r.errors?.[0]?.message).toMatch(expected.message as RegExp);
        expect(r.data?.path ?? null).toBeNull();
      } else expect(r).toEqual({ data: { path: expected.data } });
    },
  );

  it("a malformed Authorization header is refused, not ignored", async () => {
    const res = await fetch(server.kora.url, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Basic ZGF4OnB3" },
      body: JSON.stringify({ query: WHOAMI }),
    });
    const r = (await res.json()) as { errors?: { extensions?: { code?: string } }[] };
    expect(r.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
  });

  it.each([
    ["connectionParams.authorization", async () => ({ authorization: `Bearer ${await sign({ sub: "dax" })}` }), { sub: "dax" }],
    ["connectionParams.token", async () => ({ token: await sign({ sub: "yousef" }) }), { sub: "yousef" }],
    ["no connectionParams", async () => ({}), "anonymous"],
    ["an expired token", async () => ({ token: await sign({ sub: "dax" }, { exp: Math.floor(Date.now() / 1000) - 60 }) }), "UNAUTHENTICATED"],
    ["alg: none", async () => ({ token: unsigned({ sub: "dax" }) }), "UNAUTHENTICATED"],
  ] as [string, () => Promise<Record<string, unknown>>, unknown][])("WebSocket: %s", async (_what, params, expected) => {
    const client = createClient({ url: server.kora.url.replace(/^http/, "ws"), webSocketImpl: WebSocket, retryAttempts: 0, lazy: true, connectionParams: await params() });
    try {
      const results = new EventQueue<unknown>();
      client.subscribe({ query: WHOAMI }, { next: (r) => results.push(r), error: (e) => results.push({ error: e }), complete: () => {} });
      const r = (await results.next()) as { data?: { path: unknown }; error?: { extensions?: { code?: string } }[] };
      if (expected === "UNAUTHENTICATED") expect(r.error?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
      else expect(r.data?.path).toEqual(expected);
    } finally {
      await client.dispose();
    }
  });

  it("a WebSocket watch ends with UNAUTHENTICATED when its token expires mid-session", async () => {
    const exp = Math.floor(Date.now() / 1000) + 2;
    const client = createClient({
      url: server.kora.url.replace(/^http/, "ws"),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      lazy: true,
      connectionParams: { token: await sign({ sub: "dax" }, { exp }) },
    });
    try {
      const results = new EventQueue<{ data?: unknown; error?: { extensions?: { code?: string } }[] }>();
      client.subscribe(
        { query: `subscription { watch(path: ["room"]) { version snapshot } }` },
        { next: (r) => results.push(r), error: (e) => results.push({ error: e as { extensions?: { code?: string } }[] }), complete: () => {} },
      );
      expect((await results.next()).data).toMatchObject({ watch: { snapshot: true } });
      // Wait for the server to end the watch (an event, not a sleep); it must not outlive exp.
      const ended = await results.next(10_000);
      expect(ended.error?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
      expect(Date.now()).toBeGreaterThanOrEqual(exp * 1000 - 50);
    } finally {
      await client.dispose();
    }
  });
});

describe("JWT from a local JWKS file (RS256)", () => {
  let server: Awaited<ReturnType<typeof serve>>;
  let privateKey: CryptoKey;
  beforeAll(async () => {
    const pair = await generateKeyPair("RS256");
    privateKey = pair.privateKey as CryptoKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: "k1", alg: "RS256", use: "sig" };
    const dir = mkdtempSync(join(tmpdir(), "kora-jwks-"));
    const file = join(dir, "jwks.json");
    writeFileSync(file, JSON.stringify({ keys: [jwk] }));
    server = await serve({ jwt: { jwksFile: file, audience: "kora-test" } });
  });
  afterAll(() => server?.close());

  it("accepts tokens signed by a key of the set; refuses HS256 tokens and unknown keys", async () => {
    const good = await new SignJWT({ sub: "dax" }).setProtectedHeader({ alg: "RS256", kid: "k1" }).setAudience("kora-test").setExpirationTime("1h").sign(privateKey);
    expect(await post(server.kora.url, WHOAMI, good)).toEqual({ data: { path: { sub: "dax" } } });
    const other = (await generateKeyPair("RS256")).privateKey;
    const unknown = await new SignJWT({ sub: "dax" }).setProtectedHeader({ alg: "RS256", kid: "k2" }).setAudience("kora-test").setExpirationTime("1h").sign(other);
    expect((await post(server.kora.url, WHOAMI, unknown)).errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
    const hs = await sign({ sub: "dax" });
    expect((await post(server.kora.url, WHOAMI, hs)).errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
  });
});

describe("a custom authenticate hook", () => {
  let server: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    server = await serve({
      authenticate: ({ headers }) => {
        const apiKey = headers["x-api-key"];
        if (apiKey === undefined) return { auth: null };
        if (apiKey !== "k-123") throw new KoraError("UNAUTHENTICATED", "unknown API key");
        return { auth: { sub: "service" } };
      },
    });
  });
  afterAll(() => server?.close());

  it("replaces the JWT check", async () => {
    const call = async (apiKey?: string) => {
      const res = await fetch(server.kora.url, {
        method: "POST",
        headers: { "content-type": "application/json", ...(apiKey ? { "x-api-key": apiKey } : {}) },
        body: JSON.stringify({ query: WHOAMI }),
      });
      return (await res.json()) as { data?: { path: unknown }; errors?: { message: string; extensions?: { code?: string } }[] };
    };
    expect((await call("k-123")).data?.path).toEqual({ sub: "service" });
    expect((await call()).data?.path).toBe("anonymous");
    const refused = await call("wrong");
    expect([refused.errors?.[0]?.extensions?.code, refused.errors?.[0]?.message]).toEqual(["UNAUTHENTICATED", "unknown API key"]);
  });
});

describe("configuration mistakes fail at start-up", () => {
  it("rejects short secrets and alg none", () => {
    expect(() => createAuthenticator({ jwt: { secret: "short" } })).toThrow(/at least 32 characters/);
    expect(() => createAuthenticator({ jwt: { secret: SECRET, algorithms: ["none"] } })).toThrow(/none/);
  });
});
