/**
 * Prometheus metrics (`GET /metrics`, docs/operations.md lists every metric and what it means).
 *
 * core/ stays free of HTTP and prom-client: the store is observed from here by wrapping it
 * (`observeStore`: commits, reads, errors, the change feed's head) and through its optional
 * `stats()` (connection pool); watches and deliveries through the envelop pipeline every transport
 * shares (`useMetrics`); connections from the Node HTTP server (`observeServer`).
 */
import type { Server } from "node:http";
import type { Socket } from "node:net";
import { performance } from "node:perf_hooks";
import type { ExecutionResult } from "graphql";
import type { Plugin } from "graphql-yoga";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { KoraError } from "../core/errors.ts";
import type { Gateway } from "../core/gateway.ts";
import type { Store } from "../core/store.ts";
import { CommitOutcomeUnknown } from "../core/store/db.ts";
import type { Version } from "../core/types.ts";

export interface MetricsOptions {
  /** The path that answers the scrape. Default `/metrics`. */
  path?: string;
}

export interface Metrics {
  readonly path: string;
  readonly registry: Registry;
  /** The text exposition of every metric (Kora's and the process's). */
  scrape(): Promise<string>;
  readonly contentType: string;
  /** Wraps a store so its commits, reads, errors and feed are counted. */
  observeStore(store: Store): Store;
  /** Gives the gauges that read the gateway (watches, feed lag) their gateway. */
  observeGateway(gateway: Gateway): void;
  /** Counts the server's open connections (HTTP and WebSocket). */
  observeServer(server: Server): void;
  /** What `useMetrics` moves from the GraphQL pipeline. */
  readonly watch: { deliveries: Counter; resyncs: Counter; subscriptions: Gauge };
}

// The process's own metrics (event-loop lag, memory, CPU, handles) exist once per process, while
// several servers may run in one (tests, embedders): one registry for them, shared.
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry, eventLoopMonitoringPrecision: 10 });
  }
  return processRegistry;
}

/** A bounded label for a failure: Kora's code, a SQLSTATE class, or the kind of failure. */
export function errorKind(error: unknown): string {
  if (error instanceof KoraError) return error.code;
  if (error instanceof CommitOutcomeUnknown) return "COMMIT_OUTCOME_UNKNOWN";
  const code = (error as { code?: unknown })?.code;
  // SQLSTATE classes: 08 connection, 53 resources, 57 operator intervention (a restart), ...
  if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return `SQLSTATE_${code.slice(0, 2)}`;
  if (typeof code === "string" && /^E[A-Z]+$/.test(code)) return code; // ECONNREFUSED, ECONNRESET, ...
  return "OTHER";
}

