/**
 * graphql-ws's protocol (`makeServer`) bound to a `ws` server: Kora's own binding, in place of
 * `graphql-ws/use/ws`, for one reason: how frames reach the socket.
 *
 * graphql-ws/use/ws resolves each `send` only once `ws` has handed the frame to the kernel. A
 * mutation's `next` and `complete` then leave in two `writev` syscalls, the second a loop turn
 * after the first; on loopback a syscall also runs the receiver's TCP work, and in a profile of
 * 16 writers merging over graphql-ws those writes were ~40% of the server's busy time
 * (docs/bench.md, "Writes over graphql-ws"). Here:
 * - the socket is corked from a connection's first frame of a turn until the turn's ticks have
 *   run, so the frames one turn produces for a socket (a reply's `next` and `complete`, the
 *   events of a burst of changes to a watcher) leave in one syscall;
 * - a frame's `send` resolves at once while the socket's unsent bytes stay under
 *   HIGH_WATER_BYTES, and waits for the kernel beyond that: a reader that stops reading still
 *   holds its subscriptions back (the watch's bounded queue and resync take over, core/watch.ts)
 *   instead of filling the process' memory.
 * Everything else is as graphql-ws/use/ws does it (protocol negotiation, errors close the socket
 * with 1011, `dispose`), minus its keep-alive, which server/keepalive.ts replaces.
 */
import {
  CloseCode,
  DEPRECATED_GRAPHQL_WS_PROTOCOL,
  type ServerOptions,
  handleProtocols,
  makeServer,
} from "graphql-ws";
import type { Extra } from "graphql-ws/use/ws";
import type { WebSocket, WebSocketServer } from "ws";
import type { Logger } from "../core/gateway.ts";

/** Unsent bytes on a socket up to which a frame's send does not wait for the kernel. */
export const HIGH_WATER_BYTES = 256 * 1024;

/** A close reason within the WebSocket limit of 123 bytes. */
function reason(message: string): string {
  return Buffer.byteLength(message) <= 123 ? message : "Internal server error";
}

/** The underlying TCP socket of a `ws` WebSocket (not in its typings). */
function tcpOf(socket: WebSocket): import("node:net").Socket | undefined {
  return (socket as unknown as { _socket?: import("node:net").Socket })._socket;
}

/**
 * Shared payloads: a `next` frame's payload that many subscribers get (server/watchpath.ts,
 * `isSharedResult`) is serialized once. graphql-ws serializes each message itself, so `framed`
 * gives it, per subscriber, a stand-in whose JSON is a marker; graphql-ws stringifies the message
 * and sends it at once (the same expression: nothing runs between), and the sender puts the
 * payload's JSON in the marker's place. The marker holds a NUL, which no other part of a frame
 * written by Kora can hold unescaped... but a client-chosen operation id could spell it, so the
 * last occurrence is replaced: the payload is the message's last member.
 */
const MARKER = "\u0000kora-shared-payload\u0000";
const MARKER_JSON = JSON.stringify(MARKER);
const payloadJson = new WeakMap<object, string>();
/** The JSON of the payload whose marker is in the message being sent, if any. */
let pending: string | undefined;

/** Shared payloads framed, and serialized, in this process (tests check one serialization serves many). */
export const sharedPayloadStats = { framed: 0, serialized: 0 };

export function framed(result: object): object {
  return {
    toJSON() {
      sharedPayloadStats.framed++;
      pending = payloadOf(result, true);
      return MARKER;
    },
  };
}

function withPayload(data: string): string {
  const json = pending;
  if (json === undefined) return data;
  pending = undefined;
  const at = data.lastIndexOf(MARKER_JSON);
  return at < 0 ? data : data.slice(0, at) + json + data.slice(at + MARKER_JSON.length);
}

/** Whether `socket` takes a frame now without waiting for the kernel. */
function under(socket: WebSocket): boolean {
  return (
    socket.readyState === socket.OPEN &&
    socket.bufferedAmount + (tcpOf(socket)?.writableLength ?? 0) < HIGH_WATER_BYTES
  );
}

/** The JSON of a `next` payload: once per shared result (see `framed`), else as it comes. */
function payloadOf(result: object, shared: boolean): string {
  if (!shared) return JSON.stringify(result);
  let json = payloadJson.get(result);
  if (json === undefined) {
    sharedPayloadStats.serialized++;
    json = JSON.stringify(result);
    payloadJson.set(result, json);
  }
  return json;
}

