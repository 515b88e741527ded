/**
 * Cross-site protection (docs/security.md): a foreign page can neither write through simple
 * (preflight-free) requests nor open a WebSocket or SSE stream; an allowlisted origin can use all
 * three; credentials are never allowed for an origin that is not on the list.
 */
import { createClient } from "graphql-ws";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { createOriginPolicy } from "../server/crosssite.ts";
import { type WireEvent, sseSubscribe } from "./helpers/clients.ts";
import { pgliteTarget } from "./helpers/db.ts";
import { EventQueue } from "./helpers/events.ts";
import { MERGE, type TestServer, WATCH, merge, read, startTestServer } from "./helpers/server.ts";

const APP = "https://app.example.com";
const EVIL = "https://evil.example.net";
const WRITE = 'mutation { merge(path: ["cs", "x"], value: 1) { version } }';

/** A ws WebSocket that sends `origin` on its upgrade, as a browser page of that origin would. */
function originSocket(origin: string) {
  return class extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols, { origin });
    }
  };
}

/** Whether a WebSocket upgrade with `origin` is accepted; the refusal's HTTP status if not. */
function upgrade(wsUrl: string, origin: string | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl, "graphql-transport-ws", origin === undefined ? {} : { origin });
    ws.on("open", () => {
      ws.close();
      resolve(101);
    });
    ws.on("unexpected-response", (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.on("error", (e) => reject(e));
  });
}

const simpleBodies: [string, string, string][] = [
  ["form-urlencoded", "application/x-www-form-urlencoded", `query=${encodeURIComponent(WRITE)}`],
  [
    "multipart",
    "multipart/form-data; boundary=b",
    `--b\r\nContent-Disposition: form-data; name="operations"\r\n\r\n${JSON.stringify({ query: WRITE })}\r\n--b--\r\n`,
  ],
  ["text/plain", "text/plain", JSON.stringify({ query: WRITE })],
  ["application/graphql", "application/graphql", WRITE],
];

describe("cross-site protection", () => {
  let server: TestServer;
  const open: { dispose(): unknown }[] = [];
  beforeEach(async () => {
    server = await startTestServer(pgliteTarget, { cors: { origins: [APP] } });
  });
  afterEach(async () => {
    for (const c of open.splice(0)) await c.dispose();
    await server?.close();
  });

  it.each(simpleBodies)(
    "a %s mutation is refused from a foreign origin, an allowed one and none: nothing written",
    async (_n, type, body) => {
      const version = await server.kora.gateway.store.version();
      for (const origin of [EVIL, APP, undefined]) {
        const res = await fetch(server.url, {
          method: "POST",
          headers: { "content-type": type, ...(origin ? { origin } : {}) },
          body,
        });
        // A foreign origin is refused first (403); otherwise the body type is (415).
        expect(res.status, String(origin)).toBe(origin === EVIL ? 403 : 415);
        expect(res.headers.get("access-control-allow-credentials")).toBeNull();
        const json = (await res.json()) as { errors: { message: string }[] };
        expect(json.errors[0]!.message).toMatch(
          origin === EVIL ? /cors\.origins/ : /application\/json/,
        );
      }
      expect(await server.kora.gateway.store.version()).toBe(version);
      expect(await read(server.url, ["cs"])).toBeNull();
    },
  );

  it("a JSON mutation from a foreign origin is refused; from the allowed origin it works with CORS headers", async () => {
    const post = (origin: string) =>
      fetch(server.url, {
        method: "POST",
        headers: { "content-type": "application/json", origin },
        body: JSON.stringify({ query: WRITE }),
      });
    const foreign = await post(EVIL);
    expect(foreign.status).toBe(403);
    expect(foreign.headers.get("access-control-allow-origin")).toBeNull();
    expect(await read(server.url, ["cs"])).toBeNull();
    const allowed = await post(APP);
    expect(allowed.status).toBe(200);
    expect(allowed.headers.get("access-control-allow-origin")).toBe(APP);
    expect(allowed.headers.get("access-control-allow-credentials")).toBeNull(); // credentials are off by default
    expect(await read(server.url, ["cs"])).toEqual({ x: 1 });
  });

  it("a preflight answers CORS headers to the allowed origin only", async () => {
    const preflight = (origin: string) =>
      fetch(server.url, {
        method: "OPTIONS",
        headers: {
          origin,
          "access-control-request-method": "POST",
          "access-control-request-headers": "content-type",
        },
      });
    const ok = await preflight(APP);
    expect(ok.headers.get("access-control-allow-origin")).toBe(APP);
    expect(ok.headers.get("access-control-allow-methods")).toMatch(/POST/);
    const refused = await preflight(EVIL);
    expect(refused.headers.get("access-control-allow-origin")).toBeNull();
    expect(refused.headers.get("access-control-allow-methods")).toBeNull();
  });

  it("a WebSocket upgrade from a foreign origin is refused (403); from the allowed origin, its own, or none it opens", async () => {
    expect(await upgrade(server.wsUrl, EVIL)).toBe(403);
    expect(await upgrade(server.wsUrl, "null")).toBe(403);
    expect(await upgrade(server.wsUrl, APP)).toBe(101);
    expect(await upgrade(server.wsUrl, new URL(server.url).origin)).toBe(101);
    expect(await upgrade(server.wsUrl, undefined)).toBe(101);
  });

  it("the allowed origin can watch and write over graphql-ws", async () => {
    const client = createClient({
      url: server.wsUrl,
      webSocketImpl: originSocket(APP),
      retryAttempts: 0,
    });
    open.push(client);
    const events = new EventQueue<WireEvent>();
    client.subscribe<{ watch: WireEvent }>(
      { query: WATCH, variables: { path: ["cs"] } },
      {
        next: (r) => (r.errors ? events.fail(r.errors) : events.push(r.data!.watch)),
        error: (e) => events.fail(e),
        complete: () => {},
      },
    );
    expect((await events.next()).snapshot).toBe(true);
    const result = await new Promise<unknown>((resolve, reject) => {
      client.subscribe(
        { query: MERGE, variables: { path: ["cs", "ws"], value: 2 } },
        { next: resolve, error: reject, complete: () => {} },
      );
    });
    expect(result).toMatchObject({ data: { merge: { version: expect.any(String) } } });
    expect((await events.next()).merge).toEqual({ cs: { ws: 2 } });
  });

  it("SSE from a foreign origin is refused (POST and GET); from the allowed origin it streams", async () => {
    const version = await server.kora.gateway.store.version();
    const post = await fetch(server.url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream", origin: EVIL },
      body: JSON.stringify({ query: WATCH, variables: { path: ["cs"] } }),
    });
    expect(post.status).toBe(403);
    await post.body?.cancel();
    const get = await fetch(
      `${server.url}?query=${encodeURIComponent(WATCH)}&variables=${encodeURIComponent('{"path":["cs"]}')}`,
      {
        headers: { accept: "text/event-stream", origin: EVIL },
      },
    );
    expect(get.status).toBe(403);
    await get.body?.cancel();

    const sub = sseSubscribe(server.url, WATCH, { path: ["cs"] }, { origin: APP });
    open.push({ dispose: () => sub.close() });
    expect((await sub.events.next()).snapshot).toBe(true);
    await merge(server.url, ["cs", "sse"], 3);
    expect((await sub.events.next()).merge).toEqual({ cs: { sse: 3 } });
    expect(Number(await server.kora.gateway.store.version())).toBe(Number(version) + 1);
  });
});

