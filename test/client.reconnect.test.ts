/**
 * The offline client sends its queued writes again on a new connection even when the write in
 * flight on the old one settles only after the new connection is up (a slow commit: PGlite in
 * its worker, a busy database). It used to find its send loop still running, return, and stay
 * "syncing" with the write queued forever.
 */
import { afterEach, expect, it } from "vitest";
import { type KoraClient, createClient, memoryStorage } from "../client/index.ts";
import { inProcessTransport } from "../client/inprocess.ts";
import { type Gateway, createGateway, silentLogger } from "../core/gateway.ts";
import { createInterceptorChain } from "../interceptors/chain.ts";
import type { Interceptor } from "../interceptors/types.ts";
import { DEFAULT_LIMITS } from "../core/types.ts";
import { pgliteTarget } from "./helpers/db.ts";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Resolves when the client's status is (or becomes) `want`; the listener may be called at once. */
function statusBecomes(client: KoraClient, want: string): Promise<void> {
  return new Promise<void>((resolve) => {
    let stop: (() => void) | undefined;
    let seen = false;
    stop = client.status.subscribe((s) => {
      if (s !== want || seen) return;
      seen = true;
      resolve();
      stop?.(); // undefined while subscribe() itself calls the listener: handled below
    });
    if (seen) stop();
  });
}

it("resends a write whose old connection's reply comes after the reconnection", async () => {
  const { store, dispose } = await pgliteTarget.create();
  let release!: () => void;
  const held = new Promise<void>((r) => {
    release = r;
  });
  let entered!: () => void;
  const inHook = new Promise<void>((r) => {
    entered = r;
  });
  let first = true;
  // The first commit waits in its hook until released: its reply comes late.
  const slow: Interceptor = {
    path: ["r", "**"],
    async beforeMutation() {
      if (!first) return;
      first = false;
      entered();
      await held;
    },
  };
  const pipeline = createInterceptorChain({ interceptors: [slow], limits: DEFAULT_LIMITS, log: silentLogger });
  const gateway: Gateway = await createGateway({ store, log: silentLogger, pipeline, retention: { intervalMs: 0 } });
  cleanups.push(async () => {
    await gateway.close();
    await dispose();
  });
  const transport = inProcessTransport(gateway);
  const client = createClient({ storage: memoryStorage(), transport, backoff: { initialMs: 1, maxMs: 5 }, persistDelayMs: 1 });
  cleanups.push(() => client.close());
  await client.ready;
  await statusBecomes(client, "online");

  const written = client.merge(["r", "a"], 1);
  await inHook;
  transport.setOnline(false); // the connection is cut while the write commits
  transport.setOnline(true);
  // The client reconnects while the first write is still in its hook.
  await statusBecomes(client, "syncing");
  release(); // the old connection's write commits now; its reply is lost (the connection is gone)
  const result = await written; // resent on the new connection: an idempotent replay
  expect(result.committed?.version).toBe(1);
  expect(client.pending.value).toBe(0);
  expect((await store.read([{ path: ["r"] }])).values[0]).toEqual({ a: 1 });
});
