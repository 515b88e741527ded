/**
 * Keep-alive, both kinds. HTTP first (`applyKeepAlive`), then WebSocket (`guardSockets`).
 *
 * HTTP: Node's defaults (`keepAliveTimeout` 5 s) are shorter than the idle
 * time of the clients and proxies in front of a production server (load balancers, nginx, Node
 * agents without a timeout keep idle sockets 60 s or longer). A client then sends a request on a
 * socket the server is closing, and the request dies with ECONNRESET / "socket hang up". A lagging
 * event loop makes it likely: the server's idle timer fires at the end of a long task, before the
 * request waiting in the socket is read. The server must be the side that waits longest
 * (docs/decisions.md, "HTTP").
 *
 * WebSocket: keep-alive and the bound on unsent bytes, in place of graphql-ws's own keep-alive
 * (which terminates a silent socket without a close frame, so its client cannot tell why).
 *
 * - Every `pingMs` the server pings; a socket whose pong has not come `pongTimeoutMs` after a ping
 *   is closed with 1001 and the reason "keep-alive timeout" (then terminated if it does not close).
 * - A socket holding more than `maxBufferedBytes` of unsent data (its peer reads too slowly) is
 *   closed with 1013 ("try again later") and a reason that says so.
 * Both codes are ones graphql-ws clients retry on; Kora's client then resumes with `since`.
 * Before that point a slow reader is held back by the socket itself: graphql-ws waits for each
 * message to be written before it takes the next event, so the watch's bounded queue overflows
 * and the watcher gets a fresh snapshot (contract section 4), never an unbounded buffer.
 */
import type { Server } from "node:http";
import type { WebSocket, WebSocketServer } from "ws";
import type { Logger } from "../core/gateway.ts";

export interface KeepAliveOptions {
  /** Ping interval in milliseconds. Default 12000; 0 disables keep-alive. */
  pingMs?: number;
  /** How long after a ping its pong may come, in milliseconds. Default 12000. */
  pongTimeoutMs?: number;
  /** Most unsent bytes one socket may hold. Default 32 MiB. */
  maxBufferedBytes?: number;
  /** How long a socket being closed may take to finish the closing handshake, in ms. Default 2000. */
  closeGraceMs?: number;
}

export const CLOSE_KEEPALIVE_TIMEOUT = 1001;
export const CLOSE_SLOW_READER = 1013;

export function guardSockets(wss: WebSocketServer, options: KeepAliveOptions & { log: Logger }): () => void {
  const pingMs = options.pingMs ?? 12_000;
  const pongTimeoutMs = options.pongTimeoutMs ?? 12_000;
  const maxBuffered = options.maxBufferedBytes ?? 32 * 1024 * 1024;
  const closeGraceMs = options.closeGraceMs ?? 2000;
  const { log } = options;
  const sockets = new Map<WebSocket, { pingAt: number | undefined; lastPing: number }>();

  const closeFor = (socket: WebSocket, code: number, reason: string) => {
    if (socket.readyState !== socket.OPEN) return;
    log.warn({ code, reason }, `closing a WebSocket: ${reason}`);
    socket.close(code, reason);
    // A peer that reads nothing never completes the closing handshake.
    setTimeout(() => socket.terminate(), closeGraceMs).unref();
  };

  wss.on("connection", (socket) => {
    sockets.set(socket, { pingAt: undefined, lastPing: Date.now() });
    socket.on("pong", () => {
      const s = sockets.get(socket);
      if (s) s.pingAt = undefined;
    });
    socket.on("close", () => sockets.delete(socket));
    // Checked at each send: the moment the bound is passed, not at the next tick.
    const send = socket.send.bind(socket) as (...args: unknown[]) => void;
    (socket as { send: (...args: unknown[]) => void }).send = (...args: unknown[]) => {
      send(...args);
      if (socket.bufferedAmount > maxBuffered) {
        closeFor(socket, CLOSE_SLOW_READER, `slow reader: over ${maxBuffered} bytes unsent; reconnect and resume with since`);
      }
    };
  });

  const timer =
    pingMs > 0
      ? setInterval(() => {
          const now = Date.now();
          for (const [socket, s] of sockets) {
            if (socket.readyState !== socket.OPEN) continue;
            if (s.pingAt !== undefined && now - s.pingAt > pongTimeoutMs) {
              closeFor(socket, CLOSE_KEEPALIVE_TIMEOUT, `keep-alive timeout: no pong within ${pongTimeoutMs} ms; reconnect and resume with since`);
              continue;
            }
            if (socket.bufferedAmount > maxBuffered) {
              closeFor(socket, CLOSE_SLOW_READER, `slow reader: over ${maxBuffered} bytes unsent; reconnect and resume with since`);
              continue;
            }
            if (s.pingAt === undefined && now - s.lastPing >= pingMs) {
              s.pingAt = s.lastPing = now;
              socket.ping();
            }
          }
        }, Math.min(pingMs, 1000))
      : undefined;
  timer?.unref();
  return () => clearInterval(timer);
}


/** Default idle time of a keep-alive socket, ms: above the 60 s of common proxies and agents. */
export const DEFAULT_KEEP_ALIVE_TIMEOUT_MS = 65_000;

/**
 * Sets the server's keep-alive timeout to `keepAliveTimeoutMs` and its headers timeout just above
 * it: a headers timeout at or below the keep-alive timeout closes sockets that are idle by design
 * (the classic load-balancer 502 of Node servers).
 */
export function applyKeepAlive(server: Server, keepAliveTimeoutMs = DEFAULT_KEEP_ALIVE_TIMEOUT_MS): void {
  server.keepAliveTimeout = keepAliveTimeoutMs;
  server.headersTimeout = keepAliveTimeoutMs + 1_000;
  // Node refuses a headers timeout above the request timeout (default 300 s).
  if (server.requestTimeout > 0 && server.requestTimeout < server.headersTimeout) server.requestTimeout = server.headersTimeout;
}
