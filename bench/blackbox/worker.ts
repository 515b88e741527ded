/**
 * A bench client process (forked by bench/blackbox/main.ts, never the server's process). It waits
 * for commands on its IPC channel, runs them against Kora's public API (GraphQL over HTTP and
 * graphql-ws) or against the raw side (plain `pg`, the plain `ws` broadcaster), and answers with
 * counts and latencies. Every loop is bounded by a duration or a count.
 */
import { Agent, request } from "node:http";
import { http1, type Http1 } from "./http1.ts";
import pg from "pg";
import WebSocket from "ws";
import { connectGqlWs, type GqlWs } from "./gqlws.ts";

/** Milliseconds on a clock every process of the machine shares (for send-to-receipt latency). */
export const wallNow = () => performance.timeOrigin + performance.now();

const MERGE = `mutation($p: [String!]!, $v: JSON!) { merge(path: $p, value: $v) { version } }`;
const WATCH = `subscription { watch(path: ["fan"]) { version snapshot merge delete } }`;
const MAX_OPS = 1_000_000;
const APP = process.env.KORA_BENCH_APP ?? "kora-bench";

export type Command =
  | { op: "wsMerges"; url: string; clients: number; seconds: number; tag: string }
  | { op: "httpMerges"; url: string; clients: number; seconds: number; tag: string }
  | { op: "pgUpserts"; db: string; table: string; connections: number; seconds: number; tag: string }
  | { op: "seq"; transport: "ws" | "http" | "pg"; target: string; table?: string; count: number }
  | { op: "reads"; url: string; concurrency: number; seconds: number; path: string[] }
  | { op: "pgReads"; db: string; table: string; concurrency: number; seconds: number; lo: string; hi: string }
  | { op: "watch"; kind: "kora" | "raw"; url: string; sockets: number }
  | { op: "collect"; expect?: number; timeoutMs?: number }
  | { op: "unwatch" }
  | { op: "write"; kind: "kora" | "raw"; url: string; mode: "saturated" | "rate"; count: number; rate?: number };

export interface Outcome {
  count?: number;
  errors?: number;
  errorKinds?: Record<string, number>;
  latencies?: number[];
  deliveries?: number;
  snapshots?: number;
  lastReceipt?: number;
  firstSend?: number;
  ready?: number;
}

const errorKinds: Record<string, number> = {};
function countError(error: unknown): void {
  const e = error as { code?: string; message?: string };
  const kind = e.code ?? e.message?.slice(0, 60) ?? String(error);
  errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
}
function takeErrors(): { errors: number; errorKinds: Record<string, number> } {
  const copy = { ...errorKinds };
  for (const k of Object.keys(errorKinds)) delete errorKinds[k];
  return { errors: Object.values(copy).reduce((a, b) => a + b, 0), errorKinds: copy };
}

async function forDuration(seconds: number, workers: number, work: (w: number) => Promise<void>): Promise<number> {
  const end = performance.now() + seconds * 1000;
  let count = 0;
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      while (performance.now() < end && count < MAX_OPS) {
        try {
          await work(w);
          count++;
        } catch (error) {
          countError(error);
        }
      }
    }),
  );
  return count;
}

/** POSTs a GraphQL request; resolves with the parsed answer, rejects on transport errors, non-200 or GraphQL errors. */
function post(agent: Agent, target: URL, body: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        agent,
        hostname: target.hostname,
        port: target.port,
        path: target.pathname,
        method: "POST",
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          try {
            const parsed = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { errors?: unknown[] };
            if (res.statusCode !== 200 || parsed.errors) reject(new Error(`HTTP ${res.statusCode} ${JSON.stringify(parsed.errors ?? "")}`.slice(0, 200)));
            else resolve(parsed);
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

/** The same as `post`, through the bench's lean HTTP/1.1 client (http1.ts). */
async function post1(client: Http1, body: string): Promise<unknown> {
  const res = await client.post(body);
  const parsed = JSON.parse(res.body) as { errors?: unknown[] };
  if (res.status !== 200 || parsed.errors) throw new Error(`HTTP ${res.status} ${JSON.stringify(parsed.errors ?? "")}`.slice(0, 200));
  return parsed;
}

async function pgClients(db: string, n: number): Promise<pg.Client[]> {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const c = new pg.Client({ connectionString: db, application_name: `${APP}-raw` });
      await c.connect();
      return c;
    }),
  );
}

