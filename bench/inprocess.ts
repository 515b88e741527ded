/**
 * The in-process bench (the second section of `npm run bench`, bench/run.ts): Kora's server and
 * the bench's clients in one process. Measures Kora and the raw limits of its parts in the same
 * run, on the same machine, and prints ratios. Never asserted in tests. See docs/bench.md.
 * `--out FILE` writes its table there (bench/run.ts reads it); without it, it only prints.
 *
 * Uses server PostgreSQL (DATABASE_URL, else postgres://postgres@127.0.0.1:5432/test when that
 * answers) in a scratch schema dropped at the end; otherwise, or with `--pglite`, the embedded
 * store in memory (no raw `pg` figures then). `--quick` shortens every phase for a smoke run.
 * Every loop is bounded in time and in count.
 */
import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { Agent, createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { createClient } from "graphql-ws";
import pg from "pg";
import WebSocket, { WebSocketServer } from "ws";
import { silentLogger } from "../core/gateway.ts";
import type { Store } from "../core/store.ts";
import { createPgliteStore, createPostgresStore } from "../core/store/index.ts";
import { encodePath, upperBound } from "../core/store/encoding.ts";
import { mergeAt } from "../core/tree.ts";
import { measureRulesOverhead } from "../interceptors/bench.ts";
import { startKora } from "../server/index.ts";

const quick = process.argv.includes("--quick");
const url = process.env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/test";
const usePglite =
  process.argv.includes("--pglite") || !(process.env.DATABASE_URL || (await reachable(url)));
const SECONDS = quick ? 1.5 : 5;
const WATCHERS = quick ? 200 : 1000;
// The watchers share this many graphql-ws sockets (1,000 sockets with their graphql-ws clients
// in this same process would measure the clients more than the server on 2 cores).
const FAN_SOCKETS = 50;
const IDLE = quick ? 10_000 : 100_000;
// Upper bound on operations per timed phase, so a surprisingly fast machine still ends.
const MAX_OPS = 1_000_000;

/** Whether the default server PostgreSQL answers (the bench falls back to PGlite otherwise). */
async function reachable(connectionString: string): Promise<boolean> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

type Row = { metric: string; kora: string; raw: string; ratio: string };
const rows: Row[] = [];
const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
function row(metric: string, kora: number, raw: number | undefined, unit: string) {
  const ratio = raw === undefined ? "–" : `${fmt(kora / raw, 2)}x`;
  rows.push({
    metric,
    kora: `${fmt(kora, kora < 10 ? 2 : 0)} ${unit}`,
    raw: raw === undefined ? "–" : `${fmt(raw, raw < 10 ? 2 : 0)} ${unit}`,
    ratio,
  });
  console.log(
    `  ${metric}: Kora ${fmt(kora, 2)} ${unit}, raw ${raw === undefined ? "–" : fmt(raw, 2)} ${unit}`,
  );
}
const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
};

async function forDuration(
  seconds: number,
  workers: number,
  work: (w: number) => Promise<void>,
): Promise<number> {
  const end = performance.now() + seconds * 1000;
  let count = 0;
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      while (performance.now() < end && count < MAX_OPS) {
        await work(w);
        count++;
      }
    }),
  );
  return count / seconds;
}

