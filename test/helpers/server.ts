/**
 * Starts a real Kora server on port 0 over a store target, and talks to it over HTTP. Rate limits
 * are off unless a test passes `rateLimits` (every suite's clients share the address 127.0.0.1;
 * test/security.rate.test.ts covers the limits, including that they are on by default).
 */
import { silentLogger } from "../../core/gateway.ts";
import { type RunningKora, type StartOptions, startKora } from "../../server/index.ts";
import type { StoreTarget } from "./db.ts";

export interface TestServer {
  kora: RunningKora;
  /** The PostgreSQL schema holding this server's tree. */
  schema: string;
  url: string;
  wsUrl: string;
  close(): Promise<void>;
}

export async function startTestServer(
  target: StoreTarget,
  options: Partial<Omit<StartOptions, "store">> = {},
): Promise<TestServer> {
  const { store, schema, dispose } = await target.create();
  const kora = await startKora({
    store,
    log: silentLogger,
    port: 0,
    host: "127.0.0.1",
    retention: { intervalMs: 0 },
    rateLimits: false,
    ...options,
  });
  return {
    kora,
    schema,
    url: kora.url,
    wsUrl: kora.url.replace(/^http/, "ws"),
    async close() {
      await kora.close();
      await dispose();
    },
  };
}

export interface GraphQLResponse<T = Record<string, unknown>> {
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string; [k: string]: unknown } }[];
}

export async function http<T = Record<string, unknown>>(
  url: string,
  query: string,
  variables?: Record<string, unknown>,
): Promise<GraphQLResponse<T>> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/graphql-response+json, application/json" },
    body: JSON.stringify({ query, variables }),
  });
  return (await res.json()) as GraphQLResponse<T>;
}

/** Runs an operation and fails the test on any error. */
export async function ok<T = Record<string, unknown>>(url: string, query: string, variables?: Record<string, unknown>): Promise<T> {
  const r = await http<T>(url, query, variables);
  if (r.errors?.length) throw new Error(`GraphQL errors: ${JSON.stringify(r.errors)}`);
  return r.data as T;
}

export const MERGE = `mutation($path: [String!]!, $value: JSON!) { merge(path: $path, value: $value) { version merge delete } }`;
export const DELETE = `mutation($path: [String!]!) { delete(path: $path) { version merge delete } }`;
export const MUTATE = `mutation($merge: JSONObject, $delete: JSONObject) { mutate(merge: $merge, delete: $delete) { version merge delete } }`;
export const PATH = `query($path: [String!]!, $min: String, $max: String, $limit: Int, $reverse: Boolean) { path(path: $path, min: $min, max: $max, limit: $limit, reverse: $reverse) }`;
export const WATCH = `subscription($path: [String!]!, $since: String) { watch(path: $path, since: $since) { version snapshot merge delete } }`;

export async function merge(url: string, path: string[], value: unknown): Promise<number> {
  const d = await ok<{ merge: { version: string } }>(url, MERGE, { path, value });
  return Number(d.merge.version);
}

export async function del(url: string, path: string[]): Promise<number> {
  const d = await ok<{ delete: { version: string } }>(url, DELETE, { path });
  return Number(d.delete.version);
}

export async function read(url: string, path: string[], options: Record<string, unknown> = {}): Promise<unknown> {
  const d = await ok<{ path: unknown }>(url, PATH, { path, ...options });
  return d.path;
}

/** Runs `npm start`'s entry (server/cli.ts) expecting it to exit; resolves its exit code and stderr. */
export async function runCliToExit(args: string[], env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const { spawn } = await import("node:child_process");
  const child = spawn(process.execPath, ["--import", "tsx", "server/cli.ts", ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (c: string) => {
    stderr += c;
  });
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  return { code, stderr };
}
