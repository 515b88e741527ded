/**
 * UNAVAILABLE (contract section 5): store failures that mean "down or slow" get the code, a 503
 * with Retry-After over HTTP and retryAfterMs over WebSocket, within the request deadline; bugs
 * stay INTERNAL_SERVER_ERROR. The fault suite (test/faults) does the same against a real
 * PostgreSQL being restarted and frozen; here a store that stalls or fails on demand.
 */
import { afterEach, describe, expect, it } from "vitest";
import { KoraError } from "../core/errors.ts";
import { CommitOutcomeUnknown } from "../core/store/db.ts";
import { isUnavailable, mapSqlError } from "../core/store/sql.ts";
import type { Store } from "../core/store.ts";
import { CLIENT_KINDS } from "./helpers/clients.ts";
import { createMemoryStore } from "./helpers/memory-store.ts";
import { MERGE, PATH, type TestServer, WATCH, startTestServer } from "./helpers/server.ts";

const code = (e: unknown) => (mapSqlError(e) as KoraError).code;

describe("store errors that mean the store is away", () => {
  it.each([
    ["admin shutdown 57P01", Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" })],
    ["connection failure 08006", Object.assign(new Error("connection failure"), { code: "08006" })],
    ["cannot connect now 57P03", Object.assign(new Error("the database system is starting up"), { code: "57P03" })],
    ["statement timeout 57014", Object.assign(new Error("canceling statement due to statement timeout"), { code: "57014" })],
    ["lock timeout 55P03", Object.assign(new Error("canceling statement due to lock timeout"), { code: "55P03" })],
    ["refused", Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" })],
    ["reset", Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" })],
    ["refused on both families", new AggregateError([Object.assign(new Error("x"), { code: "ECONNREFUSED" })], "")],
    ["terminated", new Error("Connection terminated unexpectedly")],
    ["pool timeout", new Error("timeout exceeded when trying to connect")],
    ["query timeout", new Error("Query read timeout")],
  ])("%s is UNAVAILABLE", (_name, error) => {
    expect(isUnavailable(error)).toBe(true);
    expect(code(error)).toBe("UNAVAILABLE");
    expect((mapSqlError(error) as KoraError).message).toMatch(/nothing was written; retry later/);
  });

  it("a commit whose outcome is unknown says so, and that a retry with the same writeId is safe", () => {
    const mapped = mapSqlError(new CommitOutcomeUnknown(new Error("Connection terminated"))) as KoraError;
    expect(mapped.code).toBe("UNAVAILABLE");
    expect(mapped.message).toMatch(/may or may not have been applied; retrying with the same writeId is safe/);
  });

  it.each([
    ["unique violation", Object.assign(new Error("duplicate key"), { code: "23505" })],
    ["syntax error (a bug)", Object.assign(new Error("syntax error"), { code: "42601" })],
    ["a plain bug", new TypeError("x is undefined")],
  ])("%s is not", (_name, error) => {
    expect(isUnavailable(error)).toBe(false);
    expect(mapSqlError(error)).not.toBeInstanceOf(KoraError);
  });
});

/** A store that answers normally, fails as an unreachable database does, or never answers. */
function faultyStore(): Store & { mode: "ok" | "fail" | "stall"; failed: number; release(): void } {
  const inner = createMemoryStore();
  const stalled: (() => void)[] = [];
  const down = () => mapSqlError(Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" }));
  const guard = <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
    (...args: A): Promise<R> => {
      if (store.mode === "fail") {
        store.failed++;
        return Promise.reject(down());
      }
      if (store.mode === "stall") return new Promise<R>((_resolve, reject) => stalled.push(() => reject(down())));
      return fn(...args);
    };
  const store: Store & { mode: "ok" | "fail" | "stall"; failed: number; release(): void } = {
    ...inner,
    mode: "ok",
    failed: 0,
    /** Ends every stalled call (as the store's own query timeout would), so the server can close. */
    release: () => {
      store.mode = "ok";
      for (const end of stalled.splice(0)) end();
    },
    read: guard((r) => inner.read(r)),
    commit: guard((b) => inner.commit(b)),
    changes: guard((a, l) => inner.changes(a, l)),
    version: guard(() => inner.version()),
  };
  return store;
}

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function post(url: string, query: string, variables: Record<string, unknown>) {
  const start = performance.now();
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { errors?: { message: string; extensions: Record<string, unknown> }[] };
  return { status: res.status, retryAfter: res.headers.get("retry-after"), body, ms: performance.now() - start };
}

describe("over the transports", () => {
  async function start(store: Store, requestTimeoutMs = 400) {
    server = await startTestServer({ name: "pglite", create: async () => ({ store, schema: "faulty", dispose: async () => {} }) }, { requestTimeoutMs });
    return server;
  }

  it("HTTP: a read and a write to an unreachable store answer 503 with Retry-After at once", async () => {
    const store = faultyStore();
    const s = await start(store, 5000);
    store.mode = "fail";
    for (const [query, variables] of [
      [PATH, { path: ["a"] }],
      [MERGE, { path: ["a"], value: 1 }],
    ] as const) {
      const r = await post(s.url, query, variables);
      expect(r.status).toBe(503);
      expect(r.retryAfter).toBe("1");
      expect(r.body.errors?.[0]?.extensions).toMatchObject({ code: "UNAVAILABLE", retryAfterMs: 1000 });
      expect(r.body.errors?.[0]?.extensions.http).toBeUndefined();
      expect(r.ms).toBeLessThan(2500); // at once: far from the 5 s deadline
    }
  });

  it("HTTP: a store that does not answer fails the request at its deadline; the write says its outcome is unknown", async () => {
    const store = faultyStore();
    const s = await start(store, 300);
    store.mode = "stall";
    const read = await post(s.url, PATH, { path: ["a"] });
    expect(read.status).toBe(503);
    expect(read.body.errors?.[0]?.message).toMatch(/did not answer the read within 300 ms/);
    expect(read.ms).toBeGreaterThanOrEqual(290);
    expect(read.ms).toBeLessThan(3000);
    const write = await post(s.url, MERGE, { path: ["a"], value: 1 });
    expect(write.status).toBe(503);
    expect(write.body.errors?.[0]?.message).toMatch(/may or may not have been applied; retrying with the same writeId is safe/);
    store.release();
  });

  it.each(CLIENT_KINDS.map((k) => [k.name, k] as const))("%s: a new watch fails with UNAVAILABLE; an open one stays open and goes on", async (_name, kind) => {
    const store = faultyStore();
    const s = await start(store);
    const conn = kind.connect({ url: s.url, wsUrl: s.wsUrl });
    try {
      const open = conn.subscribe(WATCH, { path: ["a"] });
      expect((await open.events.next()).snapshot).toBe(true);
      store.mode = "fail";
      const refused = conn.subscribe(WATCH, { path: ["b"] });
      const failure = await refused.events.next().then(
        () => undefined,
        (e: unknown) => e,
      );
      // Each client library wraps GraphQL errors its own way (Apollo: an Error with `errors`).
      const errors = (failure as { errors?: unknown }).errors ?? failure;
      expect(JSON.stringify(errors)).toMatch(/UNAVAILABLE/);
      // The failed watch is over: it asked the store once or twice, not again and again (a watch
      // that threw used to be asked for its next event by yoga, threw again, and so on: an
      // endless stream of errors over SSE that held the event loop for seconds).
      expect(store.failed).toBeLessThan(5);
      store.mode = "ok";
      await s.kora.gateway.commit({ merge: { a: { x: 1 } }, delete: {} });
      const event = await open.events.next();
      expect(event).toMatchObject({ snapshot: false, merge: { a: { x: 1 } } });
      await open.close();
    } finally {
      await conn.dispose();
    }
  });
});
