/**
 * The fuzz suite (docs/security.md, "Fuzzing"): fast-check generates tree mutations with hostile
 * keys, sizes, nesting and types, GraphQL documents, variables and raw bodies, and sends them to a
 * real server over HTTP and WebSocket. Whatever it sends: no 5xx other than 503 UNAVAILABLE, no
 * INTERNAL_SERVER_ERROR, the server keeps serving, and no partial write: after every run the
 * stored tree equals a model that applied exactly the mutations the server accepted.
 *
 * Bounded for CI (KORA_FUZZ_RUNS runs, default 60, stopped after KORA_FUZZ_MS, default 60 s).
 * Nightly: KORA_FUZZ_RUNS=5000 KORA_FUZZ_MS=1800000 npx vitest run test/fuzz.server.test.ts
 * (KORA_FUZZ_SEED replays a reported seed).
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { pgliteTarget } from "./helpers/db.ts";
import {
  DELETE,
  MERGE,
  MUTATE,
  PATH,
  type TestServer,
  read,
  startTestServer,
} from "./helpers/server.ts";

const RUNS = Number(process.env.KORA_FUZZ_RUNS ?? 60);
const TIME_MS = Number(process.env.KORA_FUZZ_MS ?? 60_000);
const SEED =
  process.env.KORA_FUZZ_SEED === undefined ? undefined : Number(process.env.KORA_FUZZ_SEED);
const LIMIT = 32 * 1024; // a small mutation limit keeps oversized cases cheap

type Tree = { [key: string]: Json };
type Json = string | number | boolean | null | Json[] | Tree;

const isTree = (v: unknown): v is Tree => typeof v === "object" && v !== null && !Array.isArray(v);

/** `tree[key] = value` that also works for `__proto__` (an assignment would set the prototype). */
function set(tree: Tree, key: string, value: Json): void {
  Object.defineProperty(tree, key, { value, enumerable: true, writable: true, configurable: true });
}

// ---- the model: the contract's tree semantics (CONTRACT.md section 2), written independently ----

/** A merge as the contract normalizes it: empty objects write nothing. */
function normalizeMerge(v: Json): Json | undefined {
  if (!isTree(v)) return v;
  const out: Tree = {};
  for (const [k, child] of Object.entries(v)) {
    const n = normalizeMerge(child);
    if (n !== undefined) set(out, k, n);
  }
  return Object.keys(out).length === 0 ? undefined : out;
}

function applyDelete(tree: Tree, del: Tree): void {
  for (const [k, d] of Object.entries(del)) {
    if (!Object.hasOwn(tree, k)) continue;
    if (d === true || d === 1) delete tree[k];
    else if (isTree(d) && isTree(tree[k])) {
      applyDelete(tree[k] as Tree, d);
      if (Object.keys(tree[k] as Tree).length === 0) delete tree[k];
    }
  }
}

function applyMerge(tree: Tree, merge: Tree): void {
  for (const [k, v] of Object.entries(merge)) {
    if (isTree(v)) {
      if (!Object.hasOwn(tree, k) || !isTree(tree[k])) set(tree, k, {});
      applyMerge(tree[k] as Tree, v);
    } else set(tree, k, structuredClone(v));
  }
}

function at(path: string[], v: Json): Tree {
  let out: Json = v;
  for (let i = path.length - 1; i >= 0; i--) out = { [path[i]!]: out };
  return out as Tree;
}

class Model {
  tree: Tree = {};
  mutate(merge: Json | undefined, del: Json | undefined): void {
    const copy = structuredClone(this.tree);
    if (isTree(del)) applyDelete(copy, del);
    const m = merge === undefined ? undefined : normalizeMerge(merge);
    if (isTree(m)) applyMerge(copy, m);
    this.tree = copy;
  }
}

// ---- generators ----

const hostileKey = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom(
      "a",
      "b",
      "c",
      "__proto__",
      "constructor",
      "prototype",
      "toString",
      "ü",
      "🎉",
      "a b",
      "%",
      "_",
      "*",
      "$",
      "[0]",
    ),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "",
      "a\u0000b",
      "x\ny",
      "\u007f",
      "\ud800",
      "é".repeat(400),
      "k".repeat(769),
    ),
  },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 6 }) },
);

const leaf: fc.Arbitrary<Json> = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: "binary", maxLength: 6 }),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.oneof(fc.integer(), fc.constant(null), fc.string({ maxLength: 4 })), {
    maxLength: 4,
  }),
  fc.constant("x".repeat(LIMIT + 10)), // over the mutation limit
);

const value: fc.Arbitrary<Json> = fc.letrec<{ node: Json }>((tie) => ({
  node: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    leaf,
    fc.dictionary(hostileKey, tie("node"), { maxKeys: 4 }) as fc.Arbitrary<Json>,
  ),
})).node;

