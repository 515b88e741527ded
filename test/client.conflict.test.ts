/**
 * `onConflict` (docs/client.md): a local write that loses to a later write per leaf is reported
 * with what lost and the winning value; a write that wins, and a later edit that merely follows a
 * committed write, are not conflicts.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Conflict, KoraClient } from "../client/index.ts";
import { pgliteTarget, storeTargets } from "./helpers/db.ts";
import { droppingSocket, offlineClients } from "./helpers/offline.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

/**
 * Waits until the wall clock passed the millisecond of `stamp` (an HLC stamp starts with 15 digits
 * of ms): two writes in one millisecond would be ordered by node id, not by when they were made.
 */
async function pastMs(stamp: string): Promise<void> {
  const ms = Number(stamp.slice(0, 15));
  const end = Date.now() + 1_000;
  while (Date.now() <= ms && Date.now() < end) await new Promise((r) => setTimeout(r, 1));
}

for (const target of storeTargets()) {
  describe(`onConflict on ${target.name}`, () => {
    let server: TestServer;
    beforeAll(async () => {
      server = await startTestServer(target);
    });
    afterAll(async () => {
      await server?.close();
    });
    const { client, closeAll } = offlineClients(() => server.wsUrl);
    afterEach(closeAll);

    /** Two connected clients watching `path`, and the conflicts the first one reports. */
    async function pair(path: string[], options: Parameters<typeof client>[0] = {}) {
      const a = client(options);
      const b = client();
      const conflicts: Conflict[] = [];
      a.onConflict((c) => conflicts.push(c));
      a.watch(path, () => {});
      b.watch(path, () => {});
      await Promise.all([a.synced(), b.synced()]);
      return { a, b, conflicts };
    }
    /** The stamp of `a`'s newest queued write. */
    const lastTs = (a: KoraClient) => a.queued().at(-1)?.ts as string;

    it("fires for a local offline write overwritten by a later remote one, with both stamps", async () => {
      const { a, b, conflicts } = await pair(["c1"]);
      a.disconnect();
      const mine = a.merge(["c1", "title"], "A's edit");
      const mineTs = lastTs(a);
      void a.merge(["c1", "other"], "only A");
      await pastMs(lastTs(a));
      const theirs = await b.merge(["c1", "title"], "B's later edit");
      a.connect();
      await mine;
      await a.synced();
      expect(a.get(["c1"])).toEqual({ title: "B's later edit", other: "only A" });
      expect(conflicts).toHaveLength(1);
      const [c] = conflicts as [Conflict];
      expect(c.lost).toEqual([
        { path: ["c1", "title"], local: "A's edit", winner: "B's later edit", winnerTs: theirs.ts },
      ]);
      expect(c.write.merge).toEqual({ c1: { title: "A's edit" } });
      expect(c.ts).toBe(c.write.ts);
      expect(c.ts).toBe(mineTs);
      expect(c.winnerTs).toBe(theirs.ts);
      expect(c.winnerTs! > c.ts).toBe(true);
    });

    it("reports the stamp of a later delete that a local write lost to", async () => {
      const { a, b, conflicts } = await pair(["c3"]);
      await b.merge(["c3", "keep"], "x");
      await a.synced();
      a.disconnect();
      const mine = a.merge(["c3", "title"], "A's edit");
      await pastMs(lastTs(a));
      const theirs = await b.delete(["c3"]);
      a.connect();
      const committed = await mine;
      await a.synced();
      expect(committed.committed?.mutation.merge).toEqual({});
      expect(a.get(["c3"])).toBeUndefined();
      expect(conflicts).toHaveLength(1);
      const [c] = conflicts as [Conflict];
      expect(c.lost).toEqual([
        { path: ["c3", "title"], local: "A's edit", winner: undefined, winnerTs: theirs.ts },
      ]);
      expect(c.ts).toBe(committed.ts);
      expect(c.winnerTs).toBe(theirs.ts);
      expect(c.winnerTs! > c.ts).toBe(true);
    });

    it("names each part's own winner, the latest on top, and a delete beaten by a later leaf", async () => {
      const { a, b, conflicts } = await pair(["c4"]);
      const c = client();
      c.watch(["c4"], () => {});
      await c.synced();
      await b.merge(["c4", "gone", "old"], 1);
      await a.synced();
      a.disconnect();
      const mine = a.mutate({ merge: { c4: { p: "A", q: "A", r: "A" } } });
      const mineDelete = a.delete(["c4", "gone"]);
      await pastMs(lastTs(a));
      const first = await b.merge(["c4", "p"], "B");
      await pastMs(first.ts);
      const second = await c.merge(["c4", "q"], "C");
      const third = await b.merge(["c4", "gone", "new"], "B");
      a.connect();
      await Promise.all([mine, mineDelete]);
      await a.synced();
      expect(a.get(["c4"])).toEqual({ p: "B", q: "C", r: "A", gone: { new: "B" } });
      expect(conflicts).toHaveLength(2);
      const [merged, deleted] = conflicts as [Conflict, Conflict];
      expect(merged.lost).toEqual([
        { path: ["c4", "p"], local: "A", winner: "B", winnerTs: first.ts },
        { path: ["c4", "q"], local: "A", winner: "C", winnerTs: second.ts },
      ]);
      expect(second.ts > first.ts).toBe(true);
      expect(merged.winnerTs).toBe(second.ts);
      // The delete removed the older leaf, not the later one: it lost in part, to that leaf.
      expect(deleted.lost).toEqual([
        { path: ["c4", "gone"], local: undefined, winner: { new: "B" }, winnerTs: third.ts },
      ]);
      expect(deleted.winnerTs).toBe(third.ts);
      expect(deleted.ts < deleted.winnerTs!).toBe(true);
    });

    it("still names the winner when the reply was lost and the write is answered as a replay", async () => {
      const state = { dropNextReply: false, dropped: 0 };
      const { a, b, conflicts } = await pair(["c5"], { webSocketImpl: droppingSocket(state) });
      a.disconnect();
      // Part of it wins (a change row with its write id exists, so the retry is a replay).
      const mine = a.mutate({ merge: { c5: { title: "A's edit", other: "A" } } });
      await pastMs(lastTs(a));
      const theirs = await b.merge(["c5", "title"], "B's later edit");
      state.dropNextReply = true;
      a.connect();
      const committed = await mine;
      await a.synced();
      expect(state.dropped).toBe(1);
      expect(committed.committed?.mutation.merge).toEqual({ c5: { other: "A" } });
      expect(conflicts).toHaveLength(1);
      const [c] = conflicts as [Conflict];
      expect(c.lost).toEqual([
        { path: ["c5", "title"], local: "A's edit", winner: "B's later edit", winnerTs: theirs.ts },
      ]);
      expect(c.winnerTs).toBe(theirs.ts);
    });

    it("does not fire when the local write is the later one, nor for a later edit after a commit", async () => {
      const { a, b, conflicts } = await pair(["c2"]);
      // B first, then A offline (later stamp): A wins on replay.
      a.disconnect();
      const theirs = await b.merge(["c2", "title"], "B's edit");
      await pastMs(theirs.ts);
      const mine = a.merge(["c2", "title"], "A's later edit");
      a.connect();
      const committed = await mine;
      await a.synced();
      expect(a.get(["c2", "title"])).toBe("A's later edit");
      expect(committed.committed?.lost).toBeUndefined();
      // A commits, then B edits the same leaf later: ordinary collaboration, not a lost write.
      await a.merge(["c2", "body"], "A");
      await b.merge(["c2", "body"], "B after A");
      await b.synced();
      const end = Date.now() + 5_000;
      while (a.get(["c2", "body"]) !== "B after A" && Date.now() < end)
        await new Promise((r) => setTimeout(r, 10));
      expect(a.get(["c2", "body"])).toBe("B after A");
      expect(conflicts).toEqual([]);
    });
  });
}

describe("watch listeners", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(pgliteTarget);
  });
  afterAll(async () => {
    await server?.close();
  });
  const { client, closeAll } = offlineClients(() => server.wsUrl);
  afterEach(closeAll);

  it("are called once with the loaded value, then only when the value changes", async () => {
    const { memoryStorage } = await import("../client/index.ts");
    const storage = memoryStorage();
    const first = client({ storage, startOffline: true });
    await first.ready;
    void first.merge(["w", "a"], 1);
    await first.close();
    const second = client({ storage, startOffline: true });
    const calls: unknown[] = [];
    second.watch(["w"], (v) => calls.push(v)); // before `ready`
    await second.ready;
    await second.flush();
    expect(calls).toEqual([{ a: 1 }]);
    void second.merge(["elsewhere"], 1); // another subtree: no call
    void second.merge(["w", "b"], 2);
    expect(calls).toEqual([{ a: 1 }, { a: 1, b: 2 }]);
  });
});
