/**
 * WebSocket keep-alive and the unsent-bytes bound (server/keepalive.ts): a socket whose peer stops
 * answering pings, or stops reading while the server has more than the bound to send, is closed
 * with a code graphql-ws clients retry on and a reason that says why; a healthy one stays open.
 */
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { CLOSE_KEEPALIVE_TIMEOUT, CLOSE_SLOW_READER } from "../server/keepalive.ts";
import { pgliteTarget } from "./helpers/db.ts";
import { MUTATE, type TestServer, ok, startTestServer } from "./helpers/server.ts";

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** A graphql-ws client by hand: init, one watch subscription; resolves once acknowledged. */
async function rawWatcher(url: string, query: string, options: WebSocket.ClientOptions = {}) {
  const socket = new WebSocket(url, "graphql-transport-ws", options);
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.on("close", (code, reason) => resolve({ code, reason: String(reason) })),
  );
  const messages: { type: string }[] = [];
  let onNext: (() => void) | undefined;
  socket.on("message", (data) => {
    const msg = JSON.parse(String(data)) as { type: string };
    messages.push(msg);
    if (msg.type === "connection_ack") socket.send(JSON.stringify({ id: "1", type: "subscribe", payload: { query } }));
    if (msg.type === "next") onNext?.();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  socket.send(JSON.stringify({ type: "connection_init" }));
  await new Promise<void>((resolve) => {
    onNext = resolve;
  });
  return { socket, closed, messages };
}

describe("WebSocket keep-alive", () => {
  it("closes a socket whose pongs stop with 1001 and a reason; one that answers stays open", async () => {
    server = await startTestServer(pgliteTarget, { keepAlive: { pingMs: 100, pongTimeoutMs: 300 } });
    const query = 'subscription { watch(path: ["k"]) { version } }';
    const silent = await rawWatcher(server.wsUrl, query, { autoPong: false });
    const healthy = await rawWatcher(server.wsUrl, query);
    let pings = 0;
    const tenPings = new Promise<void>((resolve) =>
      healthy.socket.on("ping", () => {
        if (++pings === 10) resolve();
      }),
    );
    const close = await silent.closed;
    expect(close.code).toBe(CLOSE_KEEPALIVE_TIMEOUT);
    expect(close.reason).toMatch(/^keep-alive timeout: no pong within 300 ms/);
    await tenPings; // ten rounds of ping and pong, well past the timeout: still open
    expect(healthy.socket.readyState).toBe(WebSocket.OPEN);
    healthy.socket.close();
  });

  it("closes a socket that stops reading with 1013 once its unsent bytes pass the bound", async () => {
    const bound = 256 * 1024;
    server = await startTestServer(pgliteTarget, { keepAlive: { pingMs: 0, maxBufferedBytes: bound, closeGraceMs: 120_000 } });
    const slow = await rawWatcher(server.wsUrl, 'subscription { watch(path: ["big"]) { version merge } }');
    (slow.socket as unknown as { _socket: { pause(): void } })._socket.pause();
    // 48 events of 512 KiB: more than the kernel's socket buffers on loopback (at most ~10 MiB
    // both ways here) plus the bound, so the server must hold unsent data.
    const chunk = "x".repeat(512 * 1024);
    for (let i = 0; i < 48; i++) await ok(server.url, MUTATE, { merge: { big: { [`k${i}`]: chunk } } });
    (slow.socket as unknown as { _socket: { resume(): void } })._socket.resume();
    const close = await slow.closed;
    expect(close.code).toBe(CLOSE_SLOW_READER);
    expect(close.reason).toMatch(new RegExp(`^slow reader: over ${bound} bytes unsent`));
  }, 120_000);
});
