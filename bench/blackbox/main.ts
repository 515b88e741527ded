/**
 * The black-box benchmark (docs/bench.md): Kora started the way a user starts it, as its own
 * process (`SERVER_COMMAND`), on server PostgreSQL in a scratch schema, driven through its public
 * GraphQL API by separate client processes (bench/blackbox/worker.ts) over real sockets, beside the
 * raw side (plain `pg` from the same client processes, a plain `ws` broadcaster in its own
 * process) in the same run. CPU and RSS come from /proc.
 */
import { type ChildProcess, fork, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { encodePath, upperBound } from "../../core/store/encoding.ts";
import { commandOf, cpuMeter, machine, machineBusyMs, peakRss, processTree, usage } from "./proc.ts";
import type { Command, Outcome } from "./worker.ts";

/**
 * How Kora is started: what `npm start` runs today. Set KORA_BENCH_SERVER to measure another
 * build the same way, e.g. KORA_BENCH_SERVER="node dist/cli.js" (split on spaces).
 */
// The compiled CLI, as users run it (`npm run bench` builds it first).
export const SERVER_COMMAND = process.env.KORA_BENCH_SERVER ?? "node dist/server/cli.js";

/**
 * The bench's config: no rules file, and no rate limits (the bench drives thousands of operations
 * a second from one address, which the default per-address buckets would refuse).
 */
function benchConfig(): string {
  const dir = mkdtempSync(join(tmpdir(), "kora-bench-config-"));
  const file = join(dir, "kora.config.mjs");
  writeFileSync(file, "export default { rules: false, rateLimits: false };\n");
  return file;
}

export interface BlackBoxOptions {
  quick: boolean;
  /** Start a fresh server per Kora phase with `--cpu-prof` into bench/results/profiles/<phase>/; skips the raw side. */
  profile: boolean;
  /** Phases to run (default all): merges, seq, reads, fanout. */
  only: string[] | undefined;
  db: string;
}

export interface BlackBoxResult {
  markdown: string;
  rows: Row[];
}

interface Row {
  figure: string;
  raw: string;
  kora: string;
  ratio: string;
}

const fmt = (n: number, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
const auto = (n: number) => fmt(n, n < 1 ? 3 : n < 10 ? 2 : n < 100 ? 1 : 0);
const mib = (bytes: number) => fmt(bytes / 2 ** 20, 0);
const percentile = (xs: number[], p: number) => {
  if (xs.length === 0) return Number.NaN;
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
};

/** One forked client process and its command channel. */
class Worker {
  readonly child: ChildProcess;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (o: Outcome) => void; reject: (e: Error) => void }>();
  constructor(app: string) {
    this.child = fork(new URL("./worker.ts", import.meta.url), [], {
      execArgv: ["--import", "tsx"],
      serialization: "advanced",
      env: { ...process.env, KORA_BENCH_APP: app },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    this.child.on("message", (m: { id: number; outcome?: Outcome; error?: string }) => {
      const w = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      if (m.error) w?.reject(new Error(m.error));
      else w?.resolve(m.outcome as Outcome);
    });
    this.child.on("exit", (code) => {
      for (const w of this.waiting.values()) w.reject(new Error(`bench worker exited with ${code}`));
      this.waiting.clear();
    });
  }
  call(cmd: Command): Promise<Outcome> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.child.send({ id, cmd });
    });
  }
  get pid(): number {
    return this.child.pid as number;
  }
  stop(): void {
    if (this.child.exitCode === null) this.child.kill("SIGKILL");
  }
}

interface Server {
  /** performance.now() when the process was spawned. */
  spawnedAt: number;
  url: string;
  wsUrl: string;
  pid: number;
  startMs: number;
  pids(): number[];
  stop(): Promise<void>;
}

