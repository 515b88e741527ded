/**
 * The `keys` query (docs/decisions.md, "A keys-only listing"): a node's children, keys only.
 * - Read rules: for every caller and path of a table, the keys listed (in pages of 1, 3 and 100)
 *   are exactly the keys of what `path` returns for that caller, FORBIDDEN where it is, null
 *   where it is null; no `next` cursor is ever the key of a hidden child.
 * - Over GraphQL: a node with 100,000 children (each an object) lists in small responses, its
 *   parent too; arguments are checked; hostile keys come back as data.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KoraError } from "../core/errors.ts";
import { type Caller, type Gateway, type KeysPage, createGateway, silentLogger } from "../core/gateway.ts";
import { compareKeys, isTree, mutationFromInput } from "../core/tree.ts";
import { DEFAULT_LIMITS, type Node, type Path } from "../core/types.ts";
import { createInterceptorChain } from "../interceptors/chain.ts";
import { createRulesEngine } from "../interceptors/rules.ts";
import { defineInterceptor } from "../interceptors/types.ts";
import { importTree } from "../server/treefile.ts";
import { pgliteTarget, storeTargets } from "./helpers/db.ts";
import { type TestServer, http, startTestServer } from "./helpers/server.ts";

const dir = mkdtempSync(join(tmpdir(), "kora-keys-"));
const RULES = join(dir, "kora.rules.yaml");
writeFileSync(
  RULES,
  `rules:
  "todos/$uid":
    read: auth != null && auth.sub == uid
  "public":
    read: "true"
  "users/$uid/profile":
    read: "true"
  "admin":
    read: auth != null && auth.role == "admin"
  "teams/$team/members/$uid":
    read: auth != null && auth.sub == uid
  "docs/$doc":
    read: data.public == true
`,
);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const P = "__proto__";
const TREE = {
  todos: {
    dax: { t1: { title: "Dax's first" }, t2: "a leaf todo" },
    yousef: { t1: { title: "Yousef's secret plan" } },
    // Many children dax may not see, around the one he may: pages must skip them unseen.
    ...Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`u${String(i).padStart(2, "0")}`, { t: i }])),
    [P]: { x: 1 },
  },
  public: { motd: "hello", "🎉 a b": [1, { [P]: 2 }] },
  users: {
    alice: { profile: { name: "Alice" }, private: { p: 1 } },
    bob: { private: { p: 2 } }, // nothing readable below: left out of `users`
    carol: { profile: "a leaf profile", private: { p: 3 } },
  },
  teams: {
    red: { members: { dax: 1, yousef: 2 }, budget: 5 },
    blue: { members: { yousef: 1 } }, // two levels down before anything is decided
  },
  admin: { stats: { users: 2 } },
  secret: { key: "hunter2" },
  docs: { d1: { public: true, body: "x" }, d2: { public: false, body: "y" } },
};

/** A second reader, ANDed with the rules: dax may not see carol at all. */
const hideCarol = defineInterceptor({
  name: "hide-carol",
  path: ["users", "carol"],
  beforeRead: ({ auth }) => (auth?.sub === "dax" ? false : undefined),
});

const CALLERS: Record<string, Caller> = {
  anonymous: { auth: null, internal: false },
  dax: { auth: { sub: "dax" }, internal: false },
  yousef: { auth: { sub: "yousef" }, internal: false },
  admin: { auth: { sub: "root", role: "admin" }, internal: false },
};

const PATHS: Path[] = [
  [],
  ["todos"],
  ["todos", "dax"],
  ["todos", "dax", "t2"],
  ["todos", "yousef"],
  ["users"],
  ["users", "bob"],
  ["users", "carol"],
  ["users", "carol", "profile"],
  ["teams"],
  ["teams", "red"],
  ["teams", "red", "members"],
  ["teams", "blue"],
  ["admin"],
  ["secret"],
  ["docs"],
  ["public"],
  ["public", "motd"],
  ["nothing"],
];

type Outcome = { code: string } | { leaf: string } | { keys: [string, string][] } | null;

const kind = (v: Node): string => (isTree(v) ? "object" : Array.isArray(v) ? "array" : typeof v);

async function byPath(gateway: Gateway, path: Path, caller: Caller): Promise<Outcome> {
  const v = (await gateway.query([{ path }], caller)).values[0];
  if (v instanceof KoraError) return { code: v.code };
  if (v === undefined) return null;
  if (!isTree(v)) return { leaf: kind(v) };
  return { keys: Object.keys(v).sort(compareKeys).map((k) => [k, kind(v[k] as Node)]) };
}

