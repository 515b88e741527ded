/**
 * A watch served directly over graphql-ws (server/watchpath.ts `directResults`) ends cleanly when
 * its client stops it: by a `complete` frame, or by closing the socket. graphql-ws then calls the
 * iterator's return() with a next() still pending; that next() must end as done, and nothing may
 * reject unhandled in the server (a rejection there once came from every stopped watch: 80 in
 * one CI run).
 */
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import WebSocket from "ws";
import { watchFastPathStats } from "../server/watchpath.ts";
import { pgliteTarget } from "./helpers/db.ts";
import { EventQueue } from "./helpers/events.ts";
import { MERGE, type TestServer, ok, startTestServer } from "./helpers/server.ts";

let server: TestServer;
const unhandled: unknown[] = [];
const collect = (reason: unknown) => unhandled.push(reason);
beforeAll(async () => {
  server = await startTestServer(pgliteTarget);
  process.on("unhandledRejection", collect);
});
afterAll(async () => {
  process.off("unhandledRejection", collect);
  await server?.close();
});
afterEach(() => {
  unhandled.length = 0;
});

type Frame = { id?: string; type: string; payload?: { data?: Record<string, unknown> } };

async function open() {
  const socket = new WebSocket(server.wsUrl, "graphql-transport-ws");
  const frames = new EventQueue<Frame>();
  socket.on("message", (data) => frames.push(JSON.parse(String(data))));
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  socket.send(JSON.stringify({ type: "connection_init" }));
  expect((await frames.next()).type).toBe("connection_ack");
  return { socket, frames, send: (frame: unknown) => socket.send(JSON.stringify(frame)) };
}

const WATCH = `subscription { watch(path: ["d"]) { version snapshot merge delete } }`;

/** Lets the process report a rejection of this turn (`unhandledRejection` follows the microtasks). */
const turn = () => new Promise((resolve) => setImmediate(resolve));

it("a complete frame ends a direct watch: it gets nothing more, and nothing rejects unhandled", async () => {
  const direct = watchFastPathStats.direct;
  const { socket, frames, send } = await open();
  send({ id: "w", type: "subscribe", payload: { query: WATCH } });
  expect((await frames.next()).payload?.data?.watch).toMatchObject({ snapshot: true });
  expect(watchFastPathStats.direct).toBe(direct + 1);
  send({ id: "w", type: "complete" });
  // A query on the same socket after the complete: graphql-ws handles frames in order, so its
  // answer comes after the watch was stopped.
  send({ id: "q", type: "subscribe", payload: { query: "{ __typename }" } });
  expect(await frames.next()).toMatchObject({ id: "q", type: "next" });
  expect(await frames.next()).toMatchObject({ id: "q", type: "complete" });
  await ok(server.url, MERGE, { path: ["d", "x"], value: 1 });
  send({ id: "q2", type: "subscribe", payload: { query: "{ __typename }" } });
  // The stopped watch's change would have come before this answer.
  expect(await frames.next()).toMatchObject({ id: "q2", type: "next" });
  await turn();
  expect(unhandled).toEqual([]);
  socket.close();
});

it("closing the socket ends its direct watches, and nothing rejects unhandled", async () => {
  const { socket, frames, send } = await open();
  for (const id of ["a", "b", "c"]) {
    send({ id, type: "subscribe", payload: { query: WATCH } });
    expect((await frames.next()).payload?.data?.watch).toMatchObject({ snapshot: true });
  }
  const closed = new Promise((resolve) => socket.once("close", resolve));
  socket.close();
  await closed;
  // The server has seen the close once a write's result is back (its watch hub dispatched the
  // change to no socket) and another socket's round trip went through.
  await ok(server.url, MERGE, { path: ["d", "y"], value: 2 });
  const other = await open();
  other.send({ id: "q", type: "subscribe", payload: { query: "{ __typename }" } });
  expect(await other.frames.next()).toMatchObject({ id: "q", type: "next" });
  await turn();
  expect(unhandled).toEqual([]);
  other.socket.close();
});
