/**
 * The data commands of `kora` (docs/cli.md): export, import, backup, restore and the rules
 * simulator. Each opens the store the environment names, does one thing, reports on stderr and
 * exits non-zero with a message naming the file, path and reason when something is wrong.
 */
import { createReadStream, createWriteStream, existsSync, renameSync, rmSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import type { Writable } from "node:stream";
import { finished } from "node:stream/promises";
import { type Gateway, silentLogger } from "../core/gateway.ts";
import { KoraError } from "../core/errors.ts";
import type { Store } from "../core/store.ts";
import { openStore } from "../core/store/open.ts";
import { validatePath } from "../core/tree.ts";
import { DEFAULT_LIMITS, type Limits, type Path } from "../core/types.ts";
import { createProgress } from "./progress.ts";
import type { EnvSettings } from "./settings.ts";
import { type SimulationRequest, type Verdict, describeVerdict, simulate } from "./simulate.ts";
import { backupStore, checkTreeFile, exportTree, importTree, restoreStore } from "./treefile.ts";

/** A failure to report in plain words: printed as `kora: message`, exit code `exitCode`. */
class CommandError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

function fail(error: unknown): never {
  const message = error instanceof Error ? error.message : String(error);
  console.error(`kora: ${message}`);
  process.exit(error instanceof CommandError ? error.exitCode : 1);
}

function limitsOf(env: EnvSettings): Limits {
  return { ...DEFAULT_LIMITS, ...env.limits };
}

/** A path argument: a JSON array of keys, checked as a request's path would be. */
export function parsePathArgument(text: string, what: string, limits: Limits = DEFAULT_LIMITS): Path {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new CommandError(`${what} ${JSON.stringify(text)} is not JSON; write a path as a JSON array of keys, e.g. '["user:info","dax"]' ([] is the root)`);
  }
  try {
    return validatePath(value, limits);
  } catch (error) {
    throw new CommandError(`${what}: ${(error as Error).message}`);
  }
}

function parseJsonArgument(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new CommandError(`${what} ${JSON.stringify(text.slice(0, 80))} is not JSON: ${(error as Error).message}`);
  }
}