/** POSTs a JSON body and parses the JSON answer (a status other than 200 rejects). */
function postJson(agent: Agent, target: string, body: string): Promise<unknown> {
  const { hostname, port, pathname } = new URL(target);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        agent,
        hostname,
        port,
        path: pathname,
        method: "POST",
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", reject);
        res.on("end", () => {
          if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}`));
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
          } catch (error) {
            reject(error);
          }
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

function wsClient(wsUrl: string) {
  return createClient({ url: wsUrl, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
}

function execute(
  client: ReturnType<typeof wsClient>,
  query: string,
  variables: Record<string, unknown>,
) {
  return new Promise<unknown>((resolve, reject) => {
    let result: unknown;
    client.subscribe(
      { query, variables },
      { next: (r) => (result = r), error: reject, complete: () => resolve(result) },
    );
  });
}

async function main() {
  const schema = `kora_bench_${process.pid}`;
  const raw = usePglite ? undefined : new pg.Pool({ connectionString: url, max: 17 });
  let store: Store;
  if (usePglite)
    store = await createPgliteStore({ schema }); // no dataDir: in memory
  else store = await createPostgresStore({ url, schema, poolSize: 10 });
  const kora = await startKora({
    store,
    log: silentLogger,
    port: 0,
    host: "127.0.0.1",
    retention: { intervalMs: 0 },
    watchBuffer: 100_000,
    rateLimits: false, // the bench drives thousands of operations a second from one address
  });
  const wsUrl = kora.url.replace(/^http/, "ws");
  console.log(`Kora on ${store.description}; ${quick ? "quick run" : "full run"}`);

  try {
    // 1. Durable merges/s, 16 concurrent graphql-ws clients, vs plain pg single-row upserts.
    console.log("1. merges");
    const clients = Array.from({ length: 16 }, () => wsClient(wsUrl));
    const MERGE = `mutation($p: [String!]!, $v: JSON!) { merge(path: $p, value: $v) { version } }`;
    let n = 0;
    const koraMerges = await forDuration(SECONDS, 16, (w) =>
      execute(clients[w]!, MERGE, { p: ["bench", `c${w}`, `k${n++ % 1000}`], v: n }).then(() => {}),
    );
    let rawUpserts: number | undefined;
    if (raw) {
      await raw.query(
        `CREATE TABLE IF NOT EXISTS ${schema}.raw_upsert (k text COLLATE "C" PRIMARY KEY, v jsonb NOT NULL)`,
      );
      let m = 0;
      rawUpserts = await forDuration(SECONDS, 16, async (w) => {
        await raw.query(
          `INSERT INTO ${schema}.raw_upsert VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v`,
          [`c${w}/k${m % 1000}`, String(m++)],
        );
      });
    }
    row(
      "durable merges/s (16 graphql-ws clients) vs pg upserts (16 connections)",
      koraMerges,
      rawUpserts,
      "/s",
    );

    // 2. Fan-out: one watched path, WATCHERS graphql-ws subscriptions spread over FAN_SOCKETS sockets.
    console.log("2. fan-out");
    const sockets = Array.from({ length: FAN_SOCKETS }, () => wsClient(wsUrl));
    const WATCH = `subscription { watch(path: ["fan"]) { version merge } }`;
    const sentAt = new Map<string, number>();
    const latencies: number[] = [];
    let delivered = 0;
    let ready = 0;
    const allReady = new Promise<void>((resolve) => {
      for (let i = 0; i < WATCHERS; i++) {
        let first = true;
        sockets[i % sockets.length]!.subscribe(
          { query: WATCH },
          {
            next: (r) => {
              if (first) {
                first = false;
                if (++ready === WATCHERS) resolve();
                return;
              }
              const v = (r.data as { watch: { version: string } }).watch.version;
              const t = sentAt.get(v);
              if (t !== undefined) latencies.push(performance.now() - t);
              delivered++;
            },
            error: () => {},
            complete: () => {},
          },
        );
      }
    });
    await allReady;
    const EVENTS = quick ? 20 : 50;
    const payload = { item: "x".repeat(100) };
    const fanStart = performance.now();
    for (let i = 0; i < EVENTS; i++) {
      const t = performance.now();
      const r = await store.commit(async () => mergeAt(["fan", `e${i}`], payload));
      sentAt.set(String(r.version), t);
    }
    while (delivered < EVENTS * WATCHERS && performance.now() - fanStart < 60_000)
      await new Promise((r) => setTimeout(r, 20));
    const fanSeconds = (performance.now() - fanStart) / 1000;
    const koraDeliveries = delivered / fanSeconds;
    for (const s of sockets) await s.dispose();

    // Raw: a plain ws server broadcasting the same payload to WATCHERS sockets.
    const httpServer = createServer();
    const wss = new WebSocketServer({ server: httpServer });
    await new Promise<void>((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
    const port = (httpServer.address() as AddressInfo).port;
    const rawSockets: WebSocket[] = [];
    let rawDelivered = 0;
    const rawLat: number[] = [];
    await Promise.all(
      Array.from(
        { length: WATCHERS },
        () =>
          new Promise<void>((resolve) => {
            const s = new WebSocket(`ws://127.0.0.1:${port}`);
            s.on("message", (data) => {
              const { t } = JSON.parse(String(data)) as { t: number };
              rawLat.push(performance.now() - t);
              rawDelivered++;
            });
            s.on("open", () => resolve());
            rawSockets.push(s);
          }),
      ),
    );
    const rawStart = performance.now();
    for (let i = 0; i < EVENTS; i++) {
      const message = JSON.stringify({
        t: performance.now(),
        data: { watch: { version: String(i), merge: { fan: { [`e${i}`]: payload } } } },
      });
      for (const client of wss.clients) client.send(message);
      await new Promise((r) => setImmediate(r));
    }
    while (rawDelivered < EVENTS * WATCHERS && performance.now() - rawStart < 60_000)
      await new Promise((r) => setTimeout(r, 10));
    const rawDeliveries = rawDelivered / ((performance.now() - rawStart) / 1000);
    for (const s of rawSockets) s.terminate();
    await new Promise<void>((resolve) => wss.close(() => httpServer.close(() => resolve())));
    row(
      `deliveries/s to ${fmt(WATCHERS)} watchers of one path (graphql-ws subscriptions over ${FAN_SOCKETS} sockets) vs plain ws broadcast to ${fmt(WATCHERS)} sockets`,
      koraDeliveries,
      rawDeliveries,
      "/s",
    );
    row(
      "delivery latency p50 (ms, lower is better)",
      percentile(latencies, 50),
      percentile(rawLat, 50),
      "ms",
    );
    row(
      "delivery latency p99 (ms, lower is better)",
      percentile(latencies, 99),
      percentile(rawLat, 99),
      "ms",
    );

    // 3. path reads/s of a 1,000-leaf subtree over HTTP vs a plain pg range scan.
    console.log("3. reads");
    const leaves: Record<string, number> = {};
    for (let i = 0; i < 1000; i++) leaves[`leaf${String(i).padStart(4, "0")}`] = i;
    await store.commit(async () => mergeAt(["read", "sub"], leaves));
    const READ = JSON.stringify({ query: `{ path(path: ["read", "sub"]) }` });
    // The client runs in this process, on the same 2 cores as the server: `node:http` with a
    // keep-alive agent (as `fetch` keeps connections alive too) costs about 0.65 ms of CPU per
    // read, `fetch` about 1.5 ms (docs/bench.md, "Reads").
    const agent = new Agent({ keepAlive: true, maxSockets: 8 });
    const first = (await postJson(agent, kora.url, READ)) as { data?: { path?: object } };
    if (Object.keys(first.data?.path ?? {}).length !== 1000)
      throw new Error("unexpected read result");
    const koraReads = await forDuration(SECONDS, 8, async () => {
      await postJson(agent, kora.url, READ);
    });
    agent.destroy();
    let rawReads: number | undefined;
    if (raw) {
      const lo = encodePath(["read", "sub"]);
      rawReads = await forDuration(SECONDS, 8, async () => {
        await raw.query(`SELECT path, value FROM ${schema}.nodes WHERE path >= $1 AND path < $2`, [
          lo,
          upperBound(lo),
        ]);
      });
    }
    row("path reads/s of a 1,000-leaf subtree (HTTP) vs pg range scan", koraReads, rawReads, "/s");

    // 4. Write latency with 0 vs IDLE idle watchers on other paths (registered in-process).
    console.log("4. idle watchers");
    const writer = wsClient(wsUrl);
    const latency = async () => {
      const xs: number[] = [];
      for (let i = 0; i < (quick ? 100 : 300); i++) {
        const t = performance.now();
        await execute(writer, MERGE, { p: ["lat", `k${i % 10}`], v: i });
        xs.push(performance.now() - t);
      }
      return percentile(xs, 50);
    };
    const before = await latency();
    const idle = await Promise.all(
      Array.from({ length: IDLE }, (_, i) => kora.gateway.watch(["idle", `u${i}`, "inbox"], {})),
    );
    const after = await latency();
    for (const w of idle) w.close();
    await writer.dispose();
    row(
      `write latency p50 with ${fmt(IDLE)} idle watchers on other paths (registered in-process with gateway.watch) vs none (ms, lower is better)`,
      after,
      before,
      "ms",
    );

    for (const c of clients) await c.dispose();
    // 5. Rules engine overhead: merges/s through the gateway with 10 rules loaded vs none.
    console.log("5. rules engine");
    let n5 = 0;
    const overhead = await measureRulesOverhead({
      createStore: () =>
        usePglite
          ? createPgliteStore({ schema: `${schema}_r${n5++}` })
          : createPostgresStore({ url, schema: `${schema}_r${n5++}`, poolSize: 10 }),
      seconds: SECONDS,
      concurrency: 16,
    });
    row(
      "merges/s with the rules engine and 10 rules vs no rules (gateway, 16 writers)",
      overhead.rules,
      overhead.none,
      "/s",
    );
    if (raw)
      for (let i = 0; i < n5; i++) await raw.query(`DROP SCHEMA IF EXISTS ${schema}_r${i} CASCADE`);
  } finally {
    await kora.close();
    if (raw) {
      await raw.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await raw.end();
    }
  }

  rows.push(await offlineClientRow());
  rows.push(await clientSizeRow());

  const cpu = cpus()[0]?.model ?? "unknown CPU";
  const header = `Run ${new Date().toISOString()} on ${cpu} (${cpus().length} cores), Node ${process.version}, store: ${store.description}${quick ? " (quick)" : ""}.`;
  const table = [
    "| metric | Kora | raw | Kora vs raw |",
    "|---|---|---|---|",
    ...rows.map((r) => `| ${r.metric} | ${r.kora} | ${r.raw} | ${r.ratio} |`),
  ].join("\n");
  const text = `${header}\n\n${table}\n\nRatio = Kora / raw. For rates higher is better (targets: merges >= 0.5x, fan-out >= 0.5x, reads >= 0.5x); for latencies lower is better (target for idle watchers: < 1.2x).\n`;
  console.log(`\n${text}`);
  const out = process.argv.indexOf("--out");
  if (out >= 0 && process.argv[out + 1]) writeFileSync(process.argv[out + 1] as string, text);
  process.exit(0);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});

