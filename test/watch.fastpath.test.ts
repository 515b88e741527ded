/**
 * The watch fast path (server/watchpath.ts) answers exactly as graphql-js execution does: the
 * same documents run against a server with the fast path and against one without it (a server
 * with an extra plugin takes the ordinary path), over graphql-ws, and every result and error
 * must be equal. Also checks which documents the fast path serves and which it leaves alone.
 */
import type { Client } from "graphql-ws";
import { afterEach, describe, expect, it } from "vitest";
import { mutationFromInput } from "../core/tree.ts";
import { watchFastPathStats } from "../server/watchpath.ts";
import { wsClient } from "./helpers/clients.ts";
import { pgliteTarget } from "./helpers/db.ts";
import { EventQueue } from "./helpers/events.ts";
import { type TestServer, startTestServer } from "./helpers/server.ts";

const servers: TestServer[] = [];
const clients: Client[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.dispose()));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const CHANGES = [
  { merge: { w: { a: 1, b: { c: "x" } } } },
  { merge: { w: { b: { d: [1, null, { e: 2 }] } } } },
  { delete: { w: { a: true } } },
  { merge: { w: "a leaf replaces the subtree" } },
  { delete: { w: true } }, // value: null
  { delete: { w: true }, merge: { w: { again: true } } },
];

interface Case {
  what: string;
  query: string;
  variables?: Record<string, unknown>;
  operationName?: string;
  /** Results to collect (a setup error counts as one). */
  results: number;
  fast: boolean;
  /** Resumes with since: no snapshot to wait for before the changes (the log replays them). */
  resumes?: boolean;
}

const CASES: Case[] = [
  { what: "the usual selection", query: `subscription { watch(path: ["w"]) { version snapshot merge delete } }`, results: 7, fast: true },
  {
    what: "aliases, __typename and value, named operation",
    query: `subscription S { w: watch(path: ["w"]) { __typename v: version value snapshot m: merge d: delete } }`,
    operationName: "S",
    results: 7,
    fast: true,
  },
  {
    what: "variables and since",
    query: `subscription($p: [String!]!, $s: String) { watch(path: $p, since: $s) { version merge delete snapshot } }`,
    variables: { p: ["w"], s: "1" },
    results: 6,
    resumes: true,
    fast: true,
  },
  { what: "a single string coerced to a list", query: `subscription { watch(path: "w") { version merge } }`, results: 7, fast: true },
  { what: "the root path", query: `subscription { watch(path: []) { version merge delete } }`, results: 7, fast: true },
  {
    what: "one of two operations",
    query: `query Q { path(path: ["w"]) } subscription W { watch(path: ["w"]) { snapshot version } }`,
    operationName: "W",
    results: 7,
    fast: true,
  },
  {
    what: "a fragment (ordinary path)",
    query: `subscription { watch(path: ["w"]) { ...F } } fragment F on WatchEvent { version merge }`,
    results: 7,
    fast: false,
  },
  { what: "a directive (ordinary path)", query: `subscription { watch(path: ["w"]) { version merge @include(if: true) } }`, results: 7, fast: false },
  { what: "a malformed since", query: `subscription { watch(path: ["w"], since: "abc") { version } }`, results: 1, fast: false },
  { what: "a since beyond the store", query: `subscription { watch(path: ["w"], since: "999") { version } }`, results: 1, fast: false },
  { what: "an empty key", query: `subscription { watch(path: [""]) { version } }`, results: 1, fast: false },
  { what: "a variable of the wrong type", query: `subscription($p: [String!]!) { watch(path: $p) { version } }`, variables: { p: 5 }, results: 1, fast: false },
];

async function collect(server: TestServer, c: Case): Promise<unknown[]> {
  const client = wsClient(server.wsUrl);
  clients.push(client);
  const queue = new EventQueue<unknown>();
  client.subscribe(
    { query: c.query, ...(c.variables ? { variables: c.variables } : {}), ...(c.operationName ? { operationName: c.operationName } : {}) },
    { next: (r) => queue.push(r), error: (e) => queue.push({ error: Array.isArray(e) ? e : String(e) }), complete: () => {} },
  );
  const out: unknown[] = [];
  // The snapshot (or the setup error) before any change, so both servers snapshot the same data.
  if (!c.resumes) out.push(await queue.next(60_000));
  return Object.assign(out, { queue });
}

describe("the watch fast path", () => {
  it("gives the same results and errors as graphql-js execution, document by document", async () => {
    const fast = await startTestServer(pgliteTarget);
    const ordinary = await startTestServer(pgliteTarget, { plugins: [{}] });
    servers.push(fast, ordinary);
    for (const s of servers) await s.kora.gateway.commit(mutationFromInput({ merge: { w: { seed: 1 } } }));

    const before = watchFastPathStats.served;
    const opened = await Promise.all(CASES.map(async (c) => ({ c, fast: await collect(fast, c), ordinary: await collect(ordinary, c) })));
    for (const change of CHANGES) for (const s of servers) await s.kora.gateway.commit(mutationFromInput(change));
    for (const { c, fast: f, ordinary: o } of opened) {
      for (const got of [f, o] as (unknown[] & { queue: EventQueue<unknown> })[]) {
        while (got.length < c.results) got.push(await got.queue.next(60_000));
      }
      expect(f.slice(0, c.results), c.what).toEqual(o.slice(0, c.results));
    }
    expect(watchFastPathStats.served - before).toBe(CASES.filter((c) => c.fast).length);
    // The cases saw real events, not only errors.
    const usual = opened[0]?.fast[6] as { data: { watch: { version: string } } } | undefined;
    expect(usual?.data.watch.version).toBe("7");
  }, 120_000);
});