const senders = new WeakMap<WebSocket, (data: string) => Promise<void>>();

/**
 * Direct `next` frames for one graphql-ws operation (server/watchpath.ts, `DirectSocket`): the
 * frame graphql-ws would send (`{"id","type":"next","payload"}`), written through the
 * connection's sender; undefined for a socket this binding does not serve.
 */
export function directFrames(
  socket: WebSocket,
  id: string,
): { next(result: object, shared: boolean): Promise<void>; ready(): boolean } | undefined {
  const send = senders.get(socket);
  if (!send) return undefined;
  const head = `{"id":${JSON.stringify(id)},"type":"next","payload":`;
  return {
    next: (result, shared) => {
      if (shared) sharedPayloadStats.framed++;
      // A failed write ends the socket, whose close ends the operation: nothing to report here.
      return send(`${head}${payloadOf(result, shared)}}`).catch(() => {});
    },
    ready: () => under(socket),
  };
}

function sender(socket: WebSocket): (data: string) => Promise<void> {
  let corked = false;
  const uncork = () => {
    corked = false;
    tcpOf(socket)?.uncork();
  };
  return (message) => {
    const data = withPayload(message);
    if (socket.readyState !== socket.OPEN) return Promise.resolve();
    const tcp = tcpOf(socket);
    if (tcp && !corked) {
      corked = true;
      tcp.cork();
      // After this turn's promise jobs: a frame sent from a microtask chain goes with the others.
      process.nextTick(uncork);
    }
    if (under(socket)) {
      socket.send(data);
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) =>
      socket.send(data, (error) => (error ? reject(error) : resolve())),
    );
  };
}

export interface WsServerOptions<P extends Record<string, unknown>> {
  /** graphql-ws's server options (execute, subscribe, onConnect, onSubscribe, ...). */
  options: ServerOptions<P, Extra>;
  wss: WebSocketServer;
  log: Logger;
  isProd: boolean;
}

export function serveGraphqlWs<P extends Record<string, unknown>>({
  options,
  wss,
  log,
  isProd,
}: WsServerOptions<P>): { dispose(): Promise<void> } {
  const server = makeServer<P, Extra>(options);
  wss.options.handleProtocols = handleProtocols;
  const internal = (error: unknown) =>
    isProd
      ? "Internal server error"
      : reason(error instanceof Error ? error.message : String(error));
  // `on`, not `once`: a second error with no listener would end the process.
  wss.on("error", (error) => {
    log.error({ err: error }, "the WebSocket server failed; closing its connections");
    for (const client of wss.clients) client.close(CloseCode.InternalServerError, internal(error));
  });
  wss.on("connection", (socket, request) => {
    socket.on("error", (error) => {
      log.warn({ err: error }, "a WebSocket connection failed; closing it");
      socket.close(CloseCode.InternalServerError, internal(error));
    });
    const send = sender(socket);
    senders.set(socket, send);
    const closed = server.opened(
      {
        protocol: socket.protocol,
        send,
        close: (code, why) => socket.close(code, why),
        onMessage: (cb) =>
          socket.on("message", async (event) => {
            try {
              await cb(String(event));
            } catch (error) {
              log.warn({ err: error }, "a graphql-ws message failed; closing its connection");
              socket.close(CloseCode.InternalServerError, internal(error));
            }
          }),
      },
      { socket, request },
    );
    socket.once("close", (code, why) => {
      if (
        !isProd &&
        code === CloseCode.SubprotocolNotAcceptable &&
        socket.protocol === DEPRECATED_GRAPHQL_WS_PROTOCOL
      ) {
        log.warn(
          {},
          "a client asked for subscriptions-transport-ws's deprecated protocol; use graphql-ws",
        );
      }
      void closed(code, String(why));
    });
  });
  return {
    dispose: async () => {
      for (const client of wss.clients) client.close(1001, "Going away");
      wss.removeAllListeners();
      wss.on("error", () => {}); // closing: nothing to do with a late error, and it must not end the process
      await new Promise<void>((resolve, reject) =>
        wss.close((error) => (error ? reject(error) : resolve())),
      );
    },
  };
}
