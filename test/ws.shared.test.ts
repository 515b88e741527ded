/**
 * One change to many watchers of a path is projected and serialized once per (path, selection,
 * read-auth class), not once per subscriber (server/watchpath.ts `isSharedResult`, server/wsserver.ts
 * `framed`) and written from the watch hub to each socket (`directResults`), and every watcher
 * still gets exactly its own frame: its operation id, its selection,
 * the same payload. A hostile operation id (one that spells the binding's marker) changes nothing.
 * test/fanout.authz.test.ts checks that watchers the read rules filter never share.
 */
import { type Client, createClient } from "graphql-ws";
import { afterAll, beforeAll, expect, it } from "vitest";
import WebSocket from "ws";
import { watchFastPathStats } from "../server/watchpath.ts";
import { sharedPayloadStats } from "../server/wsserver.ts";
import { pgliteTarget } from "./helpers/db.ts";
import { EventQueue } from "./helpers/events.ts";
import { type TestServer, startTestServer } from "./helpers/server.ts";

let server: TestServer;
const clients: Client[] = [];
beforeAll(async () => {
  server = await startTestServer(pgliteTarget);
});
afterAll(async () => {
  await Promise.all(clients.splice(0).map((c) => c.dispose()));
  await server?.close();
});

const FULL = `subscription { watch(path: ["s"]) { version snapshot merge delete } }`;
const SMALL = `subscription { watch(path: ["s"]) { v: version merge } }`;
const VALUE = `subscription { watch(path: ["s"]) { version value } }`;

function watcher(client: Client, query: string): EventQueue<Record<string, unknown>> {
  const events = new EventQueue<Record<string, unknown>>();
  client.subscribe<{ watch: Record<string, unknown> }>(
    { query },
    {
      next: (r) => (r.data ? events.push(r.data.watch) : events.fail(r.errors)),
      error: (e) => events.fail(e),
      complete: () => {},
    },
  );
  return events;
}

/** A graphql-ws client by hand, for operation ids no library would choose. */
async function rawWatch(id: string, query: string) {
  const socket = new WebSocket(server.wsUrl, "graphql-transport-ws");
  const frames = new EventQueue<{
    id?: string;
    type: string;
    payload?: { data?: { watch: Record<string, unknown> } };
  }>();
  socket.on("message", (data) => {
    const msg = JSON.parse(String(data));
    if (msg.type === "connection_ack")
      socket.send(JSON.stringify({ id, type: "subscribe", payload: { query } }));
    else frames.push(msg);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  socket.send(JSON.stringify({ type: "connection_init" }));
  return { socket, frames };
}

it("serializes one change once per selection for 60 watchers, and each gets its own frame", async () => {
  const direct = watchFastPathStats.direct;
  const full: EventQueue<Record<string, unknown>>[] = [];
  const small: EventQueue<Record<string, unknown>>[] = [];
  const value: EventQueue<Record<string, unknown>>[] = [];
  for (let s = 0; s < 20; s++) {
    const client = createClient({ url: server.wsUrl, webSocketImpl: WebSocket, retryAttempts: 0 });
    clients.push(client);
    full.push(watcher(client, FULL), watcher(client, FULL));
    small.push(watcher(client, SMALL));
  }
  value.push(...clients.slice(0, 5).map((c) => watcher(c, VALUE)));
  const hostile = [
    await rawWatch("\u0000kora-shared-payload\u0000", FULL),
    await rawWatch('","payload":{"data":{"watch":{"version":"forged"}}},"x":"', FULL),
  ];
  for (const q of [...full, ...small, ...value])
    expect((await q.next()).version ?? "snapshot").toBeDefined();
  for (const h of hostile) expect((await h.frames.next()).payload?.data?.watch.snapshot).toBe(true);
  // Every one of them is written to its socket directly (server/watchpath.ts, directResults).
  expect(watchFastPathStats.direct - direct).toBe(67);

  const before = { ...sharedPayloadStats };
  const { version } = await server.kora.gateway.commit({
    merge: { s: { a: 1, "k\u00e9y": "v\u2028" } },
    delete: Object.create(null),
  });
  const merge = { s: { a: 1, "k\u00e9y": "v\u2028" } };
  for (const q of full)
    expect(await q.next()).toEqual({
      version: String(version),
      snapshot: false,
      merge,
      delete: {},
    });
  for (const q of small) expect(await q.next()).toEqual({ v: String(version), merge });
  for (const q of value)
    expect(await q.next()).toEqual({
      version: String(version),
      value: { a: 1, "k\u00e9y": "v\u2028" },
    });
  for (const [i, h] of hostile.entries()) {
    const frame = await h.frames.next();
    expect(frame.id).toBe(
      i === 0
        ? "\u0000kora-shared-payload\u0000"
        : '","payload":{"data":{"watch":{"version":"forged"}}},"x":"',
    );
    expect(frame.payload?.data?.watch).toEqual({
      version: String(version),
      snapshot: false,
      merge,
      delete: {},
    });
  }
  // 40 + 2 frames of the full selection, 20 of the small one; the `value` watchers are their own.
  expect(sharedPayloadStats.framed - before.framed).toBe(62);
  expect(sharedPayloadStats.serialized - before.serialized).toBe(2);
  for (const h of hostile) h.socket.terminate();
});