async function byKeys(gateway: Gateway, path: Path, caller: Caller, limit: number): Promise<Outcome> {
  const keys: [string, string][] = [];
  let after: string | undefined;
  for (let i = 0; i < 100; i++) {
    let page: KeysPage | undefined;
    try {
      page = await gateway.keys(path, { after, limit }, caller);
    } catch (error) {
      if (error instanceof KoraError) return { code: error.code };
      throw error;
    }
    if (page === undefined) return keys.length === 0 ? null : { keys };
    if (page.type !== "object") return { leaf: page.type };
    expect(page.children.length).toBeLessThanOrEqual(limit);
    keys.push(...page.children.map((c): [string, string] => [c.key, c.type]));
    if (page.next === undefined) return { keys };
    expect(page.children).toHaveLength(limit); // a page holds `limit` readable children before it says "more"
    expect(page.next).toBe(page.children[limit - 1]?.key); // the cursor is a key the caller sees
    after = page.next;
  }
  throw new Error("more than 100 pages");
}

describe.each(storeTargets())("keys under read rules on $name", (target) => {
  let gateway: Gateway;
  let dispose: () => Promise<void>;
  beforeAll(async () => {
    const created = await target.create();
    dispose = created.dispose;
    const rules = createRulesEngine({ file: RULES, watch: false });
    const pipeline = createInterceptorChain({
      interceptors: [rules.interceptor, hideCarol],
      limits: DEFAULT_LIMITS,
      log: silentLogger,
    });
    gateway = await createGateway({ store: created.store, pipeline, retention: { intervalMs: 0 } });
    await gateway.commit(mutationFromInput({ merge: TREE }));
  });
  afterAll(async () => {
    await gateway?.close();
    await dispose?.();
  });

  it.each(Object.keys(CALLERS))("lists for %s exactly the keys `path` returns, FORBIDDEN and null alike", async (who) => {
    const caller = CALLERS[who] as Caller;
    for (const path of PATHS) {
      const expected = await byPath(gateway, path, caller);
      for (const limit of [1, 3, 100]) expect(await byKeys(gateway, path, caller, limit), `${who} ${JSON.stringify(path)} limit ${limit}`).toEqual(expected);
    }
  });

  it("the table covers what it means to: hidden children, deep decisions, a second interceptor", async () => {
    const keysOf = async (who: string, path: Path) => (await byKeys(gateway, path, CALLERS[who] as Caller, 100)) as Outcome;
    expect(await keysOf("dax", ["todos"])).toEqual({ keys: [["dax", "object"]] });
    expect(await keysOf("anonymous", ["todos"])).toBeNull();
    expect(await keysOf("anonymous", ["users"])).toEqual({ keys: [["alice", "object"], ["carol", "object"]] });
    expect(await keysOf("dax", ["users"])).toEqual({ keys: [["alice", "object"]] });
    expect(await keysOf("dax", ["teams"])).toEqual({ keys: [["red", "object"]] });
    expect(await keysOf("yousef", ["teams"])).toEqual({ keys: [["blue", "object"], ["red", "object"]] });
    expect(await keysOf("anonymous", ["docs"])).toEqual({ keys: [["d1", "object"]] });
    expect(await keysOf("dax", ["secret"])).toEqual({ code: "FORBIDDEN" });
    expect(await keysOf("admin", ["admin"])).toEqual({ keys: [["stats", "object"]] });
    expect(await keysOf("dax", ["todos", "dax", "t2"])).toEqual({ leaf: "string" });
    expect(await keysOf("yousef", ["todos", "dax", "t2"])).toEqual({ code: "FORBIDDEN" });
  });
});

interface WirePage {
  version: string;
  type: string;
  next: string | null;
  children: { key: string; type: string; value: unknown; size: number | null }[];
}

