/**
 * The offline client's convergence property (docs/client.md): 3 clients and the server, random
 * schedules of writes, deletes, disconnects, reconnects, restarts and cut replies. Once everyone
 * is back online and the queues drained, every replica equals the server's tree, and the server's
 * tree is every write applied in timestamp order (each leaf holds the latest write by stamp).
 *
 * The schedules run the real client code against the real gateway, store (PGlite), conflict
 * resolution and watch hub through the in-process transport (client/inprocess.ts), which is
 * what makes hundreds of schedules fit in CI; test/client.e2e.test.ts runs the same client over
 * real WebSockets.
 */
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { type KoraClient, createClient, memoryStorage } from "../client/index.ts";
import { type InProcessTransport, inProcessTransport } from "../client/inprocess.ts";
import { type Gateway, createGateway, silentLogger } from "../core/gateway.ts";
import type { Store } from "../core/store.ts";
import { applyMutation, deleteAt, emptyTree, getNode, inflate, mergeAt, mutationFromInput, restrict } from "../core/tree.ts";
import type { DeleteTree, Mutation, Tree } from "../core/types.ts";
import { pgliteTarget } from "./helpers/db.ts";

const RUNS = Number(process.env.KORA_CLIENT_RUNS ?? 200);

const key = fc.constantFrom("a", "b", "c");
const path = fc.array(key, { minLength: 1, maxLength: 3 });
const leaf = fc.integer({ min: 0, max: 99 });
const value = fc.oneof(leaf, fc.dictionary(key, leaf, { minKeys: 1, maxKeys: 2 }));
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(path, value).map(([p, v]) => mergeAt(p, v)) },
  { weight: 2, arbitrary: path.map((p) => deleteAt(p)) },
  {
    weight: 1,
    arbitrary: fc.tuple(path, path, value).map(([d, p, v]) => mutationFromInput({ delete: deleteAt(d).delete, merge: mergeAt(p, v).merge })),
  },
);
const client = fc.integer({ min: 0, max: 2 });
type Action =
  | { t: "write"; c: number; m: Mutation }
  | { t: "offline" | "online" | "restart" | "cut"; c: number }
  | { t: "wait"; ticks: number };
const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant("write" as const), c: client, m: mutation }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("offline" as const), c: client }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("online" as const), c: client }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("restart" as const), c: client }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("cut" as const), c: client }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("wait" as const), ticks: fc.integer({ min: 1, max: 6 }) }) },
);

const tick = () => new Promise<void>((r) => setImmediate(r));
const disposers: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const d of disposers) await d();
});

let shared: Promise<{ gateway: Gateway; store: Store }> | undefined;
let run = 0;

/** One store and gateway for every schedule; each schedule works under its own top-level key. */
async function runSchedule(actions: Action[]): Promise<void> {
  shared ??= (async () => {
    const { store, dispose } = await pgliteTarget.create();
    const gateway = await createGateway({ store, log: silentLogger, retention: { intervalMs: 0 } });
    disposers.push(async () => {
      await gateway.close();
      await dispose();
    });
    return { gateway, store };
  })();
  const { gateway, store } = await shared;
  const root = `run${++run}`;
  const under = (m: Mutation): Mutation => ({ merge: inflate([root], m.merge) as Tree, delete: inflate([root], m.delete) as DeleteTree });
  {
    const storages = [memoryStorage(), memoryStorage(), memoryStorage()];
    const transports: InProcessTransport[] = storages.map(() => inProcessTransport(gateway));
    const make = (i: number) =>
      createClient({ storage: storages[i]!, transport: transports[i]!, backoff: { initialMs: 1, maxMs: 5 }, persistDelayMs: 1 });
    const clients: KoraClient[] = storages.map((_, i) => make(i));
    const stops = clients.map((c) => c.watch([root], () => {}));
    const writes: { m: Mutation; ts: string }[] = [];
    for (const c of clients) await c.ready;
    for (const a of actions) {
      if (a.t === "wait") {
        for (let i = 0; i < a.ticks; i++) await tick();
        continue;
      }
      const c = clients[a.c]!;
      if (a.t === "write") {
        const m = under(a.m);
        void c.mutate({ merge: m.merge, delete: m.delete }).catch(() => {});
        const w = c.queued().at(-1)!;
        writes.push({ m: { merge: w.merge, delete: w.delete }, ts: w.ts });
      } else if (a.t === "offline") transports[a.c]!.setOnline(false);
      else if (a.t === "online") transports[a.c]!.setOnline(true);
      else if (a.t === "cut") transports[a.c]!.cutAfterNextCommit();
      else if (a.t === "restart") {
        stops[a.c]!();
        await c.close();
        clients[a.c] = make(a.c);
        await clients[a.c]!.ready;
        stops[a.c] = clients[a.c]!.watch([root], () => {});
      }
      await tick();
    }
    // Everyone back online; queues drain; every watch reaches the server's version.
    for (const t of transports) t.setOnline(true);
    for (const c of clients) c.connect();
    const deadline = Date.now() + 20_000;
    for (;;) {
      const version = await lastVersionUnder(store, root);
      const done = clients.every(
        (c) => c.status.value === "online" && c.cursors().every((s) => s.since !== undefined && Number(s.since) >= version),
      );
      if (done) break;
      if (Date.now() > deadline) throw new Error(`not converged: ${clients.map((c) => `${c.status.value}/${c.pending.value}/${JSON.stringify(c.cursors())}`).join(" ")} server ${version}`);
      await new Promise((r) => setTimeout(r, 2));
    }
    // The watches' cursors are per subtree: wait for the server's last change under `root`.
    const server = ((await store.read([{ path: [] }])).values[0] ?? emptyTree()) as Tree;
    let expected = emptyTree();
    for (const w of [...writes].sort((x, y) => (x.ts < y.ts ? -1 : 1))) expected = applyMutation(expected, w.m);
    expected = (getNode(expected, [root]) ?? emptyTree()) as Tree;
    const serverRoot = getNode(server, [root]) ?? emptyTree();
    expect(plain(serverRoot)).toEqual(plain(expected));
    for (const c of clients) expect(plain(c.get([root]) ?? {})).toEqual(plain(serverRoot));
    for (const c of clients) await c.close();
  }
}

/** The version of the last change that touched `[root]`. */
async function lastVersionUnder(store: Store, root: string): Promise<number> {
  const current = await store.version();
  const changes = await store.changes(Math.max(0, current - 200), 200);
  let last = 0;
  for (const c of changes) if (restrict(c.mutation, [root]) !== null) last = c.version;
  return last;
}

const plain = (x: unknown) => JSON.parse(JSON.stringify(x));

describe("offline client convergence (3 clients + server, in-process transport)", () => {
  it(`converges and keeps the latest write per leaf over ${RUNS} random schedules`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 1, maxLength: 24 }), (actions) => runSchedule(actions)),
      { numRuns: RUNS },
    );
  }, 600_000);
});
