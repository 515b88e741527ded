/**
 * Runs the compiled `kora` command (dist/server/cli.js, what users run) to its exit. The build
 * is what `npm install` and `npm start` produce; a stale one would test old code, so suites that
 * use this call `ensureBuilt()` first, which rebuilds when a source file is newer.
 */
import { spawn, spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

export const CLI = "dist/server/cli.js";

function newest(dir: string, ends: readonly string[] = [".ts"]): number {
  let t = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) t = Math.max(t, newest(p, ends));
    else if (ends.some((e) => entry.name.endsWith(e))) t = Math.max(t, statSync(p).mtimeMs);
  }
  return t;
}

const mtime = (file: string): number => {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return 0;
  }
};

let built = false;
let consoleBuilt = false;
/**
 * Rebuilds dist/ (tsc) when any server, core or interceptor source is newer than the CLI; with
 * `console`, also the console's bundle (Vite) when a console source is newer than it: the
 * console suite serves dist/console, and a stale bundle would test the old console. (Only that
 * suite asks, so that two suites never rebuild the bundle at once.)
 */
export function ensureBuilt(options: { console?: boolean } = {}): void {
  if (options.console && !consoleBuilt) {
    const consoleSources = newest("console", [".ts", ".css", ".html"]);
    if (consoleSources > mtime("dist/console/index.html")) {
      const r = spawnSync(process.execPath, ["node_modules/vite/bin/vite.js", "build", "--config", "console/vite.config.ts"], { stdio: "inherit" });
      if (r.status !== 0) throw new Error("building the console (vite build) failed");
    }
    consoleBuilt = true;
  }
  if (built) return;
  const sources = Math.max(...["server", "core", "interceptors", "resolvers", "schema"].map((d) => newest(d)));
  if (sources > mtime(CLI)) {
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
