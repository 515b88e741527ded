/**
 * The smallest graphql-ws (graphql-transport-ws) client: connection_init, subscribe, next,
 * complete, ping/pong. The bench's clients use it instead of graphql-ws's `createClient` so that
 * on a 2-core machine the clients spend as little CPU as the raw side's plain sockets; the server
 * sees exactly the frames a real client sends.
 */
import WebSocket from "ws";

export interface GqlWs {
  /** Runs a query or mutation; resolves with its single result payload. */
  execute(query: string, variables?: Record<string, unknown>): Promise<{ data?: unknown; errors?: unknown[] }>;
  /** Starts a subscription; `onNext` gets each raw `next` payload text parsed once. */
  subscribe(query: string, variables: Record<string, unknown> | undefined, onNext: (payload: { data?: unknown; errors?: unknown[] }) => void): void;
  close(): void;
}

export function connectGqlWs(url: string): Promise<GqlWs> {
  const socket = new WebSocket(url, "graphql-transport-ws");
  let nextId = 1;
  const pending = new Map<string, { resolve: (p: { data?: unknown; errors?: unknown[] }) => void; reject: (e: Error) => void }>();
  const streams = new Map<string, (p: { data?: unknown; errors?: unknown[] }) => void>();
  function send(id: string, query: string, variables?: Record<string, unknown>) {
    socket.send(JSON.stringify({ id, type: "subscribe", payload: { query, variables } }));
  }

  const client: GqlWs = {
    execute(query, variables) {
      const id = String(nextId++);
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        send(id, query, variables);
      });
    },
    subscribe(query, variables, onNext) {
      const id = String(nextId++);
      streams.set(id, onNext);
      send(id, query, variables);
    },
    close() {
      socket.terminate();
    },
  };
  return new Promise((resolve, reject) => {
    socket.on("error", reject);
    socket.on("open", () => socket.send(JSON.stringify({ type: "connection_init", payload: {} })));
    socket.on("close", (code, reason) => {
      const error = new Error(`socket closed ${code} ${reason}`);
      for (const p of pending.values()) p.reject(error);
      pending.clear();
      reject(error);
    });
    socket.on("message", (data) => {
      const msg = JSON.parse(String(data)) as { type: string; id?: string; payload?: unknown };
      switch (msg.type) {
        case "connection_ack":
          resolve(client);
          return;
        case "ping":
          socket.send('{"type":"pong"}');
          return;
        case "next": {
          const id = msg.id as string;
          const stream = streams.get(id);
          if (stream) stream(msg.payload as { data?: unknown });
          else {
            const p = pending.get(id);
            pending.delete(id);
            p?.resolve(msg.payload as { data?: unknown });
          }
          return;
        }
        case "error": {
          const p = pending.get(msg.id as string);
          pending.delete(msg.id as string);
          p?.reject(new Error(JSON.stringify(msg.payload)));
          return;
        }
        default:
          return; // complete, pong
      }
    });
  });


}
