/**
 * Gateway processes as users start them (the CLI, `NODE_ENV=production`, on DATABASE_URL), plus
 * the fault suite's writers and watchers: real HTTP and graphql-ws clients in the test process.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createClient, type Client } from "graphql-ws";
import WebSocket from "ws";

const ROOT = new URL("../..", import.meta.url).pathname;

export interface GatewayProcess {
  readonly url: string;
  readonly pid: number;
  /** Everything the process wrote to stdout and stderr. */
  output(): string;
  /** Set once the process ended: its exit code or signal. */
  exited(): { code: number | null; signal: NodeJS.Signals | null } | undefined;
  rssBytes(): number;
  kill(signal: NodeJS.Signals): void;
  /** SIGTERM, then waits for the exit (SIGKILL to the group after 10 s). */
  stop(): Promise<void>;
}

export async function startGateway(options: { databaseUrl: string; schema: string; env?: Record<string, string>; args?: string[] }): Promise<GatewayProcess> {
  // The compiled CLI, as `npx kora serve` runs it (`npm run test:faults` builds it first).
  const child: ChildProcess = spawn(process.execPath, ["dist/server/cli.js", ...(options.args ?? [])], {
    cwd: ROOT,
    // Its own process group: tsx may start a child of its own, and the group ends together.
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      NODE_ENV: "production",
      DATABASE_URL: options.databaseUrl,
      KORA_SCHEMA: options.schema,
      PORT: "0",
      HOST: "127.0.0.1",
      LOG_LEVEL: "warn",
      ...options.env,
    },
  });
  let out = "";
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exitedPromise = new Promise<void>((resolve) => {
    child.on("exit", (code, signal) => {
      exit = { code, signal };
      resolve();
    });
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start within 60 s:\n${out}`)), 60_000);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const m = /GraphiQL at (http:\/\/\S+\/graphql)/.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited (${code}) before serving:\n${out}`));
    });
  });
  const pid = child.pid as number;
  const killGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-pid, signal);
    } catch {}
  };
  return {
    url,
    pid,
    output: () => out,
    exited: () => exit,
    rssBytes() {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
    },
    kill: killGroup,
    async stop() {
      if (exit) return;
      killGroup("SIGTERM");
      const timer = setTimeout(() => killGroup("SIGKILL"), 10_000);
      await exitedPromise;
      clearTimeout(timer);
    },
  };
}

export interface WriteOutcome {
  ok: boolean;
  /** The gateway it was sent to. */
  url?: string;
  path: string[];
  value: number;
  version?: number;
  code?: string;
  status?: number;
  retryAfter?: string | null;
  message?: string;
  ms: number;
  /** When the answer came (Date.now()). */
  at: number;
}

const MERGE = "mutation($p: [String!]!, $v: JSON!) { merge(path: $p, value: $v) { version } }";

/** One HTTP merge; never throws: a broken connection is an outcome with code "NETWORK". */
export async function mergeOverHttp(url: string, path: string[], value: number, timeoutMs = 20_000): Promise<WriteOutcome> {
  const start = performance.now();
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: MERGE, variables: { p: path, v: value } }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = (await response.json()) as {
      data?: { merge?: { version: string } } | null;
      errors?: { message: string; extensions?: { code?: string } }[];
    };
    const ms = performance.now() - start;
    const version = body.data?.merge?.version;
    if (version !== undefined && !body.errors) return { ok: true, path, value, version: Number(version), ms, status: response.status, at: Date.now() };
    const error = body.errors?.[0];
    return {
      ok: false,
      path,
      value,
      code: error?.extensions?.code ?? "NONE",
      message: error?.message ?? "",
      status: response.status,
      retryAfter: response.headers.get("retry-after"),
      ms,
      at: Date.now(),
    };
  } catch (error) {
    return { ok: false, path, value, code: "NETWORK", message: String(error), ms: performance.now() - start, at: Date.now() };
  }
}

/**
 * Writers: each loops merging `["w", name, seq]` = send time (ms) through its gateway until
 * stopped, one write at a time. The value carries the send time so watchers measure latency.
 */
