/**
 * Cold-start figures of `kora serve` (the compiled dist/server/cli.js, as users run it), each the
 * median of a few runs, from process spawn to:
 * - embedded: the first answered query, on an existing PGlite data folder (target < 2 s);
 * - postgres: the first answered query, on server PostgreSQL (DATABASE_URL; target < 1 s);
 * - config error: the exit of a start whose rules file is broken (target < 1 s).
 * `tsx bench/coldstart.ts` prints them; `measureColdStart()` returns them for bench/run.ts.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist", "server", "cli.js");

export interface ColdStart {
  /** Milliseconds; undefined when not measured (no DATABASE_URL). */
  embeddedMs: number;
  postgresMs: number | undefined;
  configErrorMs: number;
}

/** Spawns `kora serve`; resolves the ms to its first answered query (or to its exit, if `expectExit`). */
function once(env: Record<string, string>, cwd: string, expectExit: boolean): Promise<number> {
  const start = performance.now();
  const child = spawn(process.execPath, [CLI, "serve"], {
    cwd,
    env: { ...process.env, PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "fatal", ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true, // its own process group, ended as a whole below
  });
  return new Promise<number>((resolve, reject) => {
    const deadline = setTimeout(() => {
      kill();
      reject(new Error("kora serve did not answer within 60 s"));
    }, 60_000);
    const kill = () => {
      try {
        if (child.pid) process.kill(-child.pid, "SIGKILL");
      } catch {}
    };
    child.on("exit", (code) => {
      if (!expectExit) return;
      clearTimeout(deadline);
      if (code === 0) reject(new Error("kora serve exited 0 with a broken rules file"));
      else resolve(performance.now() - start);
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", async (chunk: string) => {
      out += chunk;
      const url = /GraphiQL at (http:\/\/\S+?\/graphql)/.exec(out)?.[1];
      if (!url || expectExit) return;
      out = "";
      try {
        const res = await fetch(url.replace("localhost", "127.0.0.1"), {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ query: "{ path(path: []) }" }),
        });
        await res.json();
        const ms = performance.now() - start;
        clearTimeout(deadline);
        kill();
        resolve(ms);
      } catch (error) {
        clearTimeout(deadline);
        kill();
        reject(error);
      }
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

export async function measureColdStart(runs = 3): Promise<ColdStart> {
  const dir = mkdtempSync(join(tmpdir(), "kora-coldstart-"));
  try {
    // A folder with no config, so each start loads only what `kora serve` needs.
    const dataDir = join(dir, "data");
    await once({ KORA_DATA_DIR: dataDir, DATABASE_URL: "" }, dir, false); // creates the data folder
    const embedded: number[] = [];
    for (let i = 0; i < runs; i++) embedded.push(await once({ KORA_DATA_DIR: dataDir, DATABASE_URL: "" }, dir, false));
    let postgres: number[] | undefined;
    if (process.env.DATABASE_URL) {
      postgres = [];
      await once({ KORA_SCHEMA: "kora_coldstart" }, dir, false); // migrations once
      for (let i = 0; i < runs; i++) postgres.push(await once({ KORA_SCHEMA: "kora_coldstart" }, dir, false));
      // Leave nothing behind in the database.
      const { default: pg } = await import("pg");
      const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
      client.on("error", () => {});
      await client.connect();
      await client.query("DROP SCHEMA IF EXISTS kora_coldstart CASCADE").finally(() => client.end());
    }
    const bad = join(dir, "bad");
    rmSync(bad, { recursive: true, force: true });
    writeFileSync(join(dir, "kora.rules.yaml"), 'rules:\n  "todos/$uid":\n    read: auth.sub ==\n');
    const errors: number[] = [];
    for (let i = 0; i < runs; i++) errors.push(await once({ KORA_DATA_DIR: dataDir, DATABASE_URL: "" }, dir, true));
    return { embeddedMs: median(embedded), postgresMs: postgres && median(postgres), configErrorMs: median(errors) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const r = await measureColdStart();
  console.log(`kora serve, first query on an existing embedded data folder: ${Math.round(r.embeddedMs)} ms (target < 2000)`);
  console.log(`kora serve, first query on server PostgreSQL: ${r.postgresMs === undefined ? "not measured (DATABASE_URL unset)" : `${Math.round(r.postgresMs)} ms (target < 1000)`}`);
  console.log(`kora serve with a broken rules file, exit: ${Math.round(r.configErrorMs)} ms (target < 1000)`);
}