export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  const registers = [registry];
  let gateway: Gateway | undefined;
  /** The newest version the store's feed announced (this process's commits and others'). */
  let head: Version = 0;
  let connections = 0;
  let websockets = 0;
  let store: Store | undefined;

  const commits = new Counter({
    name: "kora_commits_total",
    help: "Mutations committed with a new version (empty and replayed writes not included).",
    registers,
  });
  const commitDuration = new Histogram({
    name: "kora_commit_duration_seconds",
    help: "Time from a commit's arrival at the store to its outcome (batching, build, write, COMMIT), by outcome.",
    labelNames: ["outcome"],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  });
  const reads = new Counter({
    name: "kora_reads_total",
    help: "Subtrees read from the store (each `path` field, watch snapshot and interceptor read).",
    registers,
  });
  const storeErrors = new Counter({
    name: "kora_store_errors_total",
    help: "Store operations that failed, by kind (a Kora error code, SQLSTATE_<class>, a socket error code, COMMIT_OUTCOME_UNKNOWN or OTHER) and operation.",
    labelNames: ["kind", "operation"],
    registers,
  });
  const deliveries = new Counter({
    name: "kora_watch_deliveries_total",
    help: "Watch events sent to subscribers (snapshots included), over WebSocket and SSE.",
    registers,
  });
  const resyncs = new Counter({
    name: "kora_watch_resyncs_total",
    help: "Snapshots sent to a watch after its first event: its buffer overflowed (a slow client) or the log no longer reached back.",
    registers,
  });
  const subscriptions = new Gauge({
    name: "kora_watch_subscriptions",
    help: "Open watch subscriptions of clients (WebSocket and SSE).",
    registers,
  });
  new Gauge({
    name: "kora_watches",
    help: "Open watches in the watch hub (client subscriptions and server-side watches).",
    registers,
    collect() {
      this.set(gateway?.hub.size ?? 0);
    },
  });
  new Gauge({
    name: "kora_connections",
    help: "Open TCP connections to the server (HTTP and WebSocket).",
    registers,
    collect() {
      this.set(connections);
    },
  });
  new Gauge({
    name: "kora_websocket_connections",
    help: "Open WebSocket connections (graphql-ws).",
    registers,
    collect() {
      this.set(websockets);
    },
  });
  new Gauge({
    name: "kora_feed_lag_versions",
    help: "Versions the store announced that the watch hub has not dispatched yet.",
    registers,
    collect() {
      this.set(gateway ? Math.max(0, head - gateway.hub.cursor) : 0);
    },
  });
  new Gauge({
    name: "kora_feed_version",
    help: "The newest version the change feed announced.",
    registers,
    collect() {
      this.set(head);
    },
  });
  new Gauge({
    name: "kora_hub_version",
    help: "The last version the watch hub dispatched to watches.",
    registers,
    collect() {
      this.set(gateway?.hub.cursor ?? 0);
    },
  });
  new Gauge({
    name: "kora_store_connections",
    help: "The store's connections, by state: total, idle, and waiting (operations queued for one).",
    labelNames: ["state"],
    registers,
    collect() {
      const stats = store?.stats?.();
      if (!stats) return;
      this.set({ state: "total" }, stats.total);
      this.set({ state: "idle" }, stats.idle);
      this.set({ state: "waiting" }, stats.waiting);
    },
  });

  const failed = (operation: string) => (error: unknown) => {
    storeErrors.inc({ kind: errorKind(error), operation });
    throw error;
  };

  return {
    path: options.path ?? "/metrics",
    registry,
    contentType: registry.contentType,
    async scrape() {
      return `${await registry.metrics()}\n${await processMetrics().metrics()}`;
    },
    observeStore(inner) {
      store = inner;
      inner.feed.subscribe((v) => {
        if (v > head) head = v;
      });
      // The wrapper keeps every other member (outbox, explain, kind, ...) through its prototype.
      const observed: Store = Object.create(inner);
      Object.assign(observed, {
        async commit(build) {
          const started = performance.now();
          try {
            const result = await inner.commit(build);
            if (!result.empty && !result.replayed) commits.inc();
            commitDuration.observe({ outcome: "ok" }, (performance.now() - started) / 1000);
            return result;
          } catch (error) {
            commitDuration.observe({ outcome: "error" }, (performance.now() - started) / 1000);
            // A build's own failure (an interceptor refused the write) is not the store's.
            if (!(error instanceof KoraError) || error.code === "UNAVAILABLE") storeErrors.inc({ kind: errorKind(error), operation: "commit" });
            throw error;
          }
        },
        read(requests) {
          reads.inc(requests.length);
          return inner.read(requests).catch(failed("read"));
        },
        keys(path, options) {
          return inner.keys(path, options).catch(failed("keys"));
        },
        changes(after, limit) {
          return inner.changes(after, limit).catch(failed("changes"));
        },
        version() {
          return inner.version().catch(failed("version"));
        },
      } satisfies Partial<Store>);
      return observed;
    },
    observeGateway(g) {
      gateway = g;
      if (g.hub.cursor > head) head = g.hub.cursor;
    },
    observeServer(server) {
      const track = (socket: Socket, count: (d: number) => void) => {
        count(1);
        socket.once("close", () => count(-1));
      };
      server.on("connection", (socket: Socket) =>
        track(socket, (d) => {
          connections += d;
        }),
      );
      server.on("upgrade", (req: { socket: Socket }) =>
        track(req.socket, (d) => {
          websockets += d;
        }),
      );
    },
    watch: { deliveries, resyncs, subscriptions },
  };
}

/**
 * The yoga/envelop plugin: answers `GET /metrics` (as yoga's own health-check plugin answers its
 * route, in `onRequest`), and counts watch subscriptions, deliveries and resyncs on every
 * transport (HTTP SSE and graphql-ws both run this pipeline).
 */
export function useMetrics(metrics: Metrics): Plugin {
  const { deliveries, resyncs, subscriptions } = metrics.watch;
  return {
    onRequest({ request, url, fetchAPI, endResponse }) {
      if (url.pathname !== metrics.path || (request.method !== "GET" && request.method !== "HEAD")) return;
      return metrics.scrape().then((text) => {
        endResponse(new fetchAPI.Response(text, { status: 200, headers: { "content-type": metrics.contentType } }));
      });
    },
    onSubscribe() {
      return {
        onSubscribeResult() {
          let events = 0;
          subscriptions.inc();
          return {
            onNext({ result }: { result: ExecutionResult }) {
              const watch = (result.data as { watch?: { snapshot?: boolean } } | null | undefined)?.watch;
              if (!watch) return;
              deliveries.inc();
              if (events++ > 0 && watch.snapshot) resyncs.inc();
            },
            onEnd() {
              subscriptions.dec();
            },
          };
        },
      };
    },
  };
}