/** Deep nesting, past the 32-level tree limit and the 256-level array limit. */
const deep = fc.integer({ min: 1, max: 300 }).chain((n) =>
  fc.constantFrom("object", "array").map((kind) => {
    let v: Json = 1;
    for (let i = 0; i < n; i++) v = kind === "object" ? { k: v } : [v];
    return v;
  }),
);

const path = fc.array(hostileKey, { maxLength: 4 });
const anyJson = fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json>;

const TOKENS = [
  "{",
  "}",
  "(",
  ")",
  "[",
  "]",
  ":",
  "...",
  "$v",
  "query",
  "mutation",
  "subscription",
  "fragment",
  "on",
  "Query",
  "Mutation",
  "path",
  "merge",
  "delete",
  "mutate",
  "watch",
  "value",
  "version",
  "__schema",
  "__typename",
  "types",
  "ofType",
  "@skip(if: true)",
  '"a"',
  "1",
  "null",
  "true",
  "a:",
  "b:",
  "#",
];
const document = fc.oneof(
  fc.array(fc.constantFrom(...TOKENS), { maxLength: 40 }).map((t) => t.join(" ")),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.constantFrom(
    PATH,
    MERGE,
    DELETE,
    MUTATE,
    "{ __typename }",
    `{ ${"a: __typename ".repeat(200)} }`,
  ),
);

type Op =
  | { kind: "merge"; path: string[]; value: Json }
  | { kind: "delete"; path: string[] }
  | { kind: "mutate"; merge: Json; delete: Json }
  | { kind: "read"; path: string[]; limit: Json }
  | { kind: "document"; query: string; variables: Json }
  | { kind: "body"; contentType: string; body: string };

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("merge" as const),
      path,
      value: fc.oneof({ weight: 5, arbitrary: value }, { weight: 1, arbitrary: deep }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("delete" as const), path }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("mutate" as const),
      merge: fc.oneof(value, anyJson),
      delete: fc.oneof(
        fc.constant(null),
        fc.dictionary(
          hostileKey,
          fc.oneof(
            fc.constant(true as Json),
            fc.dictionary(hostileKey, fc.constantFrom<Json>(true, 1, false, "x"), { maxKeys: 2 }),
          ),
          { maxKeys: 3 },
        ) as fc.Arbitrary<Json>,
      ),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("read" as const),
      path,
      limit: fc.oneof(fc.constant(null), fc.integer({ min: -2, max: 3 }), anyJson),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("document" as const),
      query: document,
      variables: fc.oneof(anyJson, fc.record({ path, value })),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("body" as const),
      contentType: fc.constantFrom(
        "application/json",
        "application/graphql-response+json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "",
      ),
      body: fc.oneof(
        fc.string({ unit: "binary", maxLength: 60 }),
        anyJson.map((j) => JSON.stringify(j)),
        fc.constant('{"query": "{ __typename }", "variables": 5}'),
      ),
    }),
  },
);

// ---- the run ----

interface Answer {
  status: number;
  body:
    | {
        data?: Record<string, unknown> | null;
        errors?: { message: string; extensions?: { code?: string } }[];
      }
    | undefined;
}

async function send(url: string, contentType: string, body: string): Promise<Answer> {
  const res = await fetch(url, {
    method: "POST",
    headers: contentType ? { "content-type": contentType } : {},
    body,
  });
  const text = await res.text();
  let parsed: Answer["body"];
  try {
    parsed = text ? (JSON.parse(text) as Answer["body"]) : undefined;
  } catch {
    throw new Error(`status ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`);
  }
  return { status: res.status, body: parsed };
}

function gql(url: string, query: string, variables: unknown): Promise<Answer> {
  return send(url, "application/json", JSON.stringify({ query, variables }));
}

/** The failures the suite looks for, whatever the answer's shape. */
function checkAnswer(a: Answer, what: string): void {
  const codes = (a.body?.errors ?? []).map((e) => e.extensions?.code);
  if (a.status >= 500 && !(a.status === 503 && codes.includes("UNAVAILABLE")))
    throw new Error(`${what}: status ${a.status} ${JSON.stringify(a.body)?.slice(0, 300)}`);
  if (codes.includes("INTERNAL_SERVER_ERROR"))
    throw new Error(
      `${what}: INTERNAL_SERVER_ERROR ${JSON.stringify(a.body?.errors).slice(0, 300)}`,
    );
  for (const c of codes)
    if (typeof c !== "string")
      throw new Error(
        `${what}: an error without a code ${JSON.stringify(a.body?.errors).slice(0, 300)}`,
      );
}

const accepted = (a: Answer, field: string) =>
  a.status === 200 && !a.body?.errors?.length && a.body?.data?.[field] != null;

