/**
 * Hostile input over HTTP and WebSocket: every rejection carries a contract code and names the
 * offending path, and nothing of a rejected mutation is written or heard by a watcher.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type WireEvent, wsClient } from "./helpers/clients.ts";
import { storeTargets } from "./helpers/db.ts";
import { EventQueue } from "./helpers/events.ts";
import { DELETE, MERGE, MUTATE, PATH, WATCH, type TestServer, type http, merge, read, startTestServer } from "./helpers/server.ts";

const LIMIT = 64 * 1024; // a small mutation limit keeps the oversized cases cheap

/** JSON text nested `depth` levels deep, built as text: JSON.stringify itself overflows the stack. */
function deepText(depth: number, open: string, close: string): RawJson {
  return { raw: open.repeat(depth) + "1" + close.repeat(depth) };
}
type RawJson = { raw: string };

function nested(depth: number, leaf: unknown): unknown {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = { k: v };
  return v;
}

function nestedArray(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

type Case = [name: string, query: string, variables: Record<string, unknown>, code: string, mention?: string];

const CASES: Case[] = [
  ["null value", MERGE, { path: ["h", "a"], value: null }, "BAD_USER_INPUT"],
  ["null inside an object", MERGE, { path: ["h"], value: { a: { b: null } } }, "BAD_USER_INPUT", '["h","a","b"]'],
  ["control character in a path key", MERGE, { path: ["h", "a\u0001b"], value: 1 }, "BAD_USER_INPUT", "U+0001"],
  ["control character in a value key", MERGE, { path: ["h"], value: { "x\u007f": 1 } }, "BAD_USER_INPUT", "U+007F"],
  ["newline in a key", MERGE, { path: ["h"], value: { "x\ny": 1 } }, "BAD_USER_INPUT", "U+000A"],
  ["empty key", MERGE, { path: ["h", ""], value: 1 }, "BAD_USER_INPUT"],
  ["key of 769 bytes", MERGE, { path: ["h", "é".repeat(384) + "x"], value: 1 }, "BAD_USER_INPUT", "768"],
  ["33 levels deep", MERGE, { path: ["h"], value: nested(32, 1) }, "BAD_USER_INPUT", "32"],
  ["path of 33 keys", MERGE, { path: Array.from({ length: 33 }, (_, i) => `k${i}`), value: 1 }, "BAD_USER_INPUT", "32"],
  ["10,000 levels deep", MERGE, { path: ["h"], value: deepText(10_000, '{"k":', "}") }, "BAD_USER_INPUT"],
  ["arrays nested 10,000 deep", MERGE, { path: ["h"], value: deepText(10_000, "[", "]") }, "BAD_USER_INPUT"],
  ["arrays nested 300 deep", MERGE, { path: ["h"], value: nestedArray(300) }, "BAD_USER_INPUT", "256"],
  ["leaf at the root", MERGE, { path: [], value: 5 }, "BAD_USER_INPUT", "root"],
  ["delete of the root", DELETE, { path: [] }, "BAD_USER_INPUT", "root"],
  ["delete leaf other than true", MUTATE, { delete: { h: "yes" } }, "BAD_USER_INPUT", '["h"]'],
  ["delete leaf false", MUTATE, { delete: { h: { a: false } } }, "BAD_USER_INPUT", '["h","a"]'],
  ["merge that is not an object", MUTATE, { merge: 5 }, "BAD_USER_INPUT"],
  ["merge that is an array", MUTATE, { merge: [1] }, "BAD_USER_INPUT"],
  ["path of wrong type", MERGE, { path: 5, value: 1 }, "BAD_USER_INPUT"],
  ["path that is an object", MERGE, { path: { a: 1 }, value: 1 }, "BAD_USER_INPUT"],
  ["path with a number", MERGE, { path: ["h", 5], value: 1 }, "BAD_USER_INPUT"],
  ["path with null", MERGE, { path: ["h", null], value: 1 }, "BAD_USER_INPUT"],
  ["missing value", MERGE, { path: ["h"] }, "BAD_USER_INPUT"],
  ["U+0000 in a string", MERGE, { path: ["h", "a"], value: "x\u0000y" }, "BAD_USER_INPUT", "U+0000"],
  ["lone surrogate in a key", MERGE, { path: ["h", "\ud800"], value: 1 }, "BAD_USER_INPUT"],
  ["too large", MERGE, { path: ["h", "big"], value: "x".repeat(LIMIT + 1) }, "PAYLOAD_TOO_LARGE"],
  ["too large mutate", MUTATE, { merge: { h: { big: "x".repeat(LIMIT + 1) } } }, "PAYLOAD_TOO_LARGE"],
  ["unknown field", "query { nope }", {}, "BAD_USER_INPUT"],
  ["unknown argument", `mutation { merge(path: ["h"], value: 1, force: true) { version } }`, {}, "BAD_USER_INPUT"],
  ["syntax error", "mutation { merge(", {}, "BAD_USER_INPUT"],
  ["deep literal", `mutation { merge(path: ["h"], value: ${"[".repeat(500)}1${"]".repeat(500)}) { version } }`, {}, "BAD_USER_INPUT"],
  ["deep selection", `query { ${"a { ".repeat(40)}b${" }".repeat(40)} }`, {}, "BAD_USER_INPUT"],
  ["huge document", `query { ${"path(path: []) ".repeat(20_000)} }`, {}, "PAYLOAD_TOO_LARGE"],
  ["limit 0", PATH, { path: ["h"], limit: 0 }, "BAD_USER_INPUT", "limit"],
  ["negative limit", PATH, { path: ["h"], limit: -3 }, "BAD_USER_INPUT", "limit"],
  ["min with a control character", PATH, { path: ["h"], min: "\u0002" }, "BAD_USER_INPUT"],
  ["read path with a control character", PATH, { path: ["h", "\u0000"] }, "BAD_USER_INPUT"],
];

/** POSTs an operation whose variables may hold raw JSON text. */
async function post(url: string, query: string, variables: Record<string, unknown>) {
  const parts = Object.entries(variables).map(([k, v]) =>
    `${JSON.stringify(k)}:${v && typeof v === "object" && "raw" in v ? (v as RawJson).raw : JSON.stringify(v)}`,
  );
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: `{"query":${JSON.stringify(query)},"variables":{${parts.join(",")}}}`,
  });
  return (await res.json()) as Awaited<ReturnType<typeof http>>;
}

