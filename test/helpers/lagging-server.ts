/**
 * A Kora server process whose event loop lags on purpose, for test/http.keepalive.test.ts: it
 * blocks its own loop for LAG_BLOCK_MS out of every LAG_PERIOD_MS (busy-waiting, as a long
 * synchronous task would) and prints `listening <url>` once it serves. The store is in memory: the
 * test is about sockets, not storage. KEEP_ALIVE_TIMEOUT_MS overrides the server's keep-alive
 * timeout (5000 reproduces Node's default, to check that the test catches it).
 */
import { silentLogger } from "../../core/gateway.ts";
import { startKora } from "../../server/index.ts";
import { createMemoryStore } from "./memory-store.ts";

const blockMs = Number(process.env.LAG_BLOCK_MS ?? 400);
const periodMs = Number(process.env.LAG_PERIOD_MS ?? 500);
const keepAlive = process.env.KEEP_ALIVE_TIMEOUT_MS ? Number(process.env.KEEP_ALIVE_TIMEOUT_MS) : undefined;

const kora = await startKora({
  store: createMemoryStore(),
  log: silentLogger,
  port: 0,
  host: "127.0.0.1",
  retention: { intervalMs: 0 },
  ...(keepAlive !== undefined ? { keepAliveTimeoutMs: keepAlive } : {}),
});
// The loop runs for periodMs - blockMs between blocks: enough to serve, never idle for long.
// The block runs in the check phase (setImmediate), like work done on I/O: the loop then runs
// its due timers before it reads sockets again. A block inside a timer callback would not do:
// timers that fall due during it wait until after the next read of the sockets.
setInterval(() => {
  setImmediate(() => {
    const end = performance.now() + blockMs;
    while (performance.now() < end) {
      // busy: nothing else runs in this process meanwhile
    }
  });
}, Math.max(1, periodMs - blockMs));
process.on("SIGTERM", () => {
  kora.close().then(() => process.exit(0));
});
console.log(`listening ${kora.url}`);