// --- watchers ---------------------------------------------------------------------------------
let watchSockets: { close(): void }[] = [];
let latencies: number[] = [];
let deliveries = 0;
let snapshots = 0;
let lastReceipt = 0;
let onDelivery: (() => void) | undefined;

function receive(payload: { data?: unknown }): void {
  const now = wallNow();
  const watch = (payload.data as { watch?: { snapshot: boolean; merge: { fan?: Record<string, { t?: number }> } } } | undefined)?.watch;
  if (!watch) return;
  if (watch.snapshot) {
    snapshots++;
    return;
  }
  for (const item of Object.values(watch.merge.fan ?? {})) {
    if (typeof item.t !== "number") continue;
    latencies.push(now - item.t);
    deliveries++;
    lastReceipt = now;
  }
  onDelivery?.();
}

/** Resolves once `expect` deliveries arrived since the last collect, or after `timeoutMs`. */
function delivered(expect: number, timeoutMs: number): Promise<void> {
  if (deliveries >= expect) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(finish, timeoutMs);
    function finish() {
      clearTimeout(timer);
      onDelivery = undefined;
      resolve();
    }
    onDelivery = () => {
      if (deliveries >= expect) finish();
    };
  });
}

async function openWatchers(kind: "kora" | "raw", url: string, sockets: number): Promise<number> {
  let ready = 0;
  // Connect in small waves: 250 simultaneous handshakes would measure the accept queue.
  for (let i = 0; i < sockets; i += 25) {
    await Promise.all(
      Array.from({ length: Math.min(25, sockets - i) }, async () => {
        if (kind === "kora") {
          const client = await connectGqlWs(url);
          watchSockets.push(client);
          await new Promise<void>((resolve) => {
            let first = true;
            client.subscribe(WATCH, undefined, (payload) => {
              if (first) {
                first = false;
                resolve();
              }
              receive(payload);
            });
          });
        } else {
          const socket = new WebSocket(url);
          watchSockets.push({ close: () => socket.terminate() });
          socket.on("message", (data) => receive((JSON.parse(String(data)) as { payload: { data?: unknown } }).payload));
          await new Promise<void>((resolve, reject) => {
            socket.once("open", () => resolve());
            socket.once("error", reject);
          });
        }
        ready++;
      }),
    );
  }
  snapshots = 0;
  return ready;
}

// --- writer -------------------------------------------------------------------------------------
async function write(cmd: Extract<Command, { op: "write" }>): Promise<Outcome> {
  const pad = "x".repeat(100);
  let send: (i: number) => Promise<void>;
  let close: () => void;
  if (cmd.kind === "kora") {
    const agent = new Agent({ keepAlive: true, maxSockets: 8 });
    const target = new URL(cmd.url);
    send = (i) => post(agent, target, JSON.stringify({ query: MERGE, variables: { p: ["fan", `e${i}`], v: { t: wallNow(), pad } } })).then(() => {});
    close = () => agent.destroy();
  } else {
    const socket = new WebSocket(cmd.url);
    await new Promise<void>((resolve, reject) => {
      socket.once("open", () => resolve());
      socket.once("error", reject);
    });
    const acks = new Map<number, () => void>();
    socket.on("message", (data) => {
      const i = Number(String(data));
      acks.get(i)?.();
      acks.delete(i);
    });
    send = (i) =>
      new Promise<void>((resolve) => {
        acks.set(i, resolve);
        socket.send(JSON.stringify({ i, t: wallNow(), pad }));
      });
    close = () => socket.terminate();
  }
  const firstSend = wallNow();
  let ok = 0;
  if (cmd.mode === "saturated") {
    for (let i = 0; i < cmd.count; i++) {
      try {
        await send(i);
        ok++;
      } catch (error) {
        countError(error);
      }
    }
  } else {
    // Open loop: each write leaves at its scheduled time whether or not the previous one is done.
    const interval = 1000 / (cmd.rate ?? 1);
    const start = performance.now();
    const inFlight: Promise<void>[] = [];
    for (let i = 0; i < cmd.count; i++) {
      const wait = start + i * interval - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      inFlight.push(send(i).then(() => void ok++, countError));
    }
    await Promise.all(inFlight);
  }
  close();
  return { count: ok, firstSend, ...takeErrors() };
}

