/**
 * The plain-query fast path over HTTP (server/fastpath.ts) answers exactly as yoga does: every
 * request here is sent twice, once in the shape the fast path serves and once with an extra
 * `extensions` parameter (which yoga accepts and ignores, and which sends it to yoga), and the two
 * answers must match. Requests it does not serve (errors, mutations) must still run once.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storeTargets } from "./helpers/db.ts";
import { MERGE, PATH, type TestServer, ok, startTestServer } from "./helpers/server.ts";

interface Answer {
  status: number;
  type: string | null;
  body: unknown;
}

async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, type: res.headers.get("content-type"), body: await res.json() };
}

/** The request as the fast path takes it, and the same request through yoga. */
async function both(url: string, params: Record<string, unknown>): Promise<[Answer, Answer]> {
  return [await post(url, params), await post(url, { ...params, extensions: {} })];
}

const HOSTILE = ["__proto__", "constructor", "_", "%", "/", "🎉", "日本", "a b", "0", "10"];

describe.each(storeTargets())("HTTP fast path on $name", (target) => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(target);
    const value = Object.create(null) as Record<string, unknown>;
    HOSTILE.forEach((k, i) => {
      value[k] = { n: i, s: `x,${k}`, a: [i, { [k]: "{}" }] }; // a computed key is an own property
    });
    await ok(server.url, MERGE, { path: ["f"], value });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("answers plain queries exactly as yoga does", async () => {
    const { url } = server;
    const cases: Record<string, unknown>[] = [
      { query: `{ path(path: ["f"]) }` },
      { query: `{ path(path: ["f"]) }`, variables: null, operationName: null },
      { query: PATH, variables: { path: ["f"], min: "_", max: "z", limit: 3 } },
      { query: PATH, variables: { path: ["f"], limit: 2, reverse: true } },
      { query: PATH, variables: { path: ["f", "__proto__", "a"] } },
      { query: PATH, variables: { path: ["nothing"] } },
      { query: `query A { a: path(path: ["f", "0"]) } query B { b: path(path: ["f", "🎉", "s"]) }`, operationName: "B" },
      { query: `{ a: path(path: ["f", "_"]) b: path(path: ["f", "%"], limit: 1) __typename }` },
    ];
    for (const params of cases) {
      const [fast, yoga] = await both(url, params);
      expect(fast, JSON.stringify(params)).toEqual(yoga);
      expect(fast.status).toBe(200);
      expect((fast.body as { errors?: unknown }).errors).toBeUndefined();
    }
    const whole = (await post(url, { query: `{ path(path: ["f"]) }` })).body as { data: { path: Record<string, unknown> } };
    expect(Object.keys(whole.data.path).sort()).toEqual([...HOSTILE].sort());
  });

  it("leaves errors, bad requests and other operations to yoga", async () => {
    const { url } = server;
    const cases: (Record<string, unknown> | string)[] = [
      { query: PATH, variables: { path: ["f"], limit: 0 } }, // BAD_USER_INPUT from the resolver
      { query: PATH, variables: { path: ["f"], limit: "x" } }, // variable coercion
      { query: PATH }, // missing variable
      { query: `{ path(path: ["f"]) ` }, // syntax
      { query: `{ nope }` }, // validation
      { query: `{ path(path: ["a\\u0001b"]) }` }, // a key with a control character
      { query: `query A { path(path: []) } query B { path(path: []) }` }, // which operation?
      { query: 42 },
      { query: `{ path(path: ["f"]) }`, variables: [1] },
      "[1, 2]",
      "{ not json",
    ];
    for (const params of cases) {
      const fast = await post(url, params);
      const yoga = typeof params === "string" ? fast : await post(url, { ...params, extensions: {} });
      expect(fast, JSON.stringify(params)).toEqual(yoga);
      expect((fast.body as { errors?: unknown[] }).errors?.length, JSON.stringify(params)).toBeGreaterThan(0);
    }
  });

  it("runs a mutation once, through yoga", async () => {
    const { url } = server;
    const first = (await post(url, { query: MERGE, variables: { path: ["m"], value: 1 } })).body as {
      data: { merge: { version: string } };
    };
    const second = (await post(url, { query: MERGE, variables: { path: ["m"], value: 2 } })).body as {
      data: { merge: { version: string } };
    };
    expect(Number(second.data.merge.version)).toBe(Number(first.data.merge.version) + 1);
  });

  it("serves other shapes through yoga as before (accept, origin, GET)", async () => {
    const { url } = server;
    const params = { query: `{ path(path: ["f", "_", "n"]) }` };
    const negotiated = await post(url, params, { accept: "application/graphql-response+json" });
    expect(negotiated.type).toMatch(/^application\/graphql-response\+json/);
    expect(negotiated.body).toEqual({ data: { path: 2 } });
    // A page of the server's own origin (GraphiQL) sends Origin: served by yoga, no CORS headers.
    const sameOrigin = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", origin: new URL(url).origin },
      body: JSON.stringify(params),
    });
    expect(sameOrigin.headers.get("access-control-allow-origin")).toBeNull();
    expect(await sameOrigin.json()).toEqual({ data: { path: 2 } });
    const get = await fetch(`${url}?query=${encodeURIComponent(params.query)}`);
    expect(await get.json()).toEqual({ data: { path: 2 } });
  });
});
