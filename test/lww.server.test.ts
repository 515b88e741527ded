/**
 * Conflict resolution through the real server (docs/conflicts.md): `ts` and `writeId` on writes,
 * per-leaf last-writer-wins whatever the arrival order, idempotent retries, bounded clocks.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatStamp } from "../core/hlc.ts";
import { storeTargets } from "./helpers/db.ts";
import { http, ok, read, startTestServer, type TestServer } from "./helpers/server.ts";

const MUTATE = `mutation($merge: JSONObject, $delete: JSONObject, $ts: String, $writeId: String) {
  mutate(merge: $merge, delete: $delete, ts: $ts, writeId: $writeId) { version merge delete ts } }`;
const MERGE = `mutation($path: [String!]!, $value: JSON!, $ts: String, $writeId: String) {
  merge(path: $path, value: $value, ts: $ts, writeId: $writeId) { version merge delete ts } }`;
const DELETE = `mutation($path: [String!]!, $ts: String, $writeId: String) {
  delete(path: $path, ts: $ts, writeId: $writeId) { version merge delete ts } }`;

interface Result {
  version: string;
  merge: Record<string, unknown>;
  delete: Record<string, unknown>;
  ts: string | null;
}

const now = Date.now();
const at = (ms: number, node = "c1") => formatStamp(now + ms, 0, node);

for (const target of storeTargets()) {
  describe(`conflicts on ${target.name}`, () => {
    let server: TestServer;
    beforeAll(async () => {
      server = await startTestServer(target);
    });
    afterAll(async () => server?.close());

    const merge = async (path: string[], value: unknown, ts?: string, writeId?: string) =>
      (await ok<{ merge: Result }>(server.url, MERGE, { path, value, ts, writeId })).merge;
    const del = async (path: string[], ts?: string, writeId?: string) =>
      (await ok<{ delete: Result }>(server.url, DELETE, { path, ts, writeId })).delete;

    it("keeps the latest write per leaf whatever the arrival order, deletes included", async () => {
      await merge(["t1", "a"], 2, at(-1000));
      const lost = await merge(["t1", "a"], 1, at(-2000));
      expect(lost.merge).toEqual({});
      expect(await read(server.url, ["t1"])).toEqual({ a: 2 });
      // A delete made later wins over a merge that arrives after it.
      await del(["t1"], at(-500));
      await merge(["t1", "b"], 3, at(-900));
      expect(await read(server.url, ["t1"])).toBeNull();
      // A delete made earlier than a leaf removes only what is older.
      await merge(["t2"], { old: 1 }, at(-3000, "c2"));
      await merge(["t2", "new"], 2, at(-1000, "c2"));
      const partial = await del(["t2"], at(-2000, "c3"));
      expect(partial.delete).toEqual({ t2: { old: true } });
      expect(await read(server.url, ["t2"])).toEqual({ new: 2 });
      // Writes without ts are stamped by the server and win.
      const plain = await merge(["t2", "new"], 5);
      expect(plain.ts).toMatch(/^\d{15}:/);
      expect(await read(server.url, ["t2"])).toEqual({ new: 5 });
    });

    it("answers a replayed writeId with the first result and commits nothing again", async () => {
      const first = (
        await ok<{ mutate: Result }>(server.url, MUTATE, { merge: { r: { n: 1 } }, ts: at(-100), writeId: "w-replay-1" })
      ).mutate;
      await merge(["r", "n"], 7);
      const again = (
        await ok<{ mutate: Result }>(server.url, MUTATE, { merge: { r: { n: 1 } }, ts: at(-100), writeId: "w-replay-1" })
      ).mutate;
      expect(again).toEqual(first);
      expect(await read(server.url, ["r"])).toEqual({ n: 7 });
    });

    it("names, for each part that lost, the stamp of the write that beat it, tombstones included", async () => {
      const LOST = `mutation($merge: JSONObject, $delete: JSONObject, $ts: String, $writeId: String) {
        mutate(merge: $merge, delete: $delete, ts: $ts, writeId: $writeId) { merge delete lost { path winnerTs } } }`;
      type Lost = { merge: Record<string, unknown>; delete: Record<string, unknown>; lost: { path: string[]; winnerTs: string }[] };
      const mutate = async (vars: { merge?: unknown; delete?: unknown; ts?: string; writeId?: string }) =>
        (await ok<{ mutate: Lost }>(server.url, LOST, vars)).mutate;
      // A later leaf at the path.
      await merge(["l1", "a"], 2, at(-1000, "w1"));
      expect((await mutate({ merge: { l1: { a: 1 } }, ts: at(-2000) })).lost).toEqual([{ path: ["l1", "a"], winnerTs: at(-1000, "w1") }]);
      // A later delete above the path: its tombstone's stamp.
      await merge(["l2", "b", "x"], 0, at(-3000, "w1"));
      await del(["l2", "b"], at(-500, "w2"));
      expect((await mutate({ merge: { l2: { b: { x: 1 } } }, ts: at(-900) })).lost).toEqual([{ path: ["l2", "b", "x"], winnerTs: at(-500, "w2") }]);
      // A later leaf at an ancestor (an object cannot be merged under it).
      await merge(["l3"], "leaf", at(-500, "w3"));
      expect((await mutate({ merge: { l3: { x: 1 } }, ts: at(-900) })).lost).toEqual([{ path: ["l3", "x"], winnerTs: at(-500, "w3") }]);
      // A delete that a later leaf survives: that leaf's stamp; the older leaf is deleted.
      await merge(["l4"], { old: 1 }, at(-3000, "w1"));
      await merge(["l4", "new"], 2, at(-1000, "w4"));
      const partial = await mutate({ delete: { l4: true }, ts: at(-2000) });
      expect(partial.delete).toEqual({ l4: { old: true } });
      expect(partial.lost).toEqual([{ path: ["l4"], winnerTs: at(-1000, "w4") }]);
      // Parts beaten by different writes each name their own; the part that won is not listed.
      await merge(["l5", "p"], 1, at(-800, "w5"));
      await merge(["l5", "q"], 1, at(-700, "w6"));
      const mixed = await mutate({ merge: { l5: { p: 2, q: 2, r: 2 } }, ts: at(-900), writeId: "w-lost-1" });
      expect(mixed.merge).toEqual({ l5: { r: 2 } });
      expect(mixed.lost).toEqual([
        { path: ["l5", "p"], winnerTs: at(-800, "w5") },
        { path: ["l5", "q"], winnerTs: at(-700, "w6") },
      ]);
      // A replay of that write id answers with the same parts and winners.
      expect(await mutate({ merge: { l5: { p: 2, q: 2, r: 2 } }, ts: at(-900), writeId: "w-lost-1" })).toEqual(mixed);
      // A write that wins, stamped or not, lost nothing.
      expect((await mutate({ merge: { l5: { p: 3 } }, ts: at(-100) })).lost).toEqual([]);
      expect((await mutate({ merge: { l5: { q: 3 } } })).lost).toEqual([]);
    });

    it("bounds a clock far ahead and rejects a write older than the tombstone horizon", async () => {
      const future = formatStamp(now + 3_600_000, 0, "fast");
      const r = await merge(["f"], 1, future);
      expect(r.ts).not.toBe(future);
      expect(r.ts! < future).toBe(true);
      await merge(["f"], 2); // a later server stamp wins over the bounded write
      expect(await read(server.url, ["f"])).toBe(2);
      const old = await http(server.url, MERGE, { path: ["o"], value: 1, ts: formatStamp(now - 90 * 86_400_000, 0, "old") });
      expect(old.errors?.[0]?.extensions?.code).toBe("CONFLICT");
      const bad = await http(server.url, MERGE, { path: ["o"], value: 1, ts: "yesterday" });
      expect(bad.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
    });
  });
}
