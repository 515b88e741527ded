/**
 * The client's apply benchmark (called by `npm run bench`): a watch on a 10,000-leaf subtree
 * receives a stream of 1,000 remote changes through a scripted transport; measures the time from
 * the first change to the listener seeing the last one. No server: this is the client's cost.
 */
import { createClient } from "./client.ts";
import { memoryStorage } from "./storage.ts";
import type { Connection, Sink, Transport, WireEvent } from "./transport.ts";

export interface ClientApplyResult {
  leaves: number;
  changes: number;
  ms: number;
  changesPerSecond: number;
}

export async function benchClientApply(options: { leaves?: number; changes?: number } = {}): Promise<ClientApplyResult> {
  const leaves = options.leaves ?? 10_000;
  const changes = options.changes ?? 1_000;
  const path = ["bench", "items"];
  let sink: Sink<WireEvent> | undefined;
  const transport: Transport = {
    async connect() {
      const conn: Connection = {
        watch(_path, _since, s) {
          sink = s;
          return () => {};
        },
        write: () => Promise.reject(new Error("read-only bench")),
        close() {},
      };
      return conn;
    },
  };
  const client = createClient({ transport, storage: memoryStorage(), persistDelayMs: 60_000 });
  let done: () => void = () => {};
  const finished = new Promise<void>((r) => {
    done = r;
  });
  client.watch(path, (value) => {
    const last = (value as Record<string, unknown> | undefined)?.[`k${changes - 1}`];
    if (last === -1) done();
  });
  await client.ready;
  while (!sink) await new Promise((r) => setTimeout(r, 1));
  const items: Record<string, number> = {};
  for (let i = 0; i < leaves; i++) items[`k${i}`] = i;
  sink.next({ version: "1", snapshot: true, merge: { bench: { items } } as never, delete: { bench: { items: true } } as never });
  const start = performance.now();
  for (let i = 0; i < changes; i++) {
    sink.next({ version: String(i + 2), snapshot: false, merge: { bench: { items: { [`k${i}`]: i === changes - 1 ? -1 : -i } } } as never, delete: {} as never });
  }
  await finished;
  const ms = performance.now() - start;
  await client.close();
  return { leaves, changes, ms, changesPerSecond: Math.round((changes / ms) * 1000) };
}