describe("credentials", () => {
  let server: TestServer;
  beforeEach(async () => {
    server = await startTestServer(pgliteTarget, { cors: { origins: [APP], credentials: true } });
  });
  afterEach(async () => {
    await server?.close();
  });

  it("are allowed for the listed origin and never for another, on any kind of response", async () => {
    const requests: [string, RequestInit, string][] = [
      [
        "POST",
        {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: '{"query":"{ path(path: []) }"}',
        },
        "",
      ],
      ["GET", { method: "GET" }, `?query=${encodeURIComponent("{ path(path: []) }")}`],
      ["OPTIONS", { method: "OPTIONS", headers: { "access-control-request-method": "POST" } }, ""],
      ["415", { method: "POST", headers: { "content-type": "text/plain" }, body: "x" }, ""],
      [
        "bad JSON",
        { method: "POST", headers: { "content-type": "application/json" }, body: "{" },
        "",
      ],
      ["GraphiQL", { method: "GET", headers: { accept: "text/html" } }, ""],
    ];
    for (const [name, init, query] of requests) {
      for (const origin of [
        EVIL,
        "null",
        "https://app.example.com.evil.net",
        "http://app.example.com",
      ]) {
        const res = await fetch(server.url + query, {
          ...init,
          headers: { ...(init.headers as object), origin },
        });
        await res.arrayBuffer();
        expect(
          res.headers.get("access-control-allow-credentials"),
          `${name} from ${origin}`,
        ).toBeNull();
        expect(res.headers.get("access-control-allow-origin"), `${name} from ${origin}`).toBeNull();
      }
      const res = await fetch(server.url + query, {
        ...init,
        headers: { ...(init.headers as object), origin: APP },
      });
      await res.arrayBuffer();
      if (name !== "415")
        expect(res.headers.get("access-control-allow-credentials"), name).toBe("true");
    }
  });

  it("refuses an allowlist entry that is not an origin", () => {
    expect(() => createOriginPolicy({ origins: ["*"] })).toThrow(/cors\.origins entry "\*"/);
    expect(() => createOriginPolicy({ origins: ["https://a.example/path"] })).toThrow(
      /not an origin/,
    );
    expect(() => createOriginPolicy({ origins: ["app.example.com"] })).toThrow(/not an origin/);
  });
});
