/**
 * Kora's graphql-ws binding (server/wsserver.ts) writes the frames one turn of the server makes
 * for a socket in one syscall: a mutation's `next` and `complete` leave in one write, where
 * graphql-ws/use/ws wrote `complete` only after `next` had been flushed (two writes). Counted at
 * the server's TCP sockets (Node's `_write`/`_writev`, one per syscall it issues), in this process.
 */
import { Socket } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import WebSocket from "ws";
import { pgliteTarget } from "./helpers/db.ts";
import { type TestServer, startTestServer } from "./helpers/server.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer(pgliteTarget);
});
afterAll(async () => {
  await server?.close();
});

const MUTATION = `mutation($v: JSON!) { merge(path: ["frames"], value: $v) { version } }`;

it("sends a mutation's next and complete in one write", async () => {
  const socket = new WebSocket(server.wsUrl, "graphql-transport-ws");
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  // Writes issued by the server's end of each connection (its local port is the server's).
  const port = Number(new URL(server.wsUrl).port);
  let writes = 0;
  const proto = Socket.prototype as unknown as Record<
    "_write" | "_writev",
    (...args: unknown[]) => unknown
  >;
  const original = { _write: proto._write, _writev: proto._writev };
  for (const name of ["_write", "_writev"] as const) {
    proto[name] = function (this: Socket, ...args: unknown[]) {
      if (this.localPort === port) writes++;
      return original[name].apply(this, args);
    };
  }
  const waiting = new Map<string, () => void>();
  socket.on("message", (data) => {
    const msg = JSON.parse(String(data)) as { id?: string; type: string };
    if (msg.type === "connection_ack") waiting.get("ack")?.();
    if (msg.type === "complete" && msg.id) waiting.get(msg.id)?.();
  });
  const until = (key: string) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${key} within 10 s`)), 10_000);
      waiting.set(key, () => {
        clearTimeout(timer);
        resolve();
      });
    });
  try {
    const acked = until("ack");
    socket.send(JSON.stringify({ type: "connection_init" }));
    await acked;
    for (let i = 0; i < 20; i++) {
      const id = `m${i}`;
      const done = until(id);
      const before = writes;
      socket.send(
        JSON.stringify({
          id,
          type: "subscribe",
          payload: { query: MUTATION, variables: { v: { i } } },
        }),
      );
      await done;
      expect(writes - before, `${id}: next and complete in one write`).toBe(1);
    }
  } finally {
    Object.assign(proto, original);
    socket.terminate();
  }
});
