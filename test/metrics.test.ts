/**
 * Observability (issue 8, item 8): `GET /metrics` in the Prometheus text format, its counters
 * moving as clients write, read and watch; request ids on every log line of a request and in the
 * response; masked errors logged with their id, cause and request id.
 */
import { Writable } from "node:stream";
import type { Client } from "graphql-ws";
import { pino } from "pino";
import WebSocket from "ws";
import { afterEach, describe, expect, it } from "vitest";
import { createPgliteStore, openPglite } from "../core/store/index.ts";
import { mergeAt } from "../core/tree.ts";
import type { Interceptor } from "../interceptors/types.ts";
import { wsClient } from "./helpers/clients.ts";
import { pgliteTarget } from "./helpers/db.ts";
import { EventQueue } from "./helpers/events.ts";
import { metric, parseMetrics, scrape } from "./helpers/metrics.ts";
import {
  MERGE,
  PATH,
  type TestServer,
  WATCH,
  http,
  merge,
  read,
  startTestServer,
} from "./helpers/server.ts";

let server: TestServer | undefined;
let client: Client | undefined;
afterEach(async () => {
  await client?.dispose();
  await server?.close();
  client = server = undefined;
});

/** Polls the metrics until `ok` holds (bounded by a deadline: no sleeps for time). */
async function until(
  url: string,
  ok: (s: ReturnType<typeof parseMetrics>) => boolean,
  deadlineMs = 10_000,
) {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const samples = await scrape(url);
    if (ok(samples)) return samples;
    if (Date.now() > end) throw new Error("metrics did not reach the expected values in time");
    await new Promise((r) => setImmediate(r));
  }
}

describe("GET /metrics", () => {
  it("serves the Prometheus text format, and its counters move with writes, reads and watches", async () => {
    server = await startTestServer(pgliteTarget);
    const { url } = server;
    const res = await fetch(new URL("/metrics", url));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const before = parseMetrics(await res.text());
    // The process's own metrics are there, event-loop lag among them.
    expect(before.some((s) => s.name === "nodejs_eventloop_lag_seconds")).toBe(true);
    expect(metric(before, "kora_store_connections", { state: "total" })).toBe(1);

    await merge(url, ["m", "a"], 1);
    await merge(url, ["m", "b"], 2);
    expect(await read(url, ["m"])).toEqual({ a: 1, b: 2 });
    let after = await scrape(url);
    expect(metric(after, "kora_commits_total") - metric(before, "kora_commits_total")).toBe(2);
    expect(
      metric(after, "kora_commit_duration_seconds_count", { outcome: "ok" }),
    ).toBeGreaterThanOrEqual(2);
    expect(
      metric(after, "kora_reads_total") - metric(before, "kora_reads_total"),
    ).toBeGreaterThanOrEqual(1);

    // A watch: one open subscription, its snapshot and each change are deliveries.
    client = wsClient(server.wsUrl);
    const events = new EventQueue<{ version: string; snapshot: boolean }>();
    const stop = client.subscribe<{ watch: { version: string; snapshot: boolean } }>(
      { query: WATCH, variables: { path: ["m"] } },
      {
        next: (r) => events.push(r.data?.watch as { version: string; snapshot: boolean }),
        error: (e) => events.fail(e),
        complete: () => {},
      },
    );
    expect((await events.next()).snapshot).toBe(true);
    const v = await merge(url, ["m", "c"], 3);
    expect(Number((await events.next()).version)).toBe(v);
    after = await until(url, (s) => metric(s, "kora_watch_deliveries_total") >= 2);
    expect(metric(after, "kora_watch_deliveries_total")).toBe(2);
    expect(metric(after, "kora_watch_subscriptions")).toBe(1);
    expect(metric(after, "kora_watches")).toBe(1);
    expect(metric(after, "kora_websocket_connections")).toBe(1);
    expect(metric(after, "kora_connections")).toBeGreaterThanOrEqual(1);
    expect(metric(after, "kora_feed_version")).toBe(v);
    expect(metric(after, "kora_hub_version")).toBe(v);
    expect(metric(after, "kora_feed_lag_versions")).toBe(0);

    stop();
    after = await until(
      url,
      (s) => metric(s, "kora_watch_subscriptions") === 0 && metric(s, "kora_watches") === 0,
    );
  });

  it("counts a watch resynced after its buffer overflowed", async () => {
    server = await startTestServer(pgliteTarget, { watchBuffer: 2 });
    const { url } = server;
    client = wsClient(server.wsUrl);
    const events = new EventQueue<{ snapshot: boolean }>();
    // A selection through a fragment takes graphql-js execution, which pulls one event at a time
    // from the watch's buffer (a plain watch over graphql-ws is written to its socket as the
    // changes arrive, server/watchpath.ts, and overflows only once its socket is full).
    const pulled = `subscription($path: [String!]!) { watch(path: $path) { ... on WatchEvent { version snapshot merge delete } } }`;
    client.subscribe<{ watch: { snapshot: boolean } }>(
      { query: pulled, variables: { path: ["o"] } },
      {
        next: (r) => events.push(r.data?.watch as { snapshot: boolean }),
        error: (e) => events.fail(e),
        complete: () => {},
      },
    );
    expect((await events.next()).snapshot).toBe(true);
    // Eight commits in one batch reach the hub in one page of the log, dispatched at once: the
    // watch's buffer of 2 overflows, and its next event is a fresh snapshot.
    const { gateway } = server.kora;
    await Promise.all(
      Array.from({ length: 8 }, (_, i) => gateway.commit(mergeAt(["o", `k${i}`], i))),
    );
    let resynced = false;
    for (let i = 0; i < 8 && !resynced; i++) resynced = (await events.next()).snapshot;
    expect(resynced).toBe(true);
    const samples = await until(url, (s) => metric(s, "kora_watch_resyncs_total") >= 1);
    expect(metric(samples, "kora_watch_resyncs_total")).toBeGreaterThanOrEqual(1);
  });

  it("counts store errors by kind and operation", async () => {
    // A database of its own, so that it can fail: its worker is ended as a crash would end it.
    const database = await openPglite();
    const store = await createPgliteStore({ database, schema: "kora" });
    server = await startTestServer({
      name: "pglite",
      create: async () => ({ store, schema: "kora", dispose: () => database.close() }),
    });
    const { url } = server;
    await merge(url, ["e"], 1);
    await database.terminate();
    const failed = await http(url, PATH, { path: ["e"] });
    expect(failed.errors?.[0]?.extensions?.code).toBe("INTERNAL_SERVER_ERROR");
    const samples = await scrape(url);
    expect(metric(samples, "kora_store_errors_total", { operation: "read", kind: "OTHER" })).toBe(
      1,
    );
    expect(metric(samples, "kora_store_connections", { state: "total" })).toBe(0);
  });

  it("is off with metrics: false", async () => {
    server = await startTestServer(pgliteTarget, { metrics: false });
    expect((await fetch(new URL("/metrics", server.url))).status).toBe(404);
  });
});

