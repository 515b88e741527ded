/**
 * A scratch PostgreSQL cluster of the fault suite's own: `initdb` into a temp folder, a free port
 * on 127.0.0.1, `pg_ctl` (as user postgres when run as root). It is restarted, stopped and frozen
 * by the tests and always stopped by its own pid at the end; nothing else on the machine is
 * touched.
 */
import { execFile, execFileSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";

export interface ScratchCluster {
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** Runs pg_ctl with these arguments (e.g. ["restart", "-m", "fast"]), waiting for it. */
  ctl(args: string[]): Promise<void>;
  /** The postmaster's pid (undefined while stopped). */
  postmasterPid(): number | undefined;
  /** Pids of the postmaster's children (backends and auxiliary processes). */
  childPids(): number[];
  /** SIGSTOP (true) or SIGCONT (false) to the given pids. */
  signal(pids: number[], stop: boolean): void;
  /** One query on a fresh connection (for the tests' own checks). */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  stop(): Promise<void>;
}

/** The folder with initdb and pg_ctl: pg_config's, else Debian's newest. */
export function postgresBinDir(): string | undefined {
  try {
    const dir = execFileSync("pg_config", ["--bindir"], { encoding: "utf8" }).trim();
    if (existsSync(join(dir, "initdb"))) return dir;
  } catch {}
  const base = "/usr/lib/postgresql";
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base).sort((a, b) => Number(b) - Number(a));
  for (const v of versions) if (existsSync(join(base, v, "bin", "initdb"))) return join(base, v, "bin");
  return undefined;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

const asRoot = process.getuid?.() === 0;

/** Runs a PostgreSQL tool as the postgres user when we are root (the server refuses root). */
function run(bin: string, args: string[], timeoutMs = 60_000): Promise<string> {
  const [file, argv] = asRoot ? ["runuser", ["-u", "postgres", "--", bin, ...args]] : [bin, args];
  return new Promise((resolve, reject) => {
    execFile(file, argv, { timeout: timeoutMs, encoding: "utf8" }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${bin} ${args.join(" ")} failed: ${error.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

export async function startScratchCluster(): Promise<ScratchCluster> {
  const bin = postgresBinDir();
  if (!bin) throw new Error("no PostgreSQL binaries (initdb, pg_ctl) found");
  const root = mkdtempSync(join(tmpdir(), "kora-fault-pg-"));
  if (asRoot) chownSync(root, uidOf("postgres"), gidOf("postgres"));
  const dataDir = join(root, "data");
  const port = await freePort();
  await run(join(bin, "initdb"), ["-D", dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
  const opts = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${root} -c fsync=off -c max_connections=100`;
  const ctl = (args: string[]) => run(join(bin, "pg_ctl"), ["-D", dataDir, "-l", join(root, "log"), "-o", opts, "-w", "-t", "60", ...args]).then(() => {});
  await ctl(["start"]);
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;

  const postmasterPid = (): number | undefined => {
    try {
      const pid = Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  };
  const childPids = (): number[] => {
    const parent = postmasterPid();
    if (parent === undefined) return [];
    const out: number[] = [];
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after ")".
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        if (ppid === parent) out.push(Number(entry));
      } catch {}
    }
    return out;
  };
  const frozen = new Set<number>();
  const signal = (pids: number[], stop: boolean) => {
    for (const pid of pids) {
      try {
        process.kill(pid, stop ? "SIGSTOP" : "SIGCONT");
        if (stop) frozen.add(pid);
        else frozen.delete(pid);
      } catch {}
    }
  };

  return {
    url,
    port,
    dataDir,
    ctl,
    postmasterPid,
    childPids,
    signal,
    async query<T>(sql: string, params?: unknown[]) {
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
      client.on("error", () => {});
      await client.connect();
      try {
        return (await client.query(sql, params)).rows as T[];
      } finally {
        await client.end().catch(() => {});
      }
    },
    async stop() {
      signal([...frozen], false);
      const pid = postmasterPid();
      await ctl(["stop", "-m", "immediate"]).catch(() => {
        if (pid !== undefined) {
          try {
            process.kill(pid, "SIGKILL");
          } catch {}
        }
      });
      rmSync(root, { recursive: true, force: true });
    },
  };
}

function uidOf(user: string): number {
  return Number(execFileSync("id", ["-u", user], { encoding: "utf8" }).trim());
}
function gidOf(user: string): number {
  return Number(execFileSync("id", ["-g", user], { encoding: "utf8" }).trim());
}
