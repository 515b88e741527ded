/**
 * The offline client over real WebSockets against a real server (docs/client.md): restart while
 * offline with file storage, a reply lost after commit, a rejected replay, stored subscriptions,
 * and a few random schedules end to end (the 200-schedule property runs in-process).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KoraClient, WriteError } from "../client/index.ts";
import { fileStorage } from "../client/file.ts";
import { KoraError } from "../core/errors.ts";
import type { Interceptor } from "../interceptors/types.ts";
import { pgliteTarget } from "./helpers/db.ts";
import { droppingSocket, offlineClients } from "./helpers/offline.ts";
import { merge, read, startTestServer, type TestServer } from "./helpers/server.ts";

let server: TestServer;
let dir: string;

beforeAll(async () => {
  // A small depth limit on the server lets a client queue a write offline that the server rejects;
  // so does this interceptor: once `locked/<room>/closed` is set, writes to that room are refused.
  const lock: Interceptor = {
    name: "room lock",
    path: ["locked", "$room", "**"],
    async beforeMutation({ captures, data, internal }) {
      if (internal) return;
      if ((await data(["locked", captures.room as string, "closed"])) === true) {
        throw new KoraError("FORBIDDEN", `room ${captures.room} is closed`);
      }
    },
  };
  server = await startTestServer(pgliteTarget, { limits: { maxDepth: 6 }, interceptors: [lock] });
  dir = await mkdtemp(join(tmpdir(), "kora-client-"));
});
afterAll(async () => {
  await closeAll();
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

const { client, closeAll } = offlineClients(() => server.wsUrl);

const until = async (check: () => boolean | Promise<boolean>, what: string, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe("offline client over WebSocket", () => {
  it("restarted offline with file storage shows its data and pending writes, then syncs them once", async () => {
    const storage = fileStorage(join(dir, "restart"));
    const a = client({ storage });
    const seen: unknown[] = [];
    a.watch(["restart"], (v) => seen.push(v));
    await merge(server.url, ["restart", "server"], 1);
    await until(() => a.get(["restart", "server"]) === 1, "the server's data");
    a.disconnect();
    void a.merge(["restart", "offline1"], "x").catch(() => {});
    void a.merge(["restart", "offline2"], { deep: true });
    expect(a.pending.value).toBe(2);
    expect(a.status.value).toBe("offline");
    await a.close();

    const b = client({ storage, startOffline: true });
    await b.ready;
    b.watch(["restart"], () => {});
    expect(b.get(["restart"])).toEqual({ server: 1, offline1: "x", offline2: { deep: true } });
    expect(b.pending.value).toBe(2);
    const before = await server.kora.gateway.store.version();
    b.connect();
    await b.synced();
    expect(await read(server.url, ["restart"])).toEqual({
      server: 1,
      offline1: "x",
      offline2: { deep: true },
    });
    expect(await server.kora.gateway.store.version()).toBe(before + 2); // each write committed once
    expect(b.pending.value).toBe(0);
    expect(seen[0]).toBeUndefined();
  });

  it("retries a write whose reply was lost after commit without applying it twice", async () => {
    const state = { dropNextReply: true, dropped: 0 };
    const c = client({ webSocketImpl: droppingSocket(state) });
    c.watch(["cut"], () => {});
    await c.synced();
    const before = await server.kora.gateway.store.version();
    const committed = await c.merge(["cut", "n"], 1);
    expect(state.dropped).toBe(1);
    expect(committed.committed?.version).toBe(before + 1);
    await c.synced();
    expect(await server.kora.gateway.store.version()).toBe(before + 1);
    const changes = await server.kora.gateway.store.changes(before, 10);
    expect(changes).toHaveLength(1);
    expect(c.get(["cut"])).toEqual({ n: 1 });
  });

  it("rolls back a replayed write the server now rejects, and reports it", async () => {
    const c = client();
    const errors: WriteError[] = [];
    c.onError((e) => errors.push(e));
    c.watch(["rej"], () => {});
    await c.synced();
    c.disconnect();
    void c.merge(["rej", "ok"], 1);
    // Deeper than the server's limit of 6 levels: accepted locally, refused on replay.
    const refused = c.merge(["rej", "a", "b", "c", "d", "e", "f"], 1);
    expect(c.get(["rej", "a", "b", "c", "d", "e", "f"])).toBe(1);
    c.connect();
    await expect(refused).rejects.toMatchObject({ code: "BAD_USER_INPUT" });
    await c.synced();
    expect(errors).toHaveLength(1);
    expect(errors[0]?.error.code).toBe("BAD_USER_INPUT");
    expect(c.get(["rej"])).toEqual({ ok: 1 });
    expect(await read(server.url, ["rej"])).toEqual({ ok: 1 });
  });

  it("rolls back a replayed write an interceptor now refuses, keeps the others, and reports it", async () => {
    const c = client();
    const errors: WriteError[] = [];
    c.onError((e) => errors.push(e));
    const values: unknown[] = [];
    c.watch(["locked", "r1"], (v) => values.push(v));
    await c.synced();
    c.disconnect();
    const before = c.merge(["locked", "r1", "before"], "queued first");
    const refused = c.merge(["locked", "r1", "late"], "written offline");
    expect(c.get(["locked", "r1"])).toEqual({ before: "queued first", late: "written offline" });
    // While the client is offline, someone closes the room; the queued writes replay after it.
    await server.kora.gateway.commit({ merge: { locked: { r1: { closed: true } } }, delete: {} });
    c.connect();
    await expect(before).rejects.toMatchObject({ code: "FORBIDDEN" });
    await expect(refused).rejects.toMatchObject({ code: "FORBIDDEN" });
    await c.synced();
    expect(errors.map((e) => [e.error.code, e.write.merge])).toEqual([
      ["FORBIDDEN", { locked: { r1: { before: "queued first" } } }],
      ["FORBIDDEN", { locked: { r1: { late: "written offline" } } }],
    ]);
    // Rolled back to the server's data, which the watch delivered: nothing of the refused writes.
    expect(c.get(["locked", "r1"])).toEqual({ closed: true });
    expect(await read(server.url, ["locked", "r1"])).toEqual({ closed: true });
    expect(values.at(-1)).toEqual({ closed: true });
    expect(c.pending.value).toBe(0);
  });

  it("follows stored subscriptions: watches the paths a node lists, and its changes", async () => {
    await merge(server.url, ["subs", "dax"], { inbox: ["inbox", "dax"] });
    await merge(server.url, ["inbox", "dax"], { m1: "hello" });
    const c = client({ subscriptions: ["subs", "dax"] });
    await until(() => c.get(["inbox", "dax", "m1"]) === "hello", "the subscribed inbox");
    await merge(server.url, ["news"], { today: "sun" });
    await merge(server.url, ["subs", "dax", "news"], ["news"]);
    await until(() => c.get(["news", "today"]) === "sun", "a newly subscribed path");
    await merge(server.url, ["inbox", "dax", "m2"], "again");
    await until(() => c.get(["inbox", "dax", "m2"]) === "again", "live changes");
  });

  it("converges on random schedules end to end (3 clients, real sockets)", async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            c: fc.integer({ min: 0, max: 2 }),
            k: fc.constantFrom("a", "b"),
            v: fc.integer({ min: 0, max: 9 }),
            del: fc.boolean(),
            toggle: fc.boolean(),
          }),
          { minLength: 1, maxLength: 10 },
        ),
        async (steps) => {
          const root = `e2e${++n}`;
          const cs = [client(), client(), client()];
          for (const c of cs) c.watch([root], () => {});
          for (const c of cs) await c.ready;
          const writes: { ts: string; path: string[]; v: number | undefined }[] = [];
          for (const s of steps) {
            const c = cs[s.c] as KoraClient;
            if (s.toggle) {
              if (c.status.value === "offline") c.connect();
              else c.disconnect();
            }
            void (s.del ? c.delete([root, s.k]) : c.merge([root, s.k], s.v)).catch(() => {});
            const w = c.queued().at(-1);
            if (w) writes.push({ ts: w.ts, path: [root, s.k], v: s.del ? undefined : s.v });
          }
          for (const c of cs) c.connect();
          for (const c of cs) await c.synced();
          const expected: Record<string, number> = {};
          for (const w of writes.sort((x, y) => (x.ts < y.ts ? -1 : 1))) {
            if (w.v === undefined) delete expected[w.path[1] as string];
            else expected[w.path[1] as string] = w.v;
          }
          const value = await read(server.url, [root]);
          expect(value ?? {}).toEqual(expected);
          await until(
            () =>
              cs.every((c) => JSON.stringify(c.get([root]) ?? {}) === JSON.stringify(value ?? {})),
            "replicas",
          );
          for (const c of cs) await c.close();
        },
      ),
      { numRuns: 8 },
    );
  });
});
