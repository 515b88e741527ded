/**
 * Readiness (`GET /readyz`, contract section 6) as a plugin of the one yoga pipeline, on yoga's
 * own `useReadinessCheck`. Liveness (`GET /healthz`) is yoga's built-in health check: the process
 * serves, whatever the store does.
 *
 * Ready means: the store answers (its head version read within `probeTimeoutMs`), the change feed
 * is not stale (the watch hub has not been behind the head for longer than `staleAfterMs`), and
 * the gateway is not shutting down. The answer always comes within a second: the probe has its
 * own deadline, one probe serves every request that arrives while it runs, and its answer is kept
 * for `cacheMs` so a burst of probes costs the database one statement.
 */
import { type Plugin, useReadinessCheck } from "graphql-yoga";
import { withDeadline } from "../core/deadline.ts";
import type { Gateway } from "../core/gateway.ts";

export interface ReadinessOptions {
  gateway: Gateway;
  /** True while the server shuts down (it stops being ready before it stops serving). */
  shuttingDown: () => boolean;
  /** Deadline of the store probe, in milliseconds. Default 800. */
  probeTimeoutMs?: number;
  /** The feed is stale once the hub has been behind the store's head this long, in ms. Default 5000. */
  staleAfterMs?: number;
  /** How long one probe's answer serves later requests, in milliseconds. Default 250. */
  cacheMs?: number;
}

export interface Readiness {
  ready: boolean;
  /** Why the gateway is not ready (absent when it is). */
  reason?: string;
  store: "postgres" | "pglite";
  /** The store's head version, as a decimal string (absent when the store did not answer). */
  version?: string;
  /** How the store hears of commits (core/store.ts `FeedState`). */
  feed: string;
  /** How far the watch hub is behind the store's head: versions, and for how long. */
  feedLag?: { versions: number; ms: number };
  pool?: { total: number; idle: number; waiting: number; max: number };
}

/** Evaluates readiness, with the probe's deadline, sharing and caching described above. */
export function createReadiness(options: ReadinessOptions): () => Promise<Readiness> {
  const { gateway } = options;
  const probeTimeoutMs = options.probeTimeoutMs ?? 800;
  const staleAfterMs = options.staleAfterMs ?? 5000;
  const cacheMs = options.cacheMs ?? 250;
  let cached: { at: number; value: Readiness } | undefined;
  let running: Promise<Readiness> | undefined;
  // Since when the hub has been behind a head it has not reached (undefined: it is not behind).
  let behind: { version: number; since: number } | undefined;

  async function evaluate(): Promise<Readiness> {
    const store = gateway.store;
    const health = store.health();
    const base = { store: store.kind, feed: health.feed, ...(health.pool ? { pool: health.pool } : {}) };
    if (options.shuttingDown() || gateway.closing) return { ...base, ready: false, reason: "the gateway is shutting down" };
    let head: number;
    try {
      head = await withDeadline(store.version(), probeTimeoutMs, () => `the store did not answer within ${probeTimeoutMs} ms`);
    } catch (error) {
      return { ...base, ready: false, reason: `the store is unreachable: ${error instanceof Error ? error.message : String(error)}` };
    }
    const cursor = gateway.hub.cursor;
    const now = Date.now();
    if (cursor >= head) behind = undefined;
    else if (!behind || cursor >= behind.version) behind = { version: head, since: now };
    const feedLag = { versions: Math.max(0, head - cursor), ms: behind ? now - behind.since : 0 };
    if (feedLag.ms > staleAfterMs) {
      const why = health.feedError ? ` (${health.feedError})` : "";
      return {
        ...base,
        ready: false,
        version: String(head),
        feedLag,
        reason: `the change feed is stale: ${feedLag.versions} versions behind for ${feedLag.ms} ms${why}`,
      };
    }
    return { ...base, ready: true, version: String(head), feedLag };
  }

  return () => {
    const now = Date.now();
    if (cached && now - cached.at < cacheMs) return Promise.resolve(cached.value);
    running ??= evaluate().then((value) => {
      cached = { at: Date.now(), value };
      running = undefined;
      return value;
    });
    return running;
  };
}

/** `GET /readyz`: 200 with the store's kind, version and feed lag, or 503 with the reason. */
export function useReadiness(options: ReadinessOptions): Plugin {
  const readiness = createReadiness(options);
  return useReadinessCheck({
    endpoint: "/readyz",
    check: async ({ fetchAPI }) => {
      const r = await readiness();
      return new fetchAPI.Response(JSON.stringify(r), {
        status: r.ready ? 200 : 503,
        headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
      });
    },
  });
}
