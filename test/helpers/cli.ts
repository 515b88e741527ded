/**
 * Runs the compiled `kora` command (dist/server/cli.js, what users run) to its exit. The build
 * is what `npm install` and `npm start` produce; a stale one would test old code, so suites that
 * use this call `ensureBuilt()` first, which rebuilds when a source file is newer.
 */
import { spawn, spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

export const CLI = "dist/server/cli.js";

function newest(dir: string): number {
  let t = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) t = Math.max(t, newest(p));
    else if (entry.name.endsWith(".ts")) t = Math.max(t, statSync(p).mtimeMs);
  }
  return t;
}

let built = false;
/** Rebuilds dist/ (tsc) when any server, core or interceptor source is newer than the CLI. */
export function ensureBuilt(): void {
  if (built) return;
  let cli = 0;
  try {
    cli = statSync(CLI).mtimeMs;
  } catch {}
  const sources = Math.max(...["server", "core", "interceptors", "resolvers", "schema"].map(newest));
  if (sources > cli) {
    const r = spawnSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], { stdio: "inherit" });
    if (r.status !== 0) throw new Error("npm run build failed");
  }
  built = true;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `kora ARGS` with `env` added; stdin from `input` when given. Resolves at exit. */
export function kora(args: string[], env: Record<string, string | undefined>, input?: string): Promise<CliResult> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, LOG_LEVEL: "fatal", ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => {
    stdout += c;
  });
  child.stderr.setEncoding("utf8").on("data", (c: string) => {
    stderr += c;
  });
  child.stdin.end(input ?? "");
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
}
