/**
 * The embedded store does not stall the gateway (issue 8; docs/storage.md, "PGlite off the event
 * loop"): while a 100,000-leaf merge commits on PGlite, reads of other keys and new watches of
 * other paths are answered within 500 ms. A timing bound, so it lives in the fault suite's project,
 * which runs one file at a time: in `npm test` another suite on the other core would share the
 * machine with it.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import type { Client } from "graphql-ws";
import { afterEach, describe, expect, it } from "vitest";
import { wsClient } from "../helpers/clients.ts";
import { pgliteTarget } from "../helpers/db.ts";
import { EventQueue } from "../helpers/events.ts";
import { MERGE, PATH, WATCH, type TestServer, http, merge, startTestServer } from "../helpers/server.ts";

const LEAVES = 100_000;
const BOUND_MS = 500;

describe("a 100,000-leaf merge on PGlite", () => {
  let server: TestServer | undefined;
  let client: Client | undefined;
  afterEach(async () => {
    await client?.dispose();
    await server?.close();
    client = undefined;
    server = undefined;
  });

  it(`leaves reads of other keys and new watches of other paths answered within ${BOUND_MS} ms`, { timeout: 180_000 }, async () => {
    server = await startTestServer(pgliteTarget);
    const { url } = server;
    await merge(url, ["other", "key"], "untouched");
    await merge(url, ["elsewhere", "x"], 1);
    const big: Record<string, number> = {};
    for (let i = 0; i < LEAVES; i++) big[`k${String(i).padStart(6, "0")}`] = i;

    const lag = monitorEventLoopDelay({ resolution: 10 });
    lag.enable();
    let done = false;
    // The body is built before the clock starts: only the gateway's work is measured.
    const body = JSON.stringify({
      query: MERGE.replace("{ version merge delete }", "{ version }"),
      variables: { path: ["big"], value: big },
    });
    lag.reset();
    const started = performance.now();
    const writing = fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    })
      .then((res) => res.json() as Promise<{ errors?: unknown }>)
      .finally(() => {
        done = true;
      });

    // Reads one after the other for as long as the merge runs (bounded: it ends within the
    // test's timeout), each timed on its own.
    // A read of the path being written, sent mid-merge: it waits for the commit (or comes
    // before it), and never sees part of the merge.
    let inside: Promise<unknown> | undefined;
    const readTimes: number[] = [];
    const watchTimes: number[] = [];
    client = wsClient(server.wsUrl);
    for (let i = 0; !done && i < 10_000; i++) {
      const t0 = performance.now();
      const r = await http<{ path: unknown }>(url, PATH, { path: ["other"] });
      expect(r.errors).toBeUndefined();
      expect(r.data?.path).toEqual({ key: "untouched" });
      if (!done) readTimes.push(performance.now() - t0);
      if (readTimes.length === 2) inside ??= http<{ path: Record<string, number> | null }>(url, PATH, { path: ["big"] });

      // A watch of another path started now gets its snapshot (its first event) in time.
      const events = new EventQueue<{ snapshot: boolean; merge: unknown }>();
      const t1 = performance.now();
      const stop = client.subscribe<{ watch: { snapshot: boolean; merge: unknown } }>(
        { query: WATCH, variables: { path: ["elsewhere"] } },
        {
          next: (m) => events.push(m.data?.watch as { snapshot: boolean; merge: unknown }),
          error: (e) => events.fail(e),
          complete: () => {},
        },
      );
      const first = await events.next();
      stop();
      expect(first).toMatchObject({ snapshot: true, merge: { elsewhere: { x: 1 } } });
      if (!done) watchTimes.push(performance.now() - t1);
    }
    const result = await writing;
    lag.disable();
    const mergeMs = performance.now() - started;
    expect(result.errors).toBeUndefined();
    const worst = (xs: number[]) => Math.round(Math.max(...xs));
    console.log(
      `100,000-leaf merge: ${Math.round(mergeMs)} ms; ${readTimes.length} reads during it, slowest ${worst(readTimes)} ms; ` +
        `${watchTimes.length} new watches, slowest ${worst(watchTimes)} ms; event loop blocked at most ${Math.round(lag.max / 1e6)} ms`,
    );
    // The merge must have been long enough for the reads to prove something.
    expect(readTimes.length).toBeGreaterThanOrEqual(3);
    expect(watchTimes.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...readTimes)).toBeLessThan(BOUND_MS);
    expect(Math.max(...watchTimes)).toBeLessThan(BOUND_MS);

    const seen = ((await inside) as { data?: { path: Record<string, number> | null } } | undefined)?.data?.path;
    expect(seen === null || Object.keys(seen ?? {}).length === LEAVES).toBe(true);

    // And it committed whole, as one version.
    const read = await http<{ path: Record<string, number> }>(url, PATH, { path: ["big"] });
    expect(Object.keys(read.data?.path ?? {}).length).toBe(LEAVES);
  });
});