async function run(cmd: Command): Promise<Outcome> {
  switch (cmd.op) {
    case "wsMerges": {
      const clients = await Promise.all(Array.from({ length: cmd.clients }, () => connectGqlWs(cmd.url)));
      let n = 0;
      const count = await forDuration(cmd.seconds, cmd.clients, async (w) => {
        const r = await (clients[w] as GqlWs).execute(MERGE, { p: ["bench", `${cmd.tag}c${w}`, `k${n++ % 1000}`], v: n });
        if (r.errors) throw new Error(JSON.stringify(r.errors).slice(0, 200));
      });
      for (const c of clients) c.close();
      return { count, ...takeErrors() };
    }
    case "httpMerges": {
      const clients = Array.from({ length: cmd.clients }, () => http1(cmd.url));
      let n = 0;
      const count = await forDuration(cmd.seconds, cmd.clients, async (w) => {
        await post1(clients[w] as Http1, JSON.stringify({ query: MERGE, variables: { p: ["bench", `${cmd.tag}c${w}`, `k${n++ % 1000}`], v: n } }));
      });
      for (const c of clients) c.close();
      return { count, ...takeErrors() };
    }
    case "pgUpserts": {
      const clients = await pgClients(cmd.db, cmd.connections);
      let m = 0;
      const sql = `INSERT INTO ${cmd.table} VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v`;
      const count = await forDuration(cmd.seconds, cmd.connections, async (w) => {
        await (clients[w] as pg.Client).query(sql, [`${cmd.tag}c${w}/k${m % 1000}`, String(m++)]);
      });
      await Promise.all(clients.map((c) => c.end()));
      return { count, ...takeErrors() };
    }
    case "seq": {
      const lat: number[] = [];
      let step: (i: number) => Promise<unknown>;
      let close: () => Promise<void> | void;
      if (cmd.transport === "ws") {
        const c = await connectGqlWs(cmd.target);
        step = (i) => c.execute(MERGE, { p: ["seq", `k${i % 10}`], v: i });
        close = () => c.close();
      } else if (cmd.transport === "http") {
        const c = http1(cmd.target);
        step = (i) => post1(c, JSON.stringify({ query: MERGE, variables: { p: ["seq", `k${i % 10}`], v: i } }));
        close = () => c.close();
      } else {
        const [c] = await pgClients(cmd.target, 1);
        const sql = `INSERT INTO ${cmd.table} VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v`;
        step = (i) => (c as pg.Client).query(sql, [`seq/k${i % 10}`, String(i)]);
        close = () => (c as pg.Client).end();
      }
      for (let i = 0; i < cmd.count; i++) {
        const t = performance.now();
        try {
          await step(i);
          lat.push(performance.now() - t);
        } catch (error) {
          countError(error);
        }
      }
      await close();
      return { latencies: lat, ...takeErrors() };
    }
    case "reads": {
      const clients = Array.from({ length: cmd.concurrency }, () => http1(cmd.url));
      const body = JSON.stringify({ query: `query($p: [String!]!) { path(path: $p) }`, variables: { p: cmd.path } });
      const count = await forDuration(cmd.seconds, cmd.concurrency, async (w) => {
        await post1(clients[w] as Http1, body);
      });
      for (const c of clients) c.close();
      return { count, ...takeErrors() };
    }
    case "pgReads": {
      const clients = await pgClients(cmd.db, cmd.concurrency);
      const sql = `SELECT k, v FROM ${cmd.table} WHERE k >= $1 AND k < $2`;
      const count = await forDuration(cmd.seconds, cmd.concurrency, async (w) => {
        await (clients[w] as pg.Client).query(sql, [cmd.lo, cmd.hi]);
      });
      await Promise.all(clients.map((c) => c.end()));
      return { count, ...takeErrors() };
    }
    case "watch":
      return { ready: await openWatchers(cmd.kind, cmd.url, cmd.sockets) };
    case "collect": {
      if (cmd.expect !== undefined) await delivered(cmd.expect, cmd.timeoutMs ?? 60_000);
      const out = { latencies, deliveries, snapshots, lastReceipt };
      latencies = [];
      deliveries = 0;
      snapshots = 0;
      lastReceipt = 0;
      return out;
    }
    case "unwatch":
      for (const s of watchSockets) s.close();
      watchSockets = [];
      return {};
    case "write":
      return write(cmd);
  }
}

process.on("message", (message: { id: number; cmd: Command }) => {
  run(message.cmd).then(
    (outcome) => process.send?.({ id: message.id, outcome }),
    (error: Error) => process.send?.({ id: message.id, error: error.stack ?? String(error) }),
  );
});
process.on("disconnect", () => process.exit(0));
