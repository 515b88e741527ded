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