describe("keys over GraphQL", () => {
  let server: TestServer;
  const KEYS = `query($path: [String!]!, $after: String, $limit: Int) {
    keys(path: $path, after: $after, limit: $limit) { version type next children { key type value size } }
  }`;
  /** Runs `keys` over HTTP: the parsed body and its size on the wire. */
  const keys = async (variables: Record<string, unknown>) => {
    const res = await fetch(server.url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/graphql-response+json, application/json" },
      body: JSON.stringify({ query: KEYS, variables }),
    });
    const text = await res.text();
    const body = JSON.parse(text) as { data?: { keys: WirePage | null } | null; errors?: { message: string }[] };
    // A null page is asserted as such (`toBeNull`); anything else is read as a page.
    return { bytes: Buffer.byteLength(text), body, page: body.data?.keys as WirePage };
  };

  beforeAll(async () => {
    const virtual = defineInterceptor({
      path: ["virtual"],
      resolveQuery: () => ({ b: 2, a: { deep: 1 }, c: "x".repeat(3000) }),
    });
    server = await startTestServer(pgliteTarget, { interceptors: [virtual] });
    // 100,000 children, each an object holding a leaf, beside a few leaves with hostile keys.
    const big = Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`c${String(i).padStart(6, "0")}`, { v: i, w: "some text" }]));
    await importTree(server.kora.gateway.store, [JSON.stringify({ big, small: { [P]: 1, constructor: { x: 1 }, "🎉": [1, null], "a/b.c": true } })]);
  }, 120_000);
  afterAll(async () => {
    await server?.close();
  });

  it("lists a node with 100,000 children, and its parent, in small responses", async () => {
    const root = await keys({ path: [] });
    expect(root.body.errors).toBeUndefined();
    expect(root.page).toMatchObject({
      type: "OBJECT",
      next: null,
      children: [
        { key: "big", type: "OBJECT", value: null, size: null },
        { key: "small", type: "OBJECT", value: null, size: null },
      ],
    });
    // The parent of 200,000 leaves answers in a few hundred bytes (`path` would carry them all).
    expect(root.bytes).toBeLessThan(500);

    const first = await keys({ path: ["big"], limit: 50 });
    const { page } = first;
    expect(page.children).toHaveLength(50);
    expect(page.children[0]).toEqual({ key: "c000000", type: "OBJECT", value: null, size: null });
    expect(page.next).toBe("c000049");
    expect(first.bytes).toBeLessThan(50 * 80 + 200);
    const second = (await keys({ path: ["big"], limit: 50, after: page.next })).page;
    expect(second.children[0]?.key).toBe("c000050");
    const last = (await keys({ path: ["big"], limit: 1000, after: "c099500" })).page;
    expect(last.children).toHaveLength(499);
    expect(last.next).toBeNull();
    expect((await keys({ path: ["big"], after: "c099999" })).page).toBeNull();
    expect((await keys({ path: ["big", "c000007"] })).page.children).toEqual([
      { key: "v", type: "NUMBER", value: 7, size: 1 },
      { key: "w", type: "STRING", value: "some text", size: 11 },
    ]);
  });

  it("returns hostile keys and small values as data, leaves and absent paths as `path` does", async () => {
    const small = (await keys({ path: ["small"] })).page;
    expect(small.children.map((c) => c.key)).toEqual(["__proto__", "a/b.c", "constructor", "🎉"]);
    expect(small.children[3]).toEqual({ key: "🎉", type: "ARRAY", value: [1, null], size: expect.any(Number) });
    expect((await keys({ path: ["small", "a/b.c"] })).page).toMatchObject({ type: "BOOLEAN", children: [], next: null });
    expect((await keys({ path: ["nothing"] })).page).toBeNull();
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it("lists a virtual path from its resolver, large leaves by size only", async () => {
    const v = (await keys({ path: ["virtual"], limit: 2 })).page;
    expect(v.children).toEqual([
      { key: "a", type: "OBJECT", value: null, size: null },
      { key: "b", type: "NUMBER", value: 2, size: 1 },
    ]);
    expect(v.next).toBe("b");
    const rest = (await keys({ path: ["virtual"], after: "b" })).page;
    expect(rest.children).toEqual([{ key: "c", type: "STRING", value: null, size: 3002 }]);
  });

  it("rejects a bad limit or cursor with BAD_USER_INPUT naming the path", async () => {
    for (const variables of [
      { path: ["big"], limit: 0 },
      { path: ["big"], limit: 1001 },
      { path: ["big"], after: "bad\u0001key" },
      { path: ["big"], after: "" },
      { path: ["", "x"] },
    ]) {
      const r = await http(server.url, KEYS, variables);
      expect(r.errors?.[0]?.extensions?.code, JSON.stringify(variables)).toBe("BAD_USER_INPUT");
      expect(r.errors?.[0]?.message).toContain("[");
    }
  });
});
