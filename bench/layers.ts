/**
 * Writes below GraphQL: the same 16 concurrent writers and sequential writes as the black box,
 * driven straight at `gateway.commit` (deadline, clock, watch hub, group commit) and at
 * `store.commit`, beside plain `pg` upserts, in this one process. It splits the CPU of a write
 * between this process and PostgreSQL's backends (`/proc/<pid>/stat` of every client backend of
 * the database), which the black box cannot: its server and its backends share the 2 cores
 * with the bench's clients. docs/bench.md ("Writes: where the time goes") quotes it.
 *
 *   npx tsx bench/layers.ts [DATABASE_URL]     # ~25 s; a scratch schema, dropped at the end
 */
import { readFileSync } from "node:fs";
import pg from "pg";
import { createGateway, silentLogger } from "../core/gateway.ts";
import { createPostgresStore } from "../core/store/postgres.ts";
import { mutationFromInput } from "../core/tree.ts";

const url =
  process.argv[2] ?? process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const database = new URL(url).pathname.slice(1);
const schema = `kora_layers_${process.pid}`;
const PHASE_MS = 5000;
const SEQUENTIAL = 400;

/** CPU ticks (user + system) of a process; 0 once it is gone. */
function ticks(pid: number): number {
  try {
    const fields = (readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1] ?? "").split(" ");
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}
const TICK_MS = 10; // USER_HZ is 100 on Linux

const admin = new pg.Client({ connectionString: url, application_name: "kora-layers-admin" });
await admin.connect();
const store = await createPostgresStore({ url, schema, poolSize: 10 });
const gateway = await createGateway({ store, log: silentLogger, retention: { intervalMs: 0 } });
const raw = new pg.Pool({ connectionString: url, max: 16 });
try {
  await raw.query(`CREATE TABLE ${schema}.raw_upserts (k text PRIMARY KEY, v jsonb)`);
  await Promise.all(Array.from({ length: 16 }, () => raw.query("SELECT 1"))); // 16 connections open
  const upsert = (k: string, n: number) =>
    raw.query(
      `INSERT INTO ${schema}.raw_upserts (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v`,
      [k, JSON.stringify(n)],
    );

  const backends = async (): Promise<number[]> =>
    (
      await admin.query<{ pid: number }>(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
        [database],
      )
    ).rows.map((r) => r.pid);

  async function concurrent(name: string, op: (writer: number, n: number) => Promise<unknown>) {
    const pids = await backends();
    const before = pids.map(ticks);
    const cpu = process.cpuUsage();
    const start = performance.now();
    let done = 0;
    await Promise.all(
      Array.from({ length: 16 }, async (_, w) => {
        for (let n = 0; n < 1_000_000 && performance.now() - start < PHASE_MS; n++) {
          await op(w, n);
          done++;
        }
      }),
    );
    const seconds = (performance.now() - start) / 1000;
    const own = process.cpuUsage(cpu);
    const theirs =
      pids.reduce((sum, pid, i) => sum + Math.max(0, ticks(pid) - (before[i] ?? 0)), 0) * TICK_MS;
    console.log(
      `| ${name} | ${Math.round(done / seconds).toLocaleString("en")} | ${((own.user + own.system) / 1000 / done).toFixed(3)} | ${(theirs / done).toFixed(3)} |`,
    );
  }

  async function sequential(name: string, op: (n: number) => Promise<unknown>) {
    const times: number[] = [];
    for (let n = 0; n < SEQUENTIAL; n++) {
      const t = performance.now();
      await op(n);
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    const at = (q: number) => (times[Math.floor(q * (times.length - 1))] ?? 0).toFixed(3);
    console.log(`| ${name} | ${at(0.5)} | ${at(0.99)} |`);
  }

  const merge = (path: string[], n: number) => {
    const tree: Record<string, unknown> = {};
    let node = tree;
    for (const key of path.slice(0, -1)) node = node[key] = {} as Record<string, unknown>;
    node[path[path.length - 1] as string] = n;
    return mutationFromInput({ merge: tree });
  };

  console.log(`${new Date().toISOString()}, ${url.replace(/\/\/[^@]*@/, "//")}\n`);
  console.log(
    "| 16 concurrent writers, 5 s | writes/s | this process, ms CPU per write | PostgreSQL backends, ms CPU per write |",
  );
  console.log("|---|---|---|---|");
  await concurrent("raw `pg` upsert", (w, n) => upsert(`${w}:${n % 1000}`, n));
  await concurrent("`store.commit`", (w, n) =>
    store.commit(async () => merge(["bench", `c${w}`, `k${n % 1000}`], n)),
  );
  await concurrent("`gateway.commit`", (w, n) =>
    gateway.commit(merge(["bench", `c${w}`, `k${n % 1000}`], n)),
  );
  console.log("\n| one writer, 400 writes in a row | p50, ms | p99, ms |");
  console.log("|---|---|---|");
  await sequential("raw `pg` upsert", (n) => upsert(`s:${n % 1000}`, n));
  await sequential("`store.commit`", (n) =>
    store.commit(async () => merge(["seq", `k${n % 1000}`], n)),
  );
  await sequential("`gateway.commit`", (n) => gateway.commit(merge(["seq", `k${n % 1000}`], n)));
} finally {
  await gateway.close();
  await raw.end();
  await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await admin.end();
}