async function run(server: TestServer, model: Model, o: Op): Promise<void> {
  const { url } = server;
  const what = JSON.stringify(o).slice(0, 200);
  switch (o.kind) {
    case "merge": {
      const a = await gql(url, MERGE, { path: o.path, value: o.value });
      checkAnswer(a, what);
      if (accepted(a, "merge")) model.mutate(at(o.path, o.value), undefined);
      return;
    }
    case "delete": {
      const a = await gql(url, DELETE, { path: o.path });
      checkAnswer(a, what);
      if (accepted(a, "delete")) model.mutate(undefined, at(o.path, true));
      return;
    }
    case "mutate": {
      const a = await gql(url, MUTATE, { merge: o.merge, delete: o.delete });
      checkAnswer(a, what);
      if (accepted(a, "mutate")) model.mutate(o.merge ?? undefined, o.delete ?? undefined);
      return;
    }
    case "read": {
      checkAnswer(await gql(url, PATH, { path: o.path, limit: o.limit }), what);
      return;
    }
    case "document":
    case "body": {
      const version = await server.kora.gateway.store.version();
      const a =
        o.kind === "document"
          ? await gql(url, o.query, o.variables)
          : await send(url, o.contentType, o.body);
      checkAnswer(a, what);
      // A generated document can be a real mutation; then its committed result is the model's.
      const data = a.body?.data ?? {};
      for (const field of ["merge", "delete", "mutate"]) {
        const r = data[field] as { merge?: Json; delete?: Json } | undefined;
        if (r?.merge !== undefined && r.delete !== undefined) model.mutate(r.merge, r.delete);
        else if (r != null) model.tree = (await read(url, [])) as Tree; // a write it did not select the result of
      }
      if (Object.keys(data).every((k) => !["merge", "delete", "mutate"].includes(k))) {
        expect(await server.kora.gateway.store.version(), `${what} wrote`).toBe(version);
      }
      return;
    }
  }
}

/** Random text and JSON frames on a raw graphql-ws socket: the server closes or answers, never fails. */
async function socketFrames(wsUrl: string, frames: string[]): Promise<number> {
  const ws = new WebSocket(wsUrl, "graphql-transport-ws");
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    const closed = new Promise<number>((resolve) => ws.once("close", (code) => resolve(code)));
    ws.on("error", () => {});
    ws.send(JSON.stringify({ type: "connection_init" }));
    for (const f of frames) ws.send(f);
    ws.send(JSON.stringify({ id: "end", type: "subscribe", payload: { query: "{ __typename }" } }));
    // Either the server closed on a bad frame, or it answers the last operation.
    const answered = new Promise<number>((resolve) =>
      ws.on("message", (m) => {
        if (String(m).includes('"end"') && String(m).includes("complete")) resolve(0);
      }),
    );
    return await Promise.race([closed, answered]);
  } finally {
    ws.terminate();
  }
}

describe("fuzz: hostile input against a real server", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(pgliteTarget, { limits: { maxMutationBytes: LIMIT } });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("no 5xx, no crash, no partial write", { timeout: TIME_MS + 60_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 8 }), async (ops) => {
        // Each run starts from an empty tree, so a failing run shrinks on its own.
        const top = (await read(server.url, [])) as Tree | null;
        if (top)
          await gql(server.url, MUTATE, {
            delete: Object.fromEntries(Object.keys(top).map((k) => [k, true])),
          });
        const model = new Model();
        for (const o of ops) await run(server, model, o);
        expect((await read(server.url, [])) ?? {}).toEqual(model.tree);
      }),
      {
        numRuns: RUNS,
        interruptAfterTimeLimit: TIME_MS,
        markInterruptAsFailure: false,
        ...(SEED === undefined ? {} : { seed: SEED }),
      },
    );
    // Still serving, and nothing reached Object.prototype.
    expect(await gql(server.url, "{ __typename }", {})).toMatchObject({ status: 200 });
    expect(({} as Record<string, unknown>).a).toBeUndefined();
  });

  it("random WebSocket frames end in a clean close or an answer, never an internal error", {
    timeout: TIME_MS + 60_000,
  }, async () => {
    const frame = fc.oneof(
      fc.string({ unit: "binary", maxLength: 40 }),
      anyJson.map((j) => JSON.stringify(j)),
      fc
        .record({
          id: fc.oneof(fc.string({ maxLength: 3 }), fc.integer()),
          type: fc.constantFrom(
            "subscribe",
            "complete",
            "ping",
            "pong",
            "connection_init",
            "next",
            "x",
          ),
          payload: fc.oneof(anyJson, fc.record({ query: document, variables: anyJson })),
        })
        .map((m) => JSON.stringify(m)),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(frame, { maxLength: 5 }), async (frames) => {
        const code = await socketFrames(server.wsUrl, frames);
        expect([1011, 4500]).not.toContain(code); // internal error close codes
      }),
      {
        numRuns: Math.ceil(RUNS / 2),
        interruptAfterTimeLimit: TIME_MS / 2,
        markInterruptAsFailure: false,
        ...(SEED === undefined ? {} : { seed: SEED }),
      },
    );
    expect(await gql(server.url, "{ __typename }", {})).toMatchObject({ status: 200 });
  });
});
