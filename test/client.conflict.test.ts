/**
 * `onConflict` (docs/client.md): a local write that loses to a later write per leaf is reported
 * with what lost and the winning value; a write that wins, and a later edit that merely follows a
 * committed write, are not conflicts.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Conflict } from "../client/index.ts";
import { pgliteTarget } from "./helpers/db.ts";
import { offlineClients } from "./helpers/offline.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer(pgliteTarget);
});
afterAll(async () => {
  await server?.close();
});
const { client, closeAll } = offlineClients(() => server.wsUrl);

/**
 * Waits until the wall clock passed the millisecond of `stamp` (an HLC stamp starts with 15 digits
 * of ms): two writes in one millisecond would be ordered by node id, not by when they were made.
 */
async function pastMs(stamp: string): Promise<void> {
  const ms = Number(stamp.slice(0, 15));
  const end = Date.now() + 1_000;
  while (Date.now() <= ms && Date.now() < end) await new Promise((r) => setTimeout(r, 1));
}
afterEach(closeAll);

describe("onConflict", () => {
  it("fires for a local offline write overwritten by a later remote one", async () => {
    const a = client();
    const b = client();
    const conflicts: Conflict[] = [];
    a.onConflict((c) => conflicts.push(c));
    a.watch(["c1"], () => {});
    b.watch(["c1"], () => {});
    await Promise.all([a.synced(), b.synced()]);
    a.disconnect();
    const mine = a.merge(["c1", "title"], "A's edit");
    void a.merge(["c1", "other"], "only A");
    await pastMs(a.queued().at(-1)!.ts);
    await b.merge(["c1", "title"], "B's later edit");
    a.connect();
    await mine;
    await a.synced();
    expect(a.get(["c1"])).toEqual({ title: "B's later edit", other: "only A" });
    expect(conflicts).toHaveLength(1);
    const [c] = conflicts as [Conflict];
    expect(c.lost).toEqual([{ path: ["c1", "title"], local: "A's edit", winner: "B's later edit" }]);
    expect(c.write.merge).toEqual({ c1: { title: "A's edit" } });
    expect(c.ts).toBe(c.write.ts);
  });

  it("does not fire when the local write is the later one, nor for a later edit after a commit", async () => {
    const a = client();
    const b = client();
    const conflicts: Conflict[] = [];
    a.onConflict((c) => conflicts.push(c));
    a.watch(["c2"], () => {});
    b.watch(["c2"], () => {});
    await Promise.all([a.synced(), b.synced()]);
    // B first, then A offline (later stamp): A wins on replay.
    a.disconnect();
    const theirs = await b.merge(["c2", "title"], "B's edit");
    await pastMs(theirs.ts);
    const mine = a.merge(["c2", "title"], "A's later edit");
    a.connect();
    await mine;
    await a.synced();
    expect(a.get(["c2", "title"])).toBe("A's later edit");
    // A commits, then B edits the same leaf later: ordinary collaboration, not a lost write.
    await a.merge(["c2", "body"], "A");
    await b.merge(["c2", "body"], "B after A");
    await b.synced();
    const end = Date.now() + 5_000;
    while (a.get(["c2", "body"]) !== "B after A" && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    expect(a.get(["c2", "body"])).toBe("B after A");
    expect(conflicts).toEqual([]);
  });
});

describe("watch listeners", () => {
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