describe.each(storeTargets())("hostile input on $name", (target) => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(target, { limits: { maxMutationBytes: LIMIT } });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("rejects each case with its code, writes nothing and notifies no watcher", async () => {
    const { url, wsUrl } = server;
    await merge(url, ["h", "keep"], "me");
    const before = await read(url, []);
    const version = await server.kora.gateway.store.version();

    const client = wsClient(wsUrl);
    const events = new EventQueue<WireEvent>();
    client.subscribe<{ watch: WireEvent }>(
      { query: WATCH, variables: { path: [] } },
      { next: (r) => events.push(r.data!.watch), error: (e) => events.fail(e), complete: () => {} },
    );
    expect((await events.next()).snapshot).toBe(true);

    for (const [name, query, variables, code, mention] of CASES) {
      const r = await post(url, query, variables);
      expect(r.errors?.[0]?.extensions?.code, name).toBe(code);
      if (mention) expect(r.errors?.[0]?.message, name).toContain(mention);
      expect(r.errors?.[0]?.message, name).not.toMatch(/Unexpected error/);
    }
    expect(await server.kora.gateway.store.version()).toBe(version);
    expect(await read(url, [])).toEqual(before);
    // The marker write is the next thing the root watcher hears: nothing came before it.
    const marker = await merge(url, ["h", "marker"], 1);
    expect((await events.next()).version).toBe(String(marker));
    await client.dispose();
  });

  it("the same over graphql-ws", async () => {
    const client = wsClient(server.wsUrl);
    // graphql-ws clients serialize with JSON.stringify, so the 10,000-deep texts cannot be sent.
    const sendable = CASES.filter(([n]) => !n.startsWith("huge") && !n.startsWith("too large") && !n.includes("10,000"));
    for (const [name, query, variables, code] of sendable) {
      const errors = await new Promise<{ extensions?: { code?: string } }[]>((resolve) => {
        client.subscribe(
          { query, variables },
          {
            next: (r) => resolve((r.errors ?? []) as never),
            error: (e) => resolve(e as never),
            complete: () => resolve([]),
          },
        );
      });
      expect(errors?.[0]?.extensions?.code, name).toBe(code);
    }
    await client.dispose();
  });

  it("a body larger than the limit is refused before parsing", async () => {
    const res = await fetch(server.url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: MERGE, variables: { path: ["h"], value: "x".repeat(LIMIT * 3) } }),
    });
    expect(res.status).toBe(413);
    const body = (await res.json()) as { errors: { extensions: { code: string } }[] };
    expect(body.errors[0]!.extensions.code).toBe("PAYLOAD_TOO_LARGE");
  });

  it("accepts and round-trips every other character in keys", async () => {
    const { url } = server;
    const keys = ["__proto__", "constructor", "_", "%", "/", ".", ":", "a b", "$", "#", "[", "]", "*", "emoji 🎉", "日本語", "ü", "\u00a0", "prototype", "toString"];
    const value = Object.fromEntries(keys.map((k, i) => [k, { v: i }]));
    await merge(url, ["keys"], JSON.parse(JSON.stringify(value)));
    const back = (await read(url, ["keys"])) as Record<string, unknown>;
    expect(Object.keys(back).sort()).toEqual([...keys].sort());
    for (const [i, k] of keys.entries()) {
      expect(await read(url, ["keys", k, "v"]), k).toBe(i);
    }
    expect(({} as Record<string, unknown>).v).toBeUndefined(); // nothing reached Object.prototype
  });

  it("masks unexpected errors with an id", async () => {
    const { createMaskError } = await import("../server/errors.ts");
    const logged: unknown[] = [];
    const mask = createMaskError({ info() {}, warn() {}, error: (o) => logged.push(o) });
    const e = mask(new Error("secret connection string"));
    expect(e.extensions.code).toBe("INTERNAL_SERVER_ERROR");
    expect(e.message).not.toContain("secret");
    expect(logged).toHaveLength(1);
    expect(e.message).toContain(String(e.extensions.errorId));
  });
});
