/**
 * The fault suite (issue 8; docs/operations.md, "Faults"): two gateway processes started as users
 * start them, on a scratch PostgreSQL cluster of the suite's own, under 8 writers (HTTP) with
 * watchers (graphql-ws) on both, while the database is killed, restarted, stopped, frozen, and its
 * LISTEN backends terminated and frozen. After each fault: no gateway process died, every
 * acknowledged write is stored, every watch stayed open and saw every committed version once, in
 * order, failed writes were UNAVAILABLE (503, Retry-After) and fast, /readyz told the truth.
 *
 * Run alone: `npm run test:faults` (about 4 minutes on 2 cores).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listenerName } from "../../core/store/postgres.ts";
import { type Sample, scrape } from "../helpers/metrics.ts";
import { type ScratchCluster, postgresBinDir, startScratchCluster } from "./cluster.ts";
import {
  type GatewayProcess,
  type WatcherLog,
  type WriteOutcome,
  gapsAndDuplicates,
  mergeOverHttp,
  percentile,
  pollReadiness,
  startGateway,
  startWatcher,
  startWriters,
} from "./gateway.ts";

const bin = postgresBinDir();
const REQUEST_MS = 3000;
const SCHEMA = "kora_faults";

/** Polls `condition` every 20 ms until it holds; fails after `timeoutMs`. */
async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!bin && process.env.KORA_REQUIRE_PG !== "1")("a gateway outlives its database", () => {
  let cluster: ScratchCluster;
  const gateways: GatewayProcess[] = [];
  const urls = () => gateways.map((g) => g.url);
  let configFile: string;

  const env = { KORA_REQUEST_TIMEOUT_MS: String(REQUEST_MS) };
  const start = () => startGateway({ databaseUrl: cluster.url, schema: SCHEMA, env, args: ["--config", configFile] });

  beforeAll(async () => {
    cluster = await startScratchCluster();
    const dir = mkdtempSync(join(tmpdir(), "kora-faults-"));
    configFile = join(dir, "kora.config.mjs");
    // Keep-alive is tested on its own (test/e2e.keepalive.test.ts); here a paused watcher must
    // meet the overflow path, which needs more time than the default ping allows.
    // Rate limits (on by default) are off: every writer here is 127.0.0.1 (docs/security.md).
    writeFileSync(configFile, "export default { rules: false, rateLimits: false, timeouts: { wsPingMs: 120000 } };\n");
    gateways.push(await start());
    gateways.push(await start());
  }, 180_000);

  afterAll(async () => {
    await Promise.all(gateways.map((g) => g.stop()));
    await cluster?.stop();
  }, 60_000);

  async function head(): Promise<number> {
    const rows = await cluster.query<{ v: string }>(`SELECT version::text AS v FROM ${SCHEMA}.meta WHERE id = 1`);
    return Number(rows[0]?.v ?? 0);
  }

  async function storedTree(): Promise<Record<string, Record<string, number>>> {
    const r = await fetch(gateways[0]?.url as string, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: 'query { path(path: ["w"]) }' }),
    });
    const body = (await r.json()) as { data: { path: Record<string, Record<string, number>> | null } };
    return body.data.path ?? {};
  }

  function noDeaths(): void {
    for (const g of gateways) {
      expect(g.exited(), `gateway ${g.pid} died:\n${g.output().slice(-3000)}`).toBeUndefined();
      expect(g.output()).not.toMatch(/unhandled|uncaught/i);
    }
  }

  async function everyAckStored(outcomes: WriteOutcome[]): Promise<void> {
    const tree = await storedTree();
    const missing = outcomes.filter((o) => o.ok && tree[o.path[1] as string]?.[o.path[2] as string] !== o.value);
    expect(missing.slice(0, 5), `${missing.length} acknowledged writes are missing`).toEqual([]);
  }

  /** Watchers on both gateways, each at its snapshot. */
  async function watchBoth(perGateway = 2): Promise<WatcherLog[]> {
    const logs: WatcherLog[] = [];
    for (const g of gateways) for (let i = 0; i < perGateway; i++) logs.push(startWatcher(g.url));
    await until(() => logs.every((l) => l.events.length > 0), 30_000, "every watcher's snapshot");
    return logs;
  }

  async function settle(watchers: WatcherLog[]): Promise<number> {
    const h = await head();
    await Promise.all(watchers.map((w) => w.reached(h, 30_000)));
    return h;
  }

  const total = (samples: Sample[], name: string) => samples.filter((x) => x.name === name).reduce((sum, x) => sum + x.value, 0);

  /** Outage scenarios share one shape: the fault, then every promise checked. */
  async function outage(fault: () => Promise<{ downAt: number; upAt: number }>) {
    const metricsBefore = await Promise.all(gateways.map((g) => scrape(g.url)));
    const watchers = await watchBoth();
    const writers = startWriters(urls, 8);
    const readiness = pollReadiness(urls, 50);
    try {
      await until(() => writers.outcomes.filter((o) => o.ok).length >= 40, 30_000, "writes before the fault");
      const { downAt, upAt } = await fault();
      // Both gateways serve writes again by themselves within 10 s (each writer sticks to one).
      await until(
        () => gateways.every((g) => writers.outcomes.filter((o) => o.ok && o.at > upAt && o.url === g.url).length >= 8),
        10_000,
        "writes succeeding on both gateways within 10 s of the database's return",
      );
      await until(
        () => gateways.every((g) => readiness.answers.some((a) => a.url === g.url && a.at > upAt && a.status === 200)),
        10_000,
        "/readyz 200 on both gateways within 10 s",
      );
      await writers.stop();
      await readiness.stop();
      const h = await settle(watchers);

      noDeaths();
      for (const w of watchers) {
        expect(w.closes, "a watch's socket closed").toEqual([]);
        expect(w.errors).toEqual([]);
        expect(gapsAndDuplicates(w, h)).toEqual([]);
      }
      await everyAckStored(writers.outcomes);
      const failed = writers.outcomes.filter((o) => !o.ok);
      for (const f of failed) {
        expect({ code: f.code, status: f.status, message: f.message }).toMatchObject({ code: "UNAVAILABLE", status: 503 });
        expect(f.retryAfter).toMatch(/^\d+$/);
        expect(f.ms).toBeLessThan(5000);
      }
      // /readyz was non-200 while the database was away (each gateway), and always answered fast.
      // A restart can be over in a few hundred milliseconds, less than readiness's own probe
      // deadline and cache: the 503 is required where the outage outlasted them (a second).
      for (const g of gateways) {
        const during = readiness.answers.filter((a) => a.url === g.url && a.at > downAt && a.at <= upAt + 300);
        if (upAt - downAt >= 1000) {
          expect(during.some((a) => a.status === 503), `gateway ${g.pid}: /readyz never said 503 during the outage`).toBe(true);
        }
        for (const a of during) expect([200, 503]).toContain(a.status);
      }
      for (const a of readiness.answers) expect(a.ms).toBeLessThan(1000);
      // /metrics, scraped and parsed: commits moved, and every failed write is a counted store error.
      const metricsAfter = await Promise.all(gateways.map((g) => scrape(g.url)));
      gateways.forEach((g, i) => {
        const before = metricsBefore[i] as Sample[];
        const after = metricsAfter[i] as Sample[];
        const ownFailures = failed.filter((f) => f.url === g.url).length;
        expect(total(after, "kora_commits_total")).toBeGreaterThan(total(before, "kora_commits_total"));
        expect(total(after, "kora_store_errors_total") - total(before, "kora_store_errors_total")).toBeGreaterThanOrEqual(ownFailures);
        expect(total(after, "kora_watches")).toBeGreaterThanOrEqual(2);
      });
      return { failed, outcomes: writers.outcomes };
    } finally {
      await writers.stop();
      await readiness.stop();
      await Promise.all(watchers.map((w) => w.dispose()));
    }
  }

  it("kill -9 of a gateway mid-stream: acknowledged writes stored, the other's watchers see every version, the restarted one serves within 10 s", async () => {
    const [a, b] = gateways as [GatewayProcess, GatewayProcess];
    const watchers = [startWatcher(b.url), startWatcher(b.url)];
    await until(() => watchers.every((w) => w.events.length > 0), 30_000, "snapshots");
    const writers = startWriters(urls, 8);
    try {
      await until(() => writers.outcomes.filter((o) => o.ok).length >= 100, 30_000, "writes before the kill");
      a.kill("SIGKILL");
      await until(() => a.exited() !== undefined, 10_000, "the killed gateway's exit");
      const startedAt = Date.now();
      const restarted = await start();
      gateways[0] = restarted;
      await until(
        async () => (await mergeOverHttp(restarted.url, ["w", "restart", String(startedAt)], Date.now())).ok,
        10_000,
        "the restarted gateway's first write",
      );
      expect(Date.now() - startedAt).toBeLessThan(10_000);
      await until(() => writers.outcomes.filter((o) => o.ok && o.at > startedAt).length >= 40, 20_000, "writes after the restart");
      await writers.stop();
      const h = await settle(watchers);
      for (const w of watchers) {
        expect(w.closes).toEqual([]);
        expect(gapsAndDuplicates(w, h)).toEqual([]);
      }
      await everyAckStored(writers.outcomes);
      // Writes to the killed process failed at the network; none answered with a masked error.
      expect(writers.outcomes.filter((o) => !o.ok && o.code !== "NETWORK" && o.code !== "UNAVAILABLE")).toEqual([]);
      noDeaths();
    } finally {
      await writers.stop();
      await Promise.all(watchers.map((w) => w.dispose()));
    }
  }, 120_000);

  it("PostgreSQL restart -m fast: no gateway dies, writes fail fast with UNAVAILABLE, watches see every version", async () => {
    await outage(async () => {
      const downAt = Date.now();
      await cluster.ctl(["restart", "-m", "fast"]);
      return { downAt, upAt: Date.now() };
    });
  }, 120_000);

  it("PostgreSQL restart -m immediate: the same", async () => {
    await outage(async () => {
      const downAt = Date.now();
      await cluster.ctl(["restart", "-m", "immediate"]);
      return { downAt, upAt: Date.now() };
    });
  }, 120_000);

  it("PostgreSQL stopped for 5 s, then started: the same, with writes failing throughout the outage", async () => {
    const { failed } = await outage(async () => {
      const downAt = Date.now();
      await cluster.ctl(["stop", "-m", "fast"]);
      await wait(5000); // the length of the outage is the fault being tested
      await cluster.ctl(["start"]);
      return { downAt, upAt: Date.now() };
    });
    expect(failed.length).toBeGreaterThan(8);
  }, 120_000);

  it("every backend frozen 8 s: requests end by their deadline with UNAVAILABLE, nothing hangs, no process dies", async () => {
    const watchers = await watchBoth(1);
    const writers = startWriters(urls, 8);
    const readiness = pollReadiness(urls, 200);
    try {
      await until(() => writers.outcomes.filter((o) => o.ok).length >= 40, 30_000, "writes before the freeze");
      const pids = [cluster.postmasterPid() as number, ...cluster.childPids()];
      const frozenAt = Date.now();
      cluster.signal(pids, true);
      await wait(8000); // the length of the freeze is the fault being tested
      cluster.signal(pids, false);
      const thawedAt = Date.now();
      await until(() => writers.outcomes.filter((o) => o.ok && o.at > thawedAt).length >= 16, 15_000, "writes after the thaw");
      await writers.stop();
      await readiness.stop();
      const h = await settle(watchers);

      noDeaths();
      const during = writers.outcomes.filter((o) => o.at > frozenAt + REQUEST_MS && o.at < thawedAt);
      expect(during.length).toBeGreaterThan(0);
      for (const o of writers.outcomes) {
        // Every request ends by its deadline (plus scheduling slack), never at the thaw.
        expect(o.ms).toBeLessThan(REQUEST_MS + 2000);
        if (!o.ok) expect({ code: o.code, status: o.status }).toEqual({ code: "UNAVAILABLE", status: 503 });
      }
      expect(during.filter((o) => !o.ok).length).toBeGreaterThan(0);
      for (const w of watchers) {
        expect(w.closes).toEqual([]);
        expect(gapsAndDuplicates(w, h)).toEqual([]);
      }
      for (const g of gateways) {
        const answers = readiness.answers.filter((a) => a.url === g.url && a.at > frozenAt + 1000 && a.at < thawedAt);
        expect(answers.some((a) => a.status === 503)).toBe(true);
      }
      for (const a of readiness.answers) expect(a.ms).toBeLessThan(1000);
      await everyAckStored(writers.outcomes);
    } finally {
      cluster.signal([cluster.postmasterPid() as number, ...cluster.childPids()], false);
      await writers.stop();
      await readiness.stop();
      await Promise.all(watchers.map((w) => w.dispose()));
    }
  }, 120_000);

  it("LISTEN backends terminated 5 times, then frozen 12 s: cross-gateway delivery goes on (p99 < 3 s), nothing missed", async () => {
    const listenPids = async () =>
      (
        await cluster.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid", [
          listenerName(SCHEMA),
        ])
      ).map((r) => r.pid);
    const [a, b] = gateways as [GatewayProcess, GatewayProcess];
    // Writes go through A only; watchers on B hear of them only through B's change feed.
    const watchers = [startWatcher(b.url), startWatcher(b.url)];
    await until(() => watchers.every((w) => w.events.length > 0), 30_000, "snapshots");
    const writers = startWriters(() => [a.url], 8);
    try {
      await until(() => writers.outcomes.filter((o) => o.ok).length >= 40, 30_000, "writes before the fault");
      await until(async () => (await listenPids()).length === 2, 10_000, "both LISTEN connections");
      for (let round = 0; round < 5; round++) {
        const before = await listenPids();
        await cluster.query("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", [before]);
        await until(
          async () => {
            const now = await listenPids();
            return now.length === 2 && now.every((p) => !before.includes(p));
          },
          10_000,
          `LISTEN connections back after termination ${round + 1}`,
        );
      }
      const frozen = await listenPids();
      const frozenAt = Date.now();
      cluster.signal(frozen, true);
      await wait(12_000); // the length of the freeze is the fault being tested
      const thawedAt = Date.now();
      cluster.signal(frozen, false);
      await until(() => writers.outcomes.filter((o) => o.ok && o.at > thawedAt).length >= 16, 10_000, "writes after the thaw");
      await writers.stop();
      const h = await settle(watchers);

      noDeaths();
      for (const w of watchers) {
        expect(w.closes).toEqual([]);
        expect(gapsAndDuplicates(w, h)).toEqual([]);
        const latencies = w.events.filter((e) => e.receivedAt > frozenAt && e.receivedAt < thawedAt).flatMap((e) => e.latencies);
        expect(latencies.length).toBeGreaterThan(20);
        expect(percentile(latencies, 99), "p99 cross-gateway latency during the LISTEN freeze").toBeLessThan(3000);
      }
      expect(writers.outcomes.filter((o) => !o.ok)).toEqual([]);
      await everyAckStored(writers.outcomes);
    } finally {
      await writers.stop();
      await Promise.all(watchers.map((w) => w.dispose()));
    }
  }, 150_000);

  it("a watcher that stops reading during 20,000 writes: memory stays bounded, it gets a fresh snapshot, others are unaffected", async () => {
    const [a, b] = gateways as [GatewayProcess, GatewayProcess];
    const others = [startWatcher(a.url), startWatcher(b.url)];
    await until(() => others.every((w) => w.events.length > 0), 30_000, "snapshots");

    // The slow watcher speaks graphql-ws by hand, so its socket can be paused. It selects `value`
    // (the whole watched subtree with every event), so its events outgrow the kernel's socket
    // buffers quickly and the gateway really is held back by it.
    const slow = new WebSocket(a.url.replace(/^http/, "ws"), "graphql-transport-ws");
    const slowEvents: { version: number; snapshot: boolean }[] = [];
    let slowClose: { code: number; reason: string } | undefined;
    slow.on("message", (data) => {
      const msg = JSON.parse(String(data)) as { type: string; payload?: { data?: { watch?: { version: string; snapshot: boolean } } } };
      if (msg.type === "connection_ack") {
        slow.send(JSON.stringify({ id: "1", type: "subscribe", payload: { query: 'subscription { watch(path: ["w"]) { version snapshot value } }' } }));
      }
      const watch = msg.payload?.data?.watch;
      if (msg.type === "next" && watch) slowEvents.push({ version: Number(watch.version), snapshot: watch.snapshot });
    });
    slow.on("close", (code, reason) => {
      slowClose = { code, reason: String(reason) };
    });
    await new Promise<void>((resolve) => slow.once("open", () => resolve()));
    slow.send(JSON.stringify({ type: "connection_init" }));
    await until(() => slowEvents.length > 0, 30_000, "the slow watcher's snapshot");
    const rssBefore = a.rssBytes();
    (slow as unknown as { _socket: { pause(): void } })._socket.pause();

    const writers = startWriters(urls, 32, "s");
    let rssMax = rssBefore;
    try {
      await until(
        () => {
          rssMax = Math.max(rssMax, a.rssBytes());
          return writers.outcomes.filter((o) => o.ok).length >= 20_000;
        },
        240_000,
        "20,000 writes",
      );
      await writers.stop();
      const h = await settle(others);
      (slow as unknown as { _socket: { resume(): void } })._socket.resume();
      await until(() => slowClose !== undefined || slowEvents.at(-1)?.version === h, 60_000, "the slow watcher to catch up or be closed");

      noDeaths();
      expect(rssMax - rssBefore, "gateway RSS growth while a watcher did not read").toBeLessThan(200 * 1024 * 1024);
      if (slowClose) {
        expect(slowClose.reason.length).toBeGreaterThan(0);
      } else {
        // It was resynced: a fresh snapshot after the first, and nothing after the head.
        expect(slowEvents.slice(1).some((e) => e.snapshot)).toBe(true);
        expect(slowEvents.at(-1)?.version).toBe(h);
      }
      for (const w of others) {
        expect(w.closes).toEqual([]);
        expect(gapsAndDuplicates(w, h)).toEqual([]);
      }
    } finally {
      await writers.stop();
      slow.terminate();
      await Promise.all(others.map((w) => w.dispose()));
    }
  }, 300_000);
});
