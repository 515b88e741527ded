/** Offline clients (kora/client) over real WebSockets for the client suites, closed together. */
import WebSocket from "ws";
import {
  type ClientOptions,
  type KoraClient,
  createClient,
  memoryStorage,
} from "../../client/index.ts";

export interface OfflineClients {
  /** A client of the server at `wsUrl` (memory storage and short backoff unless overridden). */
  client(options?: Partial<ClientOptions>): KoraClient;
  closeAll(): Promise<void>;
}

export function offlineClients(wsUrl: () => string): OfflineClients {
  const clients: KoraClient[] = [];
  return {
    client(options = {}) {
      const c = createClient({
        url: wsUrl(),
        webSocketImpl: WebSocket,
        storage: memoryStorage(),
        backoff: { initialMs: 20, maxMs: 200 },
        persistDelayMs: 5,
        ...options,
      });
      clients.push(c);
      return c;
    },
    async closeAll() {
      for (const c of clients.splice(0)) await c.close().catch(() => {});
    },
  };
}

/** A WebSocket that drops the connection the moment a mutation's reply arrives (once per `dropNextReply`). */
export function droppingSocket(state: { dropNextReply: boolean; dropped: number }) {
  return class extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      const emit = this.emit.bind(this);
      this.emit = ((event: string, ...args: unknown[]) => {
        if (event === "message" && state.dropNextReply && String(args[0]).includes('"mutate"')) {
          state.dropNextReply = false;
          state.dropped++;
          this.terminate();
          return true;
        }
        return emit(event, ...args);
      }) as typeof this.emit;
    }
  };
}