describe("request ids", () => {
  function capture() {
    const lines: Record<string, unknown>[] = [];
    const stream = new Writable({
      write(chunk, _enc, done) {
        for (const l of String(chunk).split("\n")) if (l) lines.push(JSON.parse(l));
        done();
      },
    });
    return { lines, log: pino({ level: "info" }, stream) };
  }

  const broken: Interceptor = {
    path: ["broken", "**"],
    beforeMutation() {
      throw new Error("the database of a partner is down");
    },
  };

  it("returns a sane incoming x-request-id, and logs a masked error with its error id, cause and request id", async () => {
    const { lines, log } = capture();
    server = await startTestServer(pgliteTarget, { interceptors: [broken], log });
    const res = await fetch(server.url, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": "req-42.abc" },
      body: JSON.stringify({ query: MERGE, variables: { path: ["broken", "a"], value: 1 } }),
    });
    expect(res.headers.get("x-request-id")).toBe("req-42.abc");
    const body = (await res.json()) as {
      errors: { extensions: { code: string; errorId: string } }[];
    };
    const { code, errorId } = body.errors[0]?.extensions ?? {};
    expect(code).toBe("INTERNAL_SERVER_ERROR");
    const line = lines.find((l) => l.errorId === errorId);
    expect(line).toMatchObject({
      reqId: "req-42.abc",
      msg: "unexpected error",
      err: { message: "the database of a partner is down" },
    });
  });

  it("gives each WebSocket operation an id of its own (its connection's, then the operation's), on its log lines", async () => {
    const { lines, log } = capture();
    server = await startTestServer(pgliteTarget, { interceptors: [broken], log });
    const socket = new WebSocket(server.wsUrl, "graphql-transport-ws", {
      headers: { "x-request-id": "conn-7" },
    });
    const errorIds = new EventQueue<string>();
    socket.on("message", (data) => {
      const msg = JSON.parse(String(data)) as { type: string; payload?: unknown };
      if (msg.type === "connection_ack") {
        for (const id of ["a", "b"]) {
          socket.send(
            JSON.stringify({
              id,
              type: "subscribe",
              payload: { query: MERGE, variables: { path: ["broken", id], value: 1 } },
            }),
          );
        }
      }
      const payload = msg.payload as
        | { errors?: { extensions: { errorId: string } }[] }
        | { extensions: { errorId: string } }[]
        | undefined;
      const errors = Array.isArray(payload) ? payload : payload?.errors;
      for (const e of errors ?? []) errorIds.push(e.extensions.errorId);
    });
    await new Promise<void>((resolve) => socket.once("open", () => resolve()));
    socket.send(JSON.stringify({ type: "connection_init" }));
    const found = [await errorIds.next(), await errorIds.next()].map(
      (errorId) => lines.find((l) => l.errorId === errorId)?.reqId,
    );
    expect(found.sort()).toEqual(["conn-7/a", "conn-7/b"]);
    socket.close();
  });

  it("generates an id when none (or an insane one) comes, on every path of the server", async () => {
    server = await startTestServer(pgliteTarget);
    const ids = new Set<string>();
    for (const header of [undefined, "has spaces in it", "x".repeat(300)]) {
      const res = await fetch(server.url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(header ? { "x-request-id": header } : {}),
        },
        body: JSON.stringify({ query: PATH, variables: { path: ["a"] } }),
      });
      await res.arrayBuffer();
      const id = res.headers.get("x-request-id") ?? "";
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      ids.add(id);
    }
    expect(ids.size).toBe(3);
    // Also outside GraphQL: the health check and the scrape.
    const health = await fetch(new URL("/healthz", server.url));
    await health.arrayBuffer();
    expect(health.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });
});
