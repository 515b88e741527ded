/**
 * A TCP proxy on loopback between clients and a server, for network faults a client must survive:
 * a slow link (every chunk held for a random delay, order kept), a silent partition (nothing is
 * forwarded either way and nothing is closed, as when a NAT or Wi-Fi drops a flow), and cuts.
 */
import { type Server, type Socket, createServer, connect } from "node:net";

export interface TcpProxy {
  /** `ws://127.0.0.1:<port>/graphql` style URLs: the proxy's port. */
  readonly port: number;
  /** Each chunk waits a random delay in [0, maxMs] (0: none) before it is forwarded. */
  setDelay(maxMs: number): void;
  /** True: forward nothing (data is held back, sockets stay open). False: deliver what was held. */
  setBlackhole(on: boolean): void;
  /** Destroys every open connection (new ones still work). */
  cutAll(): void;
  /** Called with every chunk as it is forwarded (`toServer`: client to server). */
  onForward: ((toServer: boolean, chunk: Buffer) => void) | undefined;
  /** Connections accepted so far. */
  readonly accepted: number;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  let delayMs = 0;
  let blackhole = false;
  let accepted = 0;
  const sockets = new Set<Socket>();
  /** Per direction: chunks waiting to be forwarded, in order. */
  const pipes = new Set<{ flush(): void }>();

  const pipe = (from: Socket, to: Socket, toServer: boolean) => {
    const held: Buffer[] = [];
    let busy = false;
    const pump = () => {
      if (busy || blackhole) return;
      const chunk = held.shift();
      if (!chunk) return;
      busy = true;
      const go = () => {
        busy = false;
        if (blackhole) {
          held.unshift(chunk);
          return;
        }
        if (!to.destroyed) {
          to.write(chunk);
          proxy.onForward?.(toServer, chunk);
        }
        pump();
      };
      if (delayMs > 0) setTimeout(go, Math.random() * delayMs);
      else go();
    };
    const p = { flush: pump };
    pipes.add(p);
    from.on("data", (chunk: Buffer) => {
      held.push(chunk);
      pump();
    });
    from.on("close", () => pipes.delete(p));
  };

  const server: Server = createServer((client) => {
    accepted++;
    const upstream = connect(targetPort, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => {
        sockets.delete(s);
        // A real close passes through (unless partitioned: then nothing passes, not even that).
        if (!blackhole) (s === client ? upstream : client).destroy();
      });
    }
    pipe(client, upstream, true);
    pipe(upstream, client, false);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  const proxy: TcpProxy = {
    onForward: undefined,
    port,
    get accepted() {
      return accepted;
    },
    setDelay(ms) {
      delayMs = ms;
    },
    setBlackhole(on) {
      blackhole = on;
      if (!on) for (const p of [...pipes]) p.flush();
    },
    cutAll() {
      for (const s of [...sockets]) s.destroy();
    },
    async close() {
      for (const s of [...sockets]) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return proxy;
}