// ---------------------------------------------------------------------------------------------
// Offline client (issue #4, client/bench.ts): a watch on a 10,000-leaf subtree applying a stream
// of 1,000 remote changes, in the client alone (no server). Target: under a second.
async function offlineClientRow() {
  const { benchClientApply } = await import("../client/bench.ts");
  const r = await benchClientApply({ leaves: 10_000, changes: 1_000 });
  return {
    metric: "client: apply 1,000 remote changes on a 10,000-leaf watch",
    kora: `${r.ms.toFixed(0)} ms (${r.changesPerSecond}/s)`,
    raw: "-",
    ratio: "target < 1000 ms",
  };
}

// The client's browser bundle (issue #10, bench/client-size.ts): what an app ships for
// createClient + indexedDbStorage, graphql-ws included, minified and gzipped.
async function clientSizeRow() {
  const { clientBundleSize } = await import("./client-size.ts");
  const r = await clientBundleSize(["createClient", "indexedDbStorage"]);
  return {
    metric: "client: browser bundle (createClient + indexedDbStorage, graphql-ws included)",
    kora: `${(r.gzipBytes / 1024).toFixed(1)} KiB gzip (${(r.minifiedBytes / 1024).toFixed(1)} KiB min)`,
    raw: "-",
    ratio: "keep small",
  };
}