/** Opens the store; for PGlite, reading commands refuse a data folder that does not exist. */
async function withStore<T>(env: EnvSettings, mustExist: boolean, fn: (store: Store) => Promise<T>): Promise<T> {
  if (!env.databaseUrl && mustExist && !existsSync(env.dataDir)) {
    throw new CommandError(`there is no data folder at ${resolve(env.dataDir)} (KORA_DATA_DIR); set DATABASE_URL for a PostgreSQL server`);
  }
  const store = await openStore({ databaseUrl: env.databaseUrl, dataDir: env.dataDir, schema: env.schema });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** Writes to `file` through a temporary name, renamed once complete: no half-written output. */
async function toFileOrStdout<T>(file: string | undefined, fn: (out: Writable) => Promise<T>): Promise<T> {
  if (file === undefined) return fn(process.stdout);
  const partial = `${file}.partial`;
  const out = createWriteStream(partial);
  try {
    const result = await fn(out);
    out.end();
    await finished(out);
    renameSync(partial, file);
    return result;
  } catch (error) {
    out.destroy();
    rmSync(partial, { force: true });
    throw error;
  }
}

function input(file: string): { stream: AsyncIterable<Uint8Array>; bytes: number | undefined; name: string } {
  if (file === "-") return { stream: process.stdin, bytes: undefined, name: "stdin" };
  let bytes: number;
  try {
    const stat = statSync(file);
    if (!stat.isFile()) throw new CommandError(`${file} is not a file`);
    bytes = stat.size;
  } catch (error) {
    if (error instanceof CommandError) throw error;
    throw new CommandError(`cannot read ${file}: ${(error as Error).message}`);
  }
  return { stream: createReadStream(file, { highWaterMark: 256 * 1024 }), bytes, name: file };
}

const count = (n: number) => n.toLocaleString("en-US");

export async function exportCommand(env: EnvSettings, pathText: string, options: { out?: string; quiet?: boolean }): Promise<void> {
  try {
    const path = parsePathArgument(pathText, "the export path", limitsOf(env));
    const progress = await createProgress("export", { quiet: options.quiet === true });
    const result = await withStore(env, true, (store) => toFileOrStdout(options.out, (out) => exportTree(store, path, out, progress)));
    if (!options.quiet) console.error(`exported ${count(result.leaves)} leaves at ${JSON.stringify(path)} as of version ${result.version}`);
  } catch (error) {
    fail(error);
  }
}

export async function importCommand(env: EnvSettings, file: string, options: { at: string; dryRun?: boolean; quiet?: boolean }): Promise<void> {
  try {
    const limits = limitsOf(env);
    const at = parsePathArgument(options.at, "--at", limits);
    const source = input(file);
    const progress = await createProgress(options.dryRun ? "check" : "import", { quiet: options.quiet === true });
    const common = { at, limits, source: source.name, progress, ...(source.bytes !== undefined ? { totalBytes: source.bytes } : {}) };
    if (options.dryRun) {
      const { leaves } = await checkTreeFile(source.stream, common);
      console.error(`${source.name} is a valid import at ${JSON.stringify(at)} (${count(leaves)} leaves); nothing was written (--dry-run)`);
      return;
    }
    const result = await withStore(env, false, (store) => importTree(store, source.stream, common));
    if (result.count === 0) console.error(`${source.name} holds no leaves: nothing was written`);
    else console.error(`imported ${source.name} at ${JSON.stringify(at)}: versions ${result.first}-${result.last} (${count(result.count)} mutations, one transaction)`);
  } catch (error) {
    fail(error instanceof KoraError ? new CommandError(`${error.message}\nnothing was written`) : error);
  }
}

export async function backupCommand(env: EnvSettings, options: { out?: string; quiet?: boolean }): Promise<void> {
  try {
    const progress = await createProgress("backup", { quiet: options.quiet === true });
    const result = await withStore(env, true, (store) => toFileOrStdout(options.out, (out) => backupStore(store, out, progress)));
    if (!options.quiet) console.error(`backup at version ${result.version}: ${count(result.leaves)} leaves, ${count(result.tombstones)} tombstones`);
  } catch (error) {
    fail(error);
  }
}

export async function restoreCommand(env: EnvSettings, file: string, options: { quiet?: boolean }): Promise<void> {
  try {
    const source = input(file);
    const progress = await createProgress("restore", { quiet: options.quiet === true });
    const result = await withStore(env, false, (store) =>
      restoreStore(store, source.stream, { source: source.name, progress, limits: limitsOf(env), ...(source.bytes !== undefined ? { totalBytes: source.bytes } : {}) }),
    );
    console.error(`restored ${count(result.leaves)} leaves and ${count(result.tombstones)} tombstones at version ${result.version}`);
  } catch (error) {
    fail(error instanceof KoraError ? new CommandError(`${error.message}\nnothing was written`) : error);
  }
}

export async function rulesCheckCommand(file: string): Promise<void> {
  try {
    const { loadRules } = await import("../interceptors/rules.ts");
    const ruleset = loadRules(resolve(file));
    console.log(`${file}: ${ruleset.rules.length} rules, no mistakes`);
  } catch (error) {
    fail(error);
  }
}

interface Case {
  as?: unknown;
  read?: unknown;
  limit?: unknown;
  write?: unknown;
  value?: unknown;
  delete?: unknown;
  mutate?: { merge?: unknown; delete?: unknown };
  expect?: "allow" | "deny";
}

function claims(value: unknown, what: string): Record<string, unknown> | null {
  if (value === null || value === undefined || value === "anonymous") return null;
  if (typeof value !== "object" || Array.isArray(value)) throw new CommandError(`${what} must be a JSON object of token claims, or null for an anonymous caller`);
  return value as Record<string, unknown>;
}

function requestOf(c: Case, what: string, limits: Limits): SimulationRequest {
  const auth = claims(c.as, `${what}: "as"`);
  const path = (v: unknown, field: string): Path => {
    try {
      return validatePath(v, limits);
    } catch (error) {
      throw new CommandError(`${what}: "${field}": ${(error as Error).message}`);
    }
  };
  const kinds = ["read", "write", "delete", "mutate"].filter((k) => c[k as keyof Case] !== undefined);
  if (kinds.length !== 1) throw new CommandError(`${what}: give exactly one of read, write (with value), delete or mutate`);
  if (c.mutate !== undefined) {
    if (typeof c.mutate !== "object" || c.mutate === null) throw new CommandError(`${what}: "mutate" is an object { merge?, delete? }`);
    return { auth, mutate: c.mutate };
  }
  if (c.read !== undefined) return { auth, read: path(c.read, "read"), ...(typeof c.limit === "number" ? { limit: c.limit } : {}) };
  if (c.write !== undefined) {
    if (c.value === undefined) throw new CommandError(`${what}: a write needs a value`);
    return { auth, write: path(c.write, "write"), value: c.value };
  }
  return { auth, delete: path(c.delete, "delete") };
}

export async function rulesTestCommand(env: EnvSettings, file: string, options: Record<string, unknown>): Promise<void> {
  try {
    const limits = limitsOf(env);
    const cases: Case[] = [];
    if (typeof options.cases === "string") {
      const list = parseJsonArgument(await readFile(options.cases, "utf8").catch((e: Error) => fail(new CommandError(`cannot read ${options.cases}: ${e.message}`))), `--cases ${options.cases}`);
      if (!Array.isArray(list)) throw new CommandError(`--cases ${options.cases} must hold a JSON list of cases`);
      cases.push(...(list as Case[]));
    } else {
      const one: Case = { as: parseJsonArgument(String(options.as ?? "null"), "--as") };
      if (typeof options.read === "string") one.read = parsePathArgument(options.read, "--read", limits);
      if (Array.isArray(options.write)) {
        const [p, v, ...extra] = options.write as string[];
        if (p === undefined || v === undefined || extra.length > 0) throw new CommandError("--write takes two arguments: PATH VALUE (both JSON), e.g. --write '[\"todos\",\"dax\",\"t9\"]' '{\"title\":\"x\"}'");
        one.write = parsePathArgument(p, "--write", limits);
        one.value = parseJsonArgument(v, "--write's value");
      }
      if (typeof options.delete === "string") one.delete = parsePathArgument(options.delete, "--delete", limits);
      cases.push(one);
    }
    const requests = cases.map((c, i) => requestOf(c, cases.length > 1 ? `case ${i}` : "the request", limits));

    const { createRulesEngine } = await import("../interceptors/rules.ts");
    const engine = createRulesEngine({ file, watch: false });
    const { loadConfig } = await import("./config.ts");
    const loaded = await loadConfig((options.config as string | undefined) ?? env.config);
    const interceptors = [engine.interceptor, ...(loaded.config.interceptors ?? [])];

    const verdicts = await withSimulationGateway(env, options.tree as string | undefined, interceptors, limits, async (gateway) => {
      const out: Verdict[] = [];
      for (const r of requests) out.push(await simulate(gateway, r));
      return out;
    });
    let mismatches = 0;
    verdicts.forEach((v, i) => {
      const expected = cases[i]?.expect;
      if (expected !== undefined && (expected === "allow") !== v.allowed) mismatches++;
    });
    if (options.json) console.log(JSON.stringify(cases.length === 1 && typeof options.cases !== "string" ? verdicts[0] : verdicts, null, 2));
    else {
      verdicts.forEach((v, i) => {
        const expected = cases[i]?.expect;
        const mark = expected === undefined ? "" : (expected === "allow") === v.allowed ? "ok   " : "FAIL ";
        console.log(`${mark}${describeVerdict(requests[i] as SimulationRequest, v)}`);
      });
    }
    if (typeof options.cases === "string") {
      if (mismatches > 0) throw new CommandError(`${mismatches} of ${cases.length} cases did not get the expected verdict`);
    } else if (!verdicts[0]?.allowed) process.exitCode = 1;
  } catch (error) {
    fail(error);
  }
}

async function withSimulationGateway<T>(
  env: EnvSettings,
  treeFile: string | undefined,
  interceptors: import("../interceptors/types.ts").Interceptor[],
  limits: Limits,
  fn: (gateway: Gateway) => Promise<T>,
): Promise<T> {
  const [{ createGateway }, { createInterceptorChain }] = await Promise.all([import("../core/gateway.ts"), import("../interceptors/chain.ts")]);
  let store: Store;
  if (treeFile !== undefined) {
    // An in-memory store holding the given tree: the simulation touches no real data.
    const { createPgliteStore } = await import("../core/store/pglite.ts");
    store = await createPgliteStore({});
    const source = input(treeFile);
    await importTree(store, source.stream, { limits, source: source.name });
  } else {
    store = await openStore({ databaseUrl: env.databaseUrl, dataDir: env.dataDir, schema: env.schema });
  }
  const chain = createInterceptorChain({ interceptors, limits, log: silentLogger });
  // No `start`: a simulation runs no effects.
  const { start: _start, ...pipeline } = chain;
  const gateway = await createGateway({ store, limits, pipeline, retention: { intervalMs: 0 } });
  try {
    return await fn(gateway);
  } finally {
    await gateway.close();
  }
}