/** Starts a process in its own group and waits for `pattern` on its stdout (60 s at most). */
async function startProcess(command: string[], env: NodeJS.ProcessEnv, pattern: RegExp): Promise<{ child: ChildProcess; match: RegExpExecArray; ms: number }> {
  const t = performance.now();
  const child = spawn(command[0] as string, command.slice(1), { env, detached: true, stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout?.setEncoding("utf8");
  const match = await new Promise<RegExpExecArray>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${command.join(" ")} did not start within 60 s: ${out}`)), 60_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${command.join(" ")} exited with ${code}: ${out}`));
    });
    child.stdout?.on("data", (chunk: string) => {
      out += chunk;
      const m = pattern.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
  });
  return { child, match, ms: performance.now() - t };
}

/** Ends a process group started by startProcess: SIGTERM, then SIGKILL after 15 s. */
async function stopGroup(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  try {
    process.kill(-(child.pid as number), "SIGTERM");
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-(child.pid as number), "SIGKILL");
    } catch {}
  }, 15_000);
  await exited;
  clearTimeout(timer);
}

/**
 * The server command with `--cpu-prof` (Node refuses it in NODE_OPTIONS): `tsx X` becomes
 * `node --cpu-prof --import tsx X` (the same loader, in one process), `node X` gets the flags.
 */
function profiled(command: string[], dir: string): string[] {
  const flags = ["--cpu-prof", `--cpu-prof-dir=${dir}`];
  const [first = "", ...rest] = command;
  if (first.endsWith("tsx")) return [process.execPath, ...flags, "--import", "tsx", ...rest];
  if (first === "node" || first === process.execPath) return [first, ...flags, ...rest];
  throw new Error(`--profile needs a server command that starts with node or tsx, not ${first}`);
}

async function startKora(options: { db: string; schema: string; app: string; profileDir?: string }): Promise<Server> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: options.db,
    KORA_SCHEMA: options.schema,
    PORT: "0",
    HOST: "127.0.0.1",
    NODE_ENV: "production",
    LOG_LEVEL: "warn",
    PGAPPNAME: `${options.app}-server`,
  };
  let command = [...SERVER_COMMAND.split(" "), "--config", benchConfig()];
  if (options.profileDir) {
    mkdirSync(options.profileDir, { recursive: true });
    command = profiled(command, options.profileDir);
  }
  const spawnedAt = performance.now();
  const { child, match, ms } = await startProcess(command, env, /GraphiQL at (http:\/\/\S+)/);
  const url = match[1] as string;
  return {
    spawnedAt,
    url,
    wsUrl: url.replace(/^http/, "ws"),
    pid: child.pid as number,
    startMs: ms,
    pids: () => processTree(child.pid as number),
    stop: () => stopGroup(child),
  };
}

