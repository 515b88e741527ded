/**
 * The plain-query fast path over HTTP (server/fastpath.ts) answers exactly as yoga does: every
 * request here is sent twice, once in the shape the fast path serves and once with an extra
 * `extensions` parameter (which yoga accepts and ignores, and which sends it to yoga), and the two
 * answers must match. A result with errors is answered by yoga, from the result the fast path
 * computed: the operation (a mutation too) runs once.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storeTargets } from "./helpers/db.ts";
import { httpFastPathStats } from "../server/fastpath.ts";
import { MERGE, PATH, type TestServer, ok, startTestServer } from "./helpers/server.ts";

interface Answer {
  status: number;
  type: string | null;
  body: unknown;
}

async function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
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
      {
        query: `query A { a: path(path: ["f", "0"]) } query B { b: path(path: ["f", "🎉", "s"]) }`,
        operationName: "B",
      },
      { query: `{ a: path(path: ["f", "_"]) b: path(path: ["f", "%"], limit: 1) __typename }` },
    ];
    for (const params of cases) {
      const [fast, yoga] = await both(url, params);
      expect(fast, JSON.stringify(params)).toEqual(yoga);
      expect(fast.status).toBe(200);
      expect((fast.body as { errors?: unknown }).errors).toBeUndefined();
    }
    const whole = (await post(url, { query: `{ path(path: ["f"]) }` })).body as {
      data: { path: Record<string, unknown> };
    };
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
      const yoga =
        typeof params === "string" ? fast : await post(url, { ...params, extensions: {} });
      expect(fast, JSON.stringify(params)).toEqual(yoga);
      expect(
        (fast.body as { errors?: unknown[] }).errors?.length,
        JSON.stringify(params),
      ).toBeGreaterThan(0);
    }
  });

  it("answers plain mutations itself, as yoga does", async () => {
    const { url } = server;
    const answered = httpFastPathStats.answered;
    const [fast, yoga] = await both(url, {
      query: MERGE,
      variables: { path: ["m"], value: { n: 1 } },
    });
    expect(httpFastPathStats.answered).toBe(answered + 1); // the fast one, not the one with extensions
    const version = (a: Answer) =>
      Number((a.body as { data: { merge: { version: string } } }).data.merge.version);
    expect(version(yoga)).toBe(version(fast) + 1); // each ran once
    expect({ ...fast, body: null }).toEqual({ ...yoga, body: null });
    expect(fast.body).toEqual({
      data: { merge: { version: String(version(fast)), merge: { m: { n: 1 } }, delete: {} } },
    });
    expect((await post(url, { query: `{ path(path: ["m", "n"]) }` })).body).toEqual({
      data: { path: 1 },
    });
  });

  it("hands a mutation's errors to yoga without running it again", async () => {
    const { url } = server;
    // The first field commits, the second is refused (and, being non-null, nulls `data`).
    const query = `mutation($v: JSON!) { a: merge(path: ["once"], value: $v) { version } b: merge(path: [], value: 5) { version } }`;
    const versionOf = async (path: string) =>
      Number(
        (
          (await post(url, { query: MERGE, variables: { path: [path], value: 1 } })).body as {
            data: { merge: { version: string } };
          }
        ).data.merge.version,
      );
    const before = await versionOf("before");
    const handedOver = httpFastPathStats.handedOver;
    const fast = await post(url, { query, variables: { v: { n: 1 } } });
    expect(httpFastPathStats.handedOver).toBe(handedOver + 1);
    expect(await versionOf("after")).toBe(before + 2); // `a` committed once, not twice
    expect((await post(url, { query: `{ path(path: ["once"]) }` })).body).toEqual({
      data: { path: { n: 1 } },
    });
    // The same request through yoga alone: the same status, type and errors.
    const yoga = await post(url, { query, variables: { v: { n: 2 } }, extensions: {} });
    expect(fast).toEqual(yoga);
    expect((fast.body as { data: unknown }).data).toBeNull();
    expect(
      (fast.body as { errors: { extensions: { code: string } }[] }).errors[0]?.extensions.code,
    ).toBe("BAD_USER_INPUT");
    expect(
      (fast.body as { errors: { extensions: Record<string, unknown> }[] }).errors[0]?.extensions
        .http,
    ).toBeUndefined();
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