export function startWriters(gateways: () => string[], count: number, prefix = "w") {
  const outcomes: WriteOutcome[] = [];
  let stopped = false;
  const loops: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    loops.push(
      (async () => {
        const name = `${prefix}${i}`;
        for (let seq = 0; !stopped && seq < 1_000_000; seq++) {
          const list = gateways();
          const url = list[i % list.length] as string;
          const outcome = await mergeOverHttp(url, ["w", name, String(seq)], Date.now());
          outcomes.push({ ...outcome, url });
          // A refused connection (the gateway is being restarted) answers at once: pace it.
          if (outcome.code === "NETWORK") await new Promise((r) => setTimeout(r, 50));
        }
      })(),
    );
  }
  return {
    outcomes,
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

export interface WatcherLog {
  events: { version: number; snapshot: boolean; receivedAt: number; latencies: number[] }[];
  errors: unknown[];
  closes: { code: number; reason: string }[];
  /** Resolves when the watcher has seen `version` (or later). */
  reached(version: number, timeoutMs?: number): Promise<void>;
  dispose(): Promise<void>;
}

/** A graphql-ws watcher of ["w"] that never retries: a closed socket shows in `closes`. */
export function startWatcher(url: string): WatcherLog {
  const log: WatcherLog = {
    events: [],
    errors: [],
    closes: [],
    reached: () => Promise.resolve(),
    dispose: async () => {},
  };
  const waiters: { version: number; resolve: () => void }[] = [];
  const client: Client = createClient({
    url: url.replace(/^http/, "ws"),
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    lazy: false,
    keepAlive: 0,
    on: {
      closed: (event) => {
        const e = event as { code?: number; reason?: string };
        log.closes.push({ code: e.code ?? 0, reason: e.reason ?? "" });
      },
    },
  });
  const unsubscribe = client.subscribe<{ watch: { version: string; snapshot: boolean; merge: Record<string, unknown> } }>(
    { query: 'subscription { watch(path: ["w"]) { version snapshot merge } }' },
    {
      next: (result) => {
        const w = result.data?.watch;
        if (!w) {
          log.errors.push(result.errors);
          return;
        }
        const now = Date.now();
        const latencies: number[] = [];
        if (!w.snapshot) {
          const writers = (w.merge.w ?? {}) as Record<string, Record<string, number>>;
          for (const seqs of Object.values(writers)) for (const sent of Object.values(seqs)) latencies.push(now - sent);
        }
        const version = Number(w.version);
        log.events.push({ version, snapshot: w.snapshot, receivedAt: now, latencies });
        for (let i = waiters.length - 1; i >= 0; i--) {
          const waiter = waiters[i] as (typeof waiters)[number];
          if (version >= waiter.version) {
            waiters.splice(i, 1);
            waiter.resolve();
          }
        }
      },
      error: (error) => log.errors.push(error),
      complete: () => {},
    },
  );
  log.reached = (version, timeoutMs = 30_000) => {
    const last = log.events.at(-1)?.version ?? -1;
    if (last >= version) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`watcher at ${log.events.at(-1)?.version} did not reach ${version} in ${timeoutMs} ms`)),
        timeoutMs,
      );
      waiters.push({
        version,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  };
  log.dispose = async () => {
    unsubscribe();
    await client.dispose();
  };
  return log;
}

/** Problems with a watcher's events: not one snapshot then every version once, in order, up to `head`. */
export function gapsAndDuplicates(log: WatcherLog, head: number): string[] {
  const problems: string[] = [];
  const [first, ...rest] = log.events;
  if (!first) return ["no events"];
  if (!first.snapshot) problems.push("the first event is not a snapshot");
  let last = first.version;
  for (const e of rest) {
    if (e.snapshot) problems.push(`a snapshot at ${e.version} after ${last}`);
    else if (e.version !== last + 1) problems.push(`${e.version} after ${last}`);
    last = e.version;
  }
  if (last !== head) problems.push(`ended at ${last}, the head is ${head}`);
  return problems.slice(0, 10);
}

/** GET /readyz: status and body; never throws. */
export async function readyz(url: string): Promise<{ status: number; body: Record<string, unknown>; ms: number }> {
  const start = performance.now();
  try {
    const r = await fetch(url.replace(/\/graphql$/, "/readyz"), { signal: AbortSignal.timeout(5000) });
    return { status: r.status, body: (await r.json()) as Record<string, unknown>, ms: performance.now() - start };
  } catch (error) {
    return { status: 0, body: { error: String(error) }, ms: performance.now() - start };
  }
}

/** Polls /readyz on each gateway every `everyMs` until stopped; keeps every answer. */
export function pollReadiness(urls: () => string[], everyMs = 200) {
  const answers: { url: string; at: number; status: number; ms: number; body: Record<string, unknown> }[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const list = urls();
      const results = await Promise.all(list.map((u) => readyz(u)));
      results.forEach((r, i) => {
        answers.push({ url: list[i] as string, at: Date.now(), ...r });
      });
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    answers,
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}