export async function runBlackBox(options: BlackBoxOptions): Promise<BlackBoxResult> {
  const { quick, profile, db } = options;
  const want = (phase: string) => !options.only || options.only.includes(phase);
  const SECONDS = quick ? 1.5 : 5;
  // Every timed phase follows the same load, untimed, on both sides: a server users run has its
  // hot paths compiled, and the first seconds of a fresh Node process run them in V8's lower
  // tiers (the first 5 s of merges measured 50-85% of the rate of the next 5 s).
  const WARMUP_SECONDS = quick ? 0.5 : 2;
  const WARMUP_WRITES = quick ? 20 : 100;
  const WATCHERS = quick ? 200 : 1000;
  const SATURATED = quick ? 50 : 200;
  const RATE_SECONDS = quick ? 3 : 6;
  const SEQ = quick ? 100 : 300;
  const CLIENT_PROCS = 4; // 16 clients = 4 processes x 4; 1,000 watchers = 4 x 250 sockets
  const app = `kora-bench-${process.pid}`;
  const schema = `kora_bb_${process.pid}`;
  const rawSchema = `${schema}_raw`;
  const rows: Row[] = [];
  const notes: string[] = [];
  const started = new Date();
  const startLoad = machine().load;
  const t0 = performance.now();

  const admin = new pg.Client({ connectionString: db, application_name: "kora-bench-orchestrator" });
  await admin.connect();
  const pgVersion = ((await admin.query("SHOW server_version")).rows[0] as { server_version: string }).server_version;
  await admin.query(`CREATE SCHEMA ${rawSchema}`);
  await admin.query(`CREATE TABLE ${rawSchema}.upsert (k text COLLATE "C" PRIMARY KEY, v jsonb NOT NULL)`);
  await admin.query(`CREATE TABLE ${rawSchema}.leaves (k text COLLATE "C" PRIMARY KEY, v jsonb NOT NULL)`);
  const backends = async (): Promise<number[]> =>
    (
      await admin.query("SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1 OR application_name = $2", [
        `${app}%`,
        `kora-listen:${schema}`.slice(0, 63),
      ])
    ).rows.map((r: { pid: number }) => r.pid);

  const workers = Array.from({ length: CLIENT_PROCS }, () => new Worker(app));
  const writer = new Worker(app);
  const workerPids = () => [...workers, writer].map((w) => w.pid);
  let kora: Server | undefined;
  let rawWs: { child: ChildProcess; port: number } | undefined;
  const profileRoot = new URL("../results/profiles/", import.meta.url).pathname;

  /** CPU of the server's processes and of all the bench's processes (clients, server, its PostgreSQL backends) over `fn`. */
  async function measured<T>(server: () => number[], fn: () => Promise<T>): Promise<{ result: T; serverMs: number; allMs: number; machineMs: number; wallMs: number }> {
    const all = async () => [...server(), ...workerPids(), ...(rawWs ? [rawWs.child.pid as number] : []), ...(await backends())];
    const allMeter = cpuMeter(await all());
    const serverMeter = cpuMeter(server());
    const machine0 = machineBusyMs();
    const t = performance.now();
    const result = await fn();
    const wallMs = performance.now() - t;
    const machineMs = machineBusyMs() - machine0;
    return { result, serverMs: serverMeter.stop(server()), allMs: allMeter.stop(await all()), machineMs, wallMs };
  }
  /**
   * Before each timed side of a phase: VACUUM (ANALYZE) every table of the run, so that no side
   * pays for the dead rows of the side before it (the 16 raw upserting connections leave
   * thousands; autovacuum then shared the 2 cores with the Kora phase that followed). No
   * CHECKPOINT: the first change to each page after one writes the whole page to the WAL, which
   * charged the side right after it more than the one before.
   */
  async function settle(): Promise<void> {
    const tables = await admin.query<{ t: string }>(
      "SELECT format('%I.%I', schemaname, tablename) AS t FROM pg_tables WHERE schemaname IN ($1, $2)",
      [schema, rawSchema],
    );
    if (tables.rows.length > 0) await admin.query(`VACUUM (ANALYZE) ${tables.rows.map((r) => r.t).join(", ")}`);
  }
  const sum = (outcomes: Outcome[], key: "count" | "errors") => outcomes.reduce((a, o) => a + (o[key] ?? 0), 0);
  const errorsOf = (outcomes: Outcome[]) => {
    const kinds: Record<string, number> = {};
    for (const o of outcomes) for (const [k, v] of Object.entries(o.errorKinds ?? {})) kinds[k] = (kinds[k] ?? 0) + v;
    return Object.entries(kinds)
      .map(([k, v]) => `${v} x ${k}`)
      .join(", ");
  };
  const row = (figure: string, raw: number | undefined, koraValue: number, lowerIsBetter = false, unit = "") => {
    rows.push({
      figure,
      raw: raw === undefined ? "-" : `${auto(raw)}${unit}`,
      kora: `${auto(koraValue)}${unit}`,
      ratio: raw === undefined || raw === 0 ? "-" : `${fmt(koraValue / raw, 2)}x${lowerIsBetter ? " (lower is better)" : ""}`,
    });
    console.log(`  ${figure}: raw ${raw === undefined ? "-" : auto(raw)}, Kora ${auto(koraValue)}`);
  };
  const profiling = new Map<Server, { dir: string; fromMs: number }>();
  const server = async (phase: string): Promise<Server> => {
    if (profile) {
      const dir = `${profileRoot}${phase}`;
      rmSync(dir, { recursive: true, force: true });
      const s = await startKora({ db, schema, app, profileDir: dir });
      // The profile covers start-up too (loading modules through tsx): bench/profile.ts keeps
      // only the phase's window, written beside the profile, measured from the spawn.
      await new Promise((r) => setTimeout(r, 1000));
      profiling.set(s, { dir, fromMs: performance.now() - s.spawnedAt });
      return s;
    }
    kora ??= await startKora({ db, schema, app });
    return kora;
  };
  /** A profile's window starts after the warm-up. */
  const warmed = (s: Server) => {
    const p = profiling.get(s);
    if (p) p.fromMs = performance.now() - s.spawnedAt;
  };
  const done = async (s: Server) => {
    const p = profiling.get(s);
    if (!p) return;
    writeFileSync(`${p.dir}/window.json`, JSON.stringify({ fromMs: p.fromMs, toMs: performance.now() - s.spawnedAt }));
    await s.stop();
  };

  try {
    // Start-up: RSS before any connection.
    if (!profile) {
      rawWs = await (async () => {
        const { child, match } = await startProcess([process.execPath, new URL("./raw-ws-server.mjs", import.meta.url).pathname], process.env, /listening (\d+)/);
        return { child, port: Number(match[1]) };
      })();
      const k = await server("start");
      // Let start-up work (migrations, JIT of the first requests is not here yet) settle: RSS is read once the process is idle.
      await new Promise((r) => setTimeout(r, 1000));
      const koraRss = usage(k.pids()).rssBytes;
      const rawRss = usage([rawWs.child.pid as number]).rssBytes;
      row("server RSS before any connection, MiB (Kora: the whole process tree)", rawRss / 2 ** 20, koraRss / 2 ** 20, true);
      const each = k.pids().map((p) => `${commandOf(p)} ${mib(usage([p]).rssBytes)} MiB`);
      notes.push(`Kora's process tree at start (\`${SERVER_COMMAND}\`, ready in ${fmt(k.startMs)} ms): ${each.join("; ")}.`);
    }

    // 1. Merges from 16 clients: graphql-ws, HTTP; raw: 16 pg connections upserting.
    if (want("merges")) {
      console.log("merges (16 clients)");
      let rawRate: number | undefined;
      let rawCpu: number | undefined;
      if (!profile) {
        const upserts = (seconds: number) => Promise.all(workers.map((w, i) => w.call({ op: "pgUpserts", db, table: `${rawSchema}.upsert`, connections: 4, seconds, tag: `w${i}` })));
        await settle();
        await upserts(WARMUP_SECONDS);
        const m = await measured(() => [], () => upserts(SECONDS));
        rawRate = sum(m.result, "count") / SECONDS;
        rawCpu = m.allMs / sum(m.result, "count");
      }
      const mergeLoad = (k: Server, transport: "ws" | "http", seconds: number) =>
        Promise.all(
          workers.map((w, i) =>
            w.call(
              transport === "ws"
                ? { op: "wsMerges", url: k.wsUrl, clients: 4, seconds, tag: `${transport}${i}` }
                : { op: "httpMerges", url: k.url, clients: 4, seconds, tag: `${transport}${i}` },
            ),
          ),
        );
      // The server's shared write path (resolver, gateway, store) gets load over the other
      // transport first, so that neither transport is timed on code colder than the other's
      // (graphql-ws, timed first, had 2 s of load behind it and HTTP 9 s). It made no
      // difference that stood out of the noise: graphql-ws still costs the server more per
      // merge than the HTTP fast path (docs/bench.md).
      if (!profile) {
        const first = await server("merges");
        await mergeLoad(first, "http", WARMUP_SECONDS);
      }
      for (const transport of ["ws", "http"] as const) {
        const k = await server(`merges-${transport}`);
        const merges = (seconds: number) => mergeLoad(k, transport, seconds);
        await settle();
        await merges(WARMUP_SECONDS);
        warmed(k);
        const m = await measured(k.pids, () => merges(SECONDS));
        await done(k);
        const count = sum(m.result, "count");
        const label = transport === "ws" ? "graphql-ws" : "HTTP";
        row(`merges/s, 16 clients over ${label} (raw: 16 pg connections, single-row upserts)`, rawRate, count / SECONDS);
        row(`CPU per merge over ${label}, ms, all bench processes (raw: per upsert)`, rawCpu, m.allMs / count, true);
        row(`CPU per merge over ${label}, ms, Kora's server process alone`, undefined, m.serverMs / count);
        if (sum(m.result, "errors") > 0) notes.push(`merges over ${label}: ${errorsOf(m.result)}`);
      }
    }

    // 2. Sequential write latency: one client, one write at a time.
    if (want("seq") && !profile) {
      console.log("sequential writes");
      const k = await server("seq");
      const pgSeq = (count: number) => workers[0]!.call({ op: "seq", transport: "pg", target: db, table: `${rawSchema}.upsert`, count });
      await settle();
      await pgSeq(WARMUP_WRITES);
      const rawSeq = await pgSeq(SEQ);
      for (const transport of ["ws", "http"] as const) {
        const seq = (count: number) => workers[0]!.call({ op: "seq", transport, target: transport === "ws" ? k.wsUrl : k.url, count });
        await settle();
        await seq(WARMUP_WRITES);
        const o = await seq(SEQ);
        const label = transport === "ws" ? "graphql-ws" : "HTTP";
        row(`sequential write p50, ms, over ${label} (raw: one pg upsert)`, percentile(rawSeq.latencies ?? [], 50), percentile(o.latencies ?? [], 50), true);
        row(`sequential write p99, ms, over ${label}`, percentile(rawSeq.latencies ?? [], 99), percentile(o.latencies ?? [], 99), true);
      }
    }

    // 3. Reads of a 1,000-leaf path at 1 and 16 concurrent; raw: range reads of 1,000 rows.
    if (want("reads")) {
      console.log("reads");
      await settle();
      const k = await server("reads");
      const leaves: Record<string, number> = {};
      for (let i = 0; i < 1000; i++) leaves[`leaf${String(i).padStart(4, "0")}`] = i;
      const seed = await fetch(k.url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query: `mutation($v: JSON!) { merge(path: ["read", "sub"], value: $v) { version } }`, variables: { v: leaves } }),
      });
      if (!seed.ok) throw new Error(`seeding the read subtree failed: HTTP ${seed.status}`);
      const lo = encodePath(["read", "sub"]);
      await admin.query(`INSERT INTO ${rawSchema}.leaves SELECT $1 || lpad(i::text, 4, '0'), to_jsonb(i) FROM generate_series(0, 999) i`, [lo]);
      for (const concurrency of [1, 16]) {
        const procs = concurrency === 1 ? [workers[0]!] : workers;
        const per = concurrency === 1 ? 1 : concurrency / workers.length;
        let raw: number | undefined;
        if (!profile) {
          const pgReads = (seconds: number) => Promise.all(procs.map((w) => w.call({ op: "pgReads", db, table: `${rawSchema}.leaves`, concurrency: per, seconds, lo, hi: upperBound(lo) })));
          await pgReads(WARMUP_SECONDS);
          raw = sum(await pgReads(SECONDS), "count") / SECONDS;
        }
        const reads = (seconds: number) => Promise.all(procs.map((w) => w.call({ op: "reads", url: k.url, concurrency: per, seconds, path: ["read", "sub"] })));
        await reads(WARMUP_SECONDS);
        if (concurrency === 1) warmed(k);
        const m = await measured(k.pids, () => reads(SECONDS));
        const count = sum(m.result, "count");
        row(`1,000-leaf \`path\` reads/s, ${concurrency === 1 ? "1 client" : "16 concurrent"} (raw: pg range read of 1,000 rows)`, raw, count / SECONDS);
        if (concurrency === 16) rows.push({ figure: "CPU per 1,000-leaf read, ms, Kora's server process alone", raw: "-", kora: auto(m.serverMs / count), ratio: "-" });
        if (sum(m.result, "errors") > 0) notes.push(`reads at ${concurrency}: ${errorsOf(m.result)}`);
      }
      await done(k);
    }

    // 4. Fan-out: 1,000 watchers of ["fan"] on 1,000 sockets; one writer process.
    if (want("fanout")) {
      const runFanout = async (kind: "kora" | "raw", watchUrl: string, writeUrl: string, serverPids: () => number[]) => {
        console.log(`fan-out (${kind}), ${WATCHERS} watchers`);
        await settle();
        const per = WATCHERS / workers.length;
        const ready = await Promise.all(workers.map((w) => w.call({ op: "watch", kind, url: watchUrl, sockets: per })));
        if (sum(ready.map((r) => ({ count: r.ready })), "count") !== WATCHERS) throw new Error("not every watcher connected");
        const rssWith = usage(serverPids()).rssBytes;
        const drain = (expectPer: number) => Promise.all(workers.map((w) => w.call({ op: "collect", expect: expectPer, timeoutMs: 60_000 })));
        // Warm-up: the same saturated writes, delivered and collected (then dropped) untimed.
        await writer.call({ op: "write", kind, url: writeUrl, mode: "saturated", count: WARMUP_WRITES });
        await drain(WARMUP_WRITES * per);
        // Saturated: the writer sends SATURATED changes one after another, as fast as they are acknowledged.
        const sat = await measured(serverPids, async () => {
          const w = await writer.call({ op: "write", kind, url: writeUrl, mode: "saturated", count: SATURATED });
          return { w, got: await drain(SATURATED * per) };
        });
        const delivered = sat.result.got.reduce((a, o) => a + (o.deliveries ?? 0), 0);
        const last = Math.max(...sat.result.got.map((o) => o.lastReceipt ?? 0));
        const rate = (delivered / (last - (sat.result.w.firstSend ?? last))) * 1000;
        const resyncs = sat.result.got.reduce((a, o) => a + (o.snapshots ?? 0), 0);
        const out = { rssWith, rate, delivered, cpuServer: sat.serverMs / delivered, cpuAll: sat.allMs / delivered, failed: sat.result.w.errors ?? 0, resyncs, fixed: [] as { rate: number; p50: number; p99: number; failed: number; kinds: string; delivered: number; expected: number }[] };
        for (const perSecond of [5, 20]) {
          const count = perSecond * RATE_SECONDS;
          const w = await writer.call({ op: "write", kind, url: writeUrl, mode: "rate", rate: perSecond, count });
          const got = await drain(count * per);
          const lat = got.flatMap((o) => o.latencies ?? []);
          out.fixed.push({ rate: perSecond, p50: percentile(lat, 50), p99: percentile(lat, 99), failed: w.errors ?? 0, kinds: errorsOf([w]), delivered: lat.length, expected: count * WATCHERS });
        }
        await Promise.all(workers.map((w) => w.call({ op: "unwatch" })));
        return out;
      };
      let raw: Awaited<ReturnType<typeof runFanout>> | undefined;
      if (!profile && rawWs) {
        const url = `ws://127.0.0.1:${rawWs.port}`;
        raw = await runFanout("raw", `${url}/`, `${url}/writer`, () => [rawWs?.child.pid as number]);
      }
      const k = await server("fanout");
      const kf = await runFanout("kora", k.wsUrl, k.url, k.pids);
      const peak = k.pids().reduce((a, p) => a + peakRss(p), 0);
      await done(k);
      row(`fan-out deliveries/s to ${fmt(WATCHERS)} watchers on ${fmt(WATCHERS)} sockets, saturated (${SATURATED} sequential writes over HTTP; raw: a plain ws broadcast)`, raw?.rate, kf.rate);
      row("CPU per delivery, us, all bench processes", raw ? raw.cpuAll * 1000 : undefined, kf.cpuAll * 1000, true);
      row("CPU per delivery, us, the server process alone", raw ? raw.cpuServer * 1000 : undefined, kf.cpuServer * 1000, true);
      for (const [i, f] of kf.fixed.entries()) {
        const r = raw?.fixed[i];
        row(`fan-out p50, ms, ${f.rate} changes/s x ${fmt(WATCHERS)} watchers (writer's send to watcher's receipt)`, r?.p50, f.p50, true);
        row(`fan-out p99, ms, ${f.rate} changes/s x ${fmt(WATCHERS)} watchers`, r?.p99, f.p99, true);
        rows.push({ figure: `failed writes at ${f.rate} changes/s (of ${f.rate * RATE_SECONDS})`, raw: r ? String(r.failed) : "-", kora: String(f.failed), ratio: "-" });
        if (f.failed > 0) notes.push(`fan-out at ${f.rate}/s: failed writes: ${f.kinds}`);
        if (f.delivered !== f.expected) notes.push(`fan-out at ${f.rate}/s: ${f.delivered} of ${f.expected} deliveries arrived (resyncs or a 60 s drain timeout)`);
      }
      if (kf.failed > 0) notes.push(`saturated fan-out: ${kf.failed} failed writes`);
      if (kf.resyncs > 0) notes.push(`saturated fan-out: ${kf.resyncs} watcher resyncs (buffer overflow snapshots)`);
      row(`server RSS with ${fmt(WATCHERS)} watchers connected, MiB`, raw ? raw.rssWith / 2 ** 20 : undefined, kf.rssWith / 2 ** 20, true);
      if (!profile) rows.push({ figure: "server peak RSS over the run, MiB (VmHWM)", raw: raw ? mib(peakRss(rawWs?.child.pid as number)) : "-", kora: mib(peak), ratio: "-" });
    }
  } finally {
    for (const w of [...workers, writer]) w.stop();
    await kora?.stop();
    if (rawWs) await stopGroup(rawWs.child);
    await admin.query(`DROP SCHEMA IF EXISTS ${rawSchema} CASCADE`);
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  }

  const m = machine();
  const header = [
    `Run ${started.toISOString()}, ${fmt((performance.now() - t0) / 1000)} s, on ${m.cpu} (${m.cores} cores), Node ${process.version}, PostgreSQL ${pgVersion}${quick ? " (quick run)" : ""}${profile ? " (profile run: raw side skipped)" : ""}.`,
    `Load average (1/5/15 min) at start: ${startLoad}; at end: ${m.load}.${Number(startLoad.split(" ")[0]) > m.cores / 2 ? ` **The machine was busy before the run started (1-min load above ${m.cores / 2}): other work shared its ${m.cores} cores, so treat every figure as noisy.**` : ""}`,
    `Kora: \`${SERVER_COMMAND}\` with NODE_ENV=production on server PostgreSQL (scratch schema ${schema}, dropped at the end); clients in ${workers.length + 1} separate processes over loopback sockets.`,
  ].join("\n");
  const table = ["| figure | raw | Kora | Kora / raw |", "|---|---|---|---|", ...rows.map((r) => `| ${r.figure} | ${r.raw} | ${r.kora} | ${r.ratio} |`)].join("\n");
  const markdown = `${header}\n\n${table}\n${notes.length ? `\n${notes.map((n) => `- ${n}`).join("\n")}\n` : ""}`;
  return { markdown, rows };
}
