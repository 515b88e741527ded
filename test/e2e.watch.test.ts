/**
 * End to end: a real server on port 0, driven by graphql-ws, Apollo Client, urql and SSE.
 * Every client must see the same events: snapshot, merges, deletes, deletes and leaves above
 * the watched path, and nothing for unrelated writes.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLIENT_KINDS, type WireEvent } from "./helpers/clients.ts";
import { storeTargets } from "./helpers/db.ts";
import { MUTATE, WATCH, type TestServer, del, merge, ok, startTestServer } from "./helpers/server.ts";

const P = ["app", "todo"];

describe.each(storeTargets())("watch over every client on $name", (target) => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(target);
  });
  afterAll(async () => {
    await server?.close();
  });

  it.each(CLIENT_KINDS)("$name sees snapshot, merges, deletes, deletes above, and nothing unrelated", async (kind) => {
    const { url } = server;
    const root = `${kind.name}`; // each client works in its own top-level key
    const path = [root, ...P];
    await ok(url, MUTATE, { merge: { [root]: { app: { todo: { a: 1 }, other: { x: 1 } } } } });
    const conn = kind.connect(server);
    const sub = conn.subscribe(WATCH, { path });
    try {
      const snap = await sub.events.next();
      expect(snap.snapshot).toBe(true);
      expect(snap.merge).toEqual({ [root]: { app: { todo: { a: 1 } } } });
      expect(snap.delete).toEqual({ [root]: { app: { todo: true } } });

      const expectEvent = async (version: number, change: Partial<WireEvent>) => {
        const e = await sub.events.next();
        expect(e).toEqual({ version: String(version), snapshot: false, merge: {}, delete: {}, ...change });
      };

      let v = await merge(url, [...path, "b"], 2);
      await expectEvent(v, { merge: { [root]: { app: { todo: { b: 2 } } } } });

      await merge(url, [root, "app", "other", "y"], 1); // unrelated: no event
      await merge(url, ["elsewhere", root], 1); // unrelated: no event
      v = await del(url, [...path, "a"]);
      await expectEvent(v, { delete: { [root]: { app: { todo: { a: true } } } } });

      v = await del(url, [...path, "absent"]); // a delete of nothing under the path is still delivered
      await expectEvent(v, { delete: { [root]: { app: { todo: { absent: true } } } } });

      v = await del(url, [root, "app"]); // a delete above the watched path
      await expectEvent(v, { delete: { [root]: { app: { todo: true } } } });

      v = await merge(url, [...path, "c"], { d: [1, null, { e: "f" }] });
      await expectEvent(v, { merge: { [root]: { app: { todo: { c: { d: [1, null, { e: "f" }] } } } } } });

      v = await merge(url, [root, "app"], "a leaf above"); // a leaf merged above replaces the path
      await expectEvent(v, { delete: { [root]: { app: { todo: true } } } });

      v = (
        await ok<{ mutate: { version: string } }>(url, MUTATE, {
          delete: { [root]: { app: true } },
          merge: { [root]: { app: { todo: { z: true }, other: 1 } } },
        })
      ).mutate.version as unknown as number;
      await expectEvent(Number(v), {
        delete: { [root]: { app: { todo: true } } },
        merge: { [root]: { app: { todo: { z: true } } } },
      });
      expect(sub.events.size).toBe(0);
    } finally {
      await sub.close();
      await conn.dispose();
    }
  });

  it("selecting value gives the whole value after each event", async () => {
    const { url } = server;
    const conn = CLIENT_KINDS[0]!.connect(server);
    const sub = conn.subscribe(
      `subscription($path: [String!]!) { watch(path: $path) { version snapshot value } }`,
      { path: ["valued", "x"] },
    );
    try {
      const snap = await sub.events.next();
      expect(snap).toMatchObject({ snapshot: true, value: null });
      await merge(url, ["valued", "x", "a"], 1);
      expect((await sub.events.next()).value).toEqual({ a: 1 });
      await merge(url, ["valued", "x", "b"], 2);
      expect((await sub.events.next()).value).toEqual({ a: 1, b: 2 });
      await del(url, ["valued"]);
      expect((await sub.events.next()).value).toBe(null);
    } finally {
      await sub.close();
      await conn.dispose();
    }
  });
});
