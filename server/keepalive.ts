/**
 * HTTP keep-alive timeouts. Node's defaults (`keepAliveTimeout` 5 s) are shorter than the idle
 * time of the clients and proxies in front of a production server (load balancers, nginx, Node
 * agents without a timeout keep idle sockets 60 s or longer). A client then sends a request on a
 * socket the server is closing, and the request dies with ECONNRESET / "socket hang up". A lagging
 * event loop makes it likely: the server's idle timer fires at the end of a long task, before the
 * request waiting in the socket is read. The server must be the side that waits longest
 * (docs/decisions.md, "HTTP").
 */
import type { Server } from "node:http";

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
