/**
 * Graceful shutdown (what `npm start` does on SIGINT/SIGTERM, server/cli.ts -> close()): new
 * connections are refused at once, a write already in flight commits and gets its answer, open
 * watches end, sockets close, and the gateway takes no more writes. The SIGTERM wiring itself is tested
 * in e2e.multiprocess.test.ts.
 */
import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import type { Interceptor } from "../interceptors/types.ts";
import { wsClient } from "./helpers/clients.ts";
import { pgliteTarget } from "./helpers/db.ts";
import { MERGE, WATCH, http, startTestServer } from "./helpers/server.ts";

describe("graceful shutdown", () => {
  it("finishes in-flight writes and answers them, refuses new connections, ends watches, then stops the gateway", async () => {
    let entered!: () => void;
    const inHook = new Promise<void>((r) => {
      entered = r;
    });
    let release!: () => void;
    const released = new Promise<void>((r) => {
      release = r;
    });
    const slow: Interceptor = {
      path: ["slow", "**"],
      async beforeMutation() {
        entered();
        await released;
      },
    };
    const server = await startTestServer(pgliteTarget, { interceptors: [slow] });
    const { store } = server.kora.gateway;
    const ws = wsClient(server.wsUrl);
    const watchEnded = new Promise<string>((resolve) => {
      ws.subscribe({ query: WATCH, variables: { path: ["slow"] } }, { next: () => {}, error: () => resolve("error"), complete: () => resolve("complete") });
    });

    const write = http<{ merge: { version: string } }>(server.url, MERGE, { path: ["slow", "a"], value: 1 });
    await inHook;
    let closed = false;
    const closing = server.kora.close().then(() => {
      closed = true;
    });
    // The listening socket is closed at once: a new connection is refused.
    const port = new URL(server.url).port;
    const refused = await new Promise<string>((resolve) => {
      const socket = connect(Number(port), "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve("connected");
      });
      socket.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
    });
    expect(refused).toBe("ECONNREFUSED");
    expect(closed).toBe(false); // waiting for the write
    release();
    const answer = await write;
    expect(answer.errors).toBeUndefined();
    expect(Number(answer.data?.merge.version)).toBeGreaterThan(0);
    await closing;
    expect(["complete", "error"]).toContain(await watchEnded);
    // The write is in the store; the gateway takes no more (the tests' shared PGlite stays open).
    expect((await store.read([{ path: ["slow", "a"] }])).values[0]).toBe(1);
    await expect(server.kora.gateway.commit({ merge: { x: 1 }, delete: {} })).rejects.toThrow(/shutting down/);
    await ws.dispose();
    await server.close(); // drops the test's schema (close itself is idempotent)
  });
});
