/** The watch hub against an in-memory store: ordering, index matching, overflow, resume. */
import { describe, expect, it } from "vitest";
import { deleteAt, mergeAt } from "../core/tree.ts";
import { type WatchEvent, createWatchHub } from "../core/watch.ts";
import { createMemoryStore } from "./helpers/memory-store.ts";

async function setup(maxBuffer = 1000) {
  const store = createMemoryStore();
  const hub = createWatchHub({ store, maxBuffer });
  await hub.start();
  const commit = (m: ReturnType<typeof mergeAt>) => store.commit(async () => m);
  return { store, hub, commit };
}

describe("watch hub", () => {
  it("starts with a snapshot consistent with its version, then delivers restricted changes", async () => {
    const { hub, commit } = await setup();
    await commit(mergeAt(["a", "b"], 1));
    const w = await hub.watch(["a"]);
    const snap = (await w.next()).value as WatchEvent;
    expect(snap).toMatchObject({ version: 1, snapshot: true });
    expect(JSON.parse(JSON.stringify(snap.mutation))).toEqual({ merge: { a: { b: 1 } }, delete: { a: true } });
    await commit(mergeAt(["x"], 1));
    await commit(deleteAt(["a", "b"]));
    const e = (await w.next()).value as WatchEvent;
    expect(e.version).toBe(3);
    expect(JSON.parse(JSON.stringify(e.mutation))).toEqual({ merge: {}, delete: { a: { b: true } } });
    w.close();
    expect(hub.size).toBe(0);
  });

  it("with no watch, commits cost no read of the log; a watch started later misses nothing", async () => {
    const { store, hub, commit } = await setup();
    let reads = 0;
    const changes = store.changes.bind(store);
    store.changes = (after, limit) => {
      reads++;
      return changes(after, limit);
    };
    await commit(mergeAt(["a"], 1));
    const { version } = await commit(mergeAt(["a"], 2));
    await hub.caughtUp(version);
    expect(hub.cursor).toBe(2);
    expect(reads).toBe(0);
    const w = await hub.watch(["a"]);
    expect(((await w.next()).value as WatchEvent).version).toBe(2);
    await commit(mergeAt(["a"], 3));
    const e = (await w.next()).value as WatchEvent;
    expect(e.version).toBe(3);
    expect(JSON.parse(JSON.stringify(e.mutation))).toEqual({ merge: { a: 3 }, delete: {} });
    w.close();
  });

  it("resuming while a commit lands between its log read and its version read is no trimmed log", async () => {
    const { store, hub, commit } = await setup();
    const { version: v } = await commit(mergeAt(["a"], 1));
    const changes = store.changes.bind(store);
    let landed = false;
    store.changes = async (after, limit) => {
      const page = await changes(after, limit);
      if (!landed) {
        landed = true;
        await commit(mergeAt(["a"], 2));
      }
      return page;
    };
    const w = await hub.watch(["a"], { since: v });
    const e = (await w.next()).value as WatchEvent;
    expect(e).toMatchObject({ version: v + 1, snapshot: false });
    w.close();
  });

  it("matches a change to watchers by walking the path index", async () => {
    const { hub, commit } = await setup();
    const paths = [[], ["a"], ["a", "b"], ["a", "b", "c"], ["a", "x"], ["z"]];
    const watches = await Promise.all(paths.map((p) => hub.watch(p)));
    for (const w of watches) await w.next(); // snapshots
    const { version } = await commit(mergeAt(["a", "b"], 5)); // leaf at a/b: replaces a/b/c
    await hub.caughtUp(version);
    const got = await Promise.all(
      watches.map(async (w, i) => {
        if (i === 4 || i === 5) return undefined; // a/x and z are untouched
        return JSON.parse(JSON.stringify(((await w.next()).value as WatchEvent).mutation));
      }),
    );
    expect(got[0]).toEqual({ merge: { a: { b: 5 } }, delete: {} });
    expect(got[1]).toEqual({ merge: { a: { b: 5 } }, delete: {} });
    expect(got[2]).toEqual({ merge: { a: { b: 5 } }, delete: {} });
    expect(got[3]).toEqual({ merge: {}, delete: { a: { b: { c: true } } } });
    // The untouched watchers hear the next change that concerns them, and only that.
    const next = await commit(mergeAt(["z", "q"], 1));
    expect(((await watches[5]!.next()).value as WatchEvent).version).toBe(next.version);
    for (const w of watches) w.close();
  });

  it("a watcher that falls behind its buffer gets a fresh snapshot, never a gap", async () => {
    const { hub, commit } = await setup(3);
    const w = await hub.watch(["s"]);
    expect(((await w.next()).value as WatchEvent).snapshot).toBe(true);
    let last = 0;
    for (let i = 0; i < 10; i++) last = (await commit(mergeAt(["s", `k${i}`], i))).version;
    await hub.caughtUp(last);
    const e = (await w.next()).value as WatchEvent;
    expect(e.snapshot).toBe(true);
    expect(e.version).toBe(last);
    expect(Object.keys((e.mutation.merge as { s: object }).s)).toHaveLength(10);
    w.close();
  });

  it("resumes from since with exactly the missed changes", async () => {
    const { hub, commit } = await setup();
    const v1 = (await commit(mergeAt(["r", "a"], 1))).version;
    const v2 = (await commit(mergeAt(["r", "b"], 2))).version;
    await commit(mergeAt(["other"], 1));
    const v4 = (await commit(deleteAt(["r"]))).version;
    const w = await hub.watch(["r"], { since: v1 });
    expect(((await w.next()).value as WatchEvent).version).toBe(v2);
    expect(((await w.next()).value as WatchEvent).version).toBe(v4);
    const v5 = (await commit(mergeAt(["r", "c"], 3))).version;
    expect(((await w.next()).value as WatchEvent).version).toBe(v5);
    w.close();
    await expect(hub.watch(["r"], { since: 999 })).rejects.toMatchObject({ code: "BAD_USER_INPUT" });
  });

  it("concurrent commits while watches start: no gap, no duplicate", async () => {
    const { hub, commit } = await setup();
    const writes = Array.from({ length: 200 }, (_, i) => commit(mergeAt(["c", `k${i % 7}`], i)));
    const w = await hub.watch(["c"]);
    const results = await Promise.all(writes);
    const last = Math.max(...results.map((r) => r.version));
    const snap = (await w.next()).value as WatchEvent;
    const seen: number[] = [];
    let v = snap.version;
    while (v < last) {
      v = ((await w.next()).value as WatchEvent).version;
      seen.push(v);
    }
    const expected = results.map((r) => r.version).filter((x) => x > snap.version).sort((a, b) => a - b);
    expect(seen).toEqual(expected);
    w.close();
    await hub.close();
  });
});
