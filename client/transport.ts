/**
 * How the client talks to Kora: a `Transport` opens `Connection`s. `wsTransport` is the real one
 * (graphql-ws over WebSocket, browsers and Node); tests also use an in-process transport over a
 * gateway (client/inprocess.ts) that exercises the same client code.
 */
import { type Client, createClient as createWsClient } from "graphql-ws";
import type { DeleteTree, Path, Tree } from "../core/types.ts";

export interface WireEvent {
  version: string;
  snapshot: boolean;
  merge: Tree;
  delete: DeleteTree;
}

export interface WireResult {
  version: string;
  merge: Tree;
  delete: DeleteTree;
  ts?: string | null | undefined;
}

export interface WriteRequest {
  merge: Tree;
  delete: DeleteTree;
  ts: string;
  writeId: string;
}

export interface Sink<T> {
  next(value: T): void;
  error(error: unknown): void;
}

export interface Connection {
  /** Starts a watch; returns its stop function. */
  watch(path: Path, since: string | undefined, sink: Sink<WireEvent>): () => void;
  /** Sends a write; rejects with `ServerError` when the server refused it, else with a network error. */
  write(request: WriteRequest): Promise<WireResult>;
  close(): void;
}

export interface Transport {
  /** Opens a connection; `onClose` is called once when it drops (not after `close()`). */
  connect(onClose: (error?: unknown) => void): Promise<Connection>;
}

/** The server refused an operation: a GraphQL error with a contract error code. */
export class ServerError extends Error {
  readonly code: string;
  readonly path: readonly string[] | undefined;
  constructor(code: string, message: string, path?: readonly string[]) {
    super(message);
    this.name = "ServerError";
    this.code = code;
    this.path = path;
  }
}

/** A GraphQL error list (from graphql-ws `next`/`error`) as a ServerError, or undefined. */
export function serverError(errors: unknown): ServerError | undefined {
  if (!Array.isArray(errors) || errors.length === 0) return undefined;
  const first = errors[0] as { message?: string; extensions?: { code?: string; path?: string[] } };
  return new ServerError(first.extensions?.code ?? "INTERNAL_SERVER_ERROR", first.message ?? "error", first.extensions?.path);
}

export const WATCH_DOCUMENT = `subscription KoraWatch($path: [String!]!, $since: String) {
  watch(path: $path, since: $since) { version snapshot merge delete }
}`;

export const MUTATE_DOCUMENT = `mutation KoraMutate($merge: JSONObject, $delete: JSONObject, $ts: String, $writeId: String) {
  mutate(merge: $merge, delete: $delete, ts: $ts, writeId: $writeId) { version merge delete ts }
}`;

export interface WsTransportOptions {
  /** The WebSocket URL of `/graphql`, e.g. `ws://localhost:4000/graphql`. */
  url: string;
  /** A bearer token, sent as `connectionParams.authorization`. */
  token?: string | (() => string | undefined | Promise<string | undefined>) | undefined;
  /** A WebSocket implementation (`ws` on Node; the global one in browsers). */
  webSocketImpl?: unknown;
  /** How long to wait for the connection to open. Default 10 s. */
  connectTimeoutMs?: number;
}

/** graphql-ws over WebSocket. Each connection is one graphql-ws client with its retries off. */
export function wsTransport(options: WsTransportOptions): Transport {
  return {
    connect(onClose) {
      return new Promise<Connection>((resolve, reject) => {
        let opened = false;
        let closedByUs = false;
        let client: Client | undefined;
        const timer = setTimeout(() => fail(new Error("connection timed out")), options.connectTimeoutMs ?? 10_000);
        const fail = (error: unknown) => {
          clearTimeout(timer);
          if (!opened) {
            opened = true; // settle once
            reject(error);
            void client?.dispose();
          }
        };
        client = createWsClient({
          url: options.url,
          webSocketImpl: options.webSocketImpl,
          lazy: false,
          retryAttempts: 0,
          connectionParams: async () => {
            const token = typeof options.token === "function" ? await options.token() : options.token;
            return token ? { authorization: `Bearer ${token}` } : {};
          },
          on: {
            connected: () => {
              clearTimeout(timer);
              if (opened) return;
              opened = true;
              resolve(connection);
            },
            closed: (event) => {
              if (!opened) fail(event);
              else if (!closedByUs) {
                closedByUs = true;
                onClose(event);
              }
            },
            error: (error) => {
              if (!opened) fail(error);
            },
          },
        });
        const ws = client;
        const connection: Connection = {
          watch(path, since, sink) {
            return ws.subscribe<{ watch: WireEvent }>(
              { query: WATCH_DOCUMENT, variables: { path: [...path], since: since ?? null } },
              {
                next: (r) => {
                  if (r.errors) sink.error(serverError(r.errors));
                  else if (r.data) sink.next(r.data.watch);
                },
                error: (e) => sink.error(serverError(e) ?? e),
                complete: () => {},
              },
            );
          },
          write(request) {
            return new Promise<WireResult>((res, rej) => {
              let done = false;
              ws.subscribe<{ mutate: WireResult }>(
                { query: MUTATE_DOCUMENT, variables: { ...request } },
                {
                  next: (r) => {
                    done = true;
                    if (r.errors) rej(serverError(r.errors));
                    else if (r.data) res(r.data.mutate);
                  },
                  error: (e) => {
                    done = true;
                    rej(serverError(e) ?? new Error("connection lost before the reply"));
                  },
                  complete: () => {
                    if (!done) rej(new Error("connection lost before the reply"));
                  },
                },
              );
            });
          },
          close() {
            closedByUs = true;
            void ws.dispose();
          },
        };
      });
    },
  };
}
