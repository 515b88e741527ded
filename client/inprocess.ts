/**
 * An in-process transport over a real gateway: the same client code, the same gateway, store,
 * conflict resolution and watch hub as over WebSocket, without sockets. Used by the property test
 * (hundreds of schedules in seconds) and handy for server-side code that embeds a client. Faults
 * can be injected: go offline, or cut the connection after the next write commits but before
 * its reply arrives.
 */
import { KoraError } from "../core/errors.ts";
import type { Caller, Gateway } from "../core/gateway.ts";
import { mutationFromInput } from "../core/tree.ts";
import type { Path } from "../core/types.ts";
import { type Connection, ServerError, type Sink, type Transport, type WireEvent, type WireResult } from "./transport.ts";

export interface InProcessTransport extends Transport {
  /** False: connections are refused and open ones are cut. */
  online: boolean;
  setOnline(online: boolean): void;
  /** Cuts the connection after the next write commits, before its reply. */
  cutAfterNextCommit(): void;
  /** Writes committed whose reply was dropped. */
  readonly cutCommits: number;
}

function toServerError(error: unknown): unknown {
  if (error instanceof KoraError) return new ServerError(error.code, error.message);
  return error;
}

export function inProcessTransport(gateway: Gateway, caller?: Caller): InProcessTransport {
  const open = new Set<{ cut: () => void }>();
  let cutNext = false;
  let cutCommits = 0;
  const t: InProcessTransport = {
    online: true,
    get cutCommits() {
      return cutCommits;
    },
    setOnline(online) {
      t.online = online;
      if (!online) for (const c of [...open]) c.cut();
    },
    cutAfterNextCommit() {
      cutNext = true;
    },
    async connect(onClose) {
      await Promise.resolve();
      if (!t.online) throw new Error("offline");
      let alive = true;
      const stops = new Set<() => void>();
      const handle = {
        cut() {
          if (!alive) return;
          alive = false;
          open.delete(handle);
          for (const s of stops) s();
          onClose(new Error("connection cut"));
        },
      };
      open.add(handle);
      const conn: Connection = {
        watch(path: Path, since: string | undefined, sink: Sink<WireEvent>) {
          let stopped = false;
          let close: (() => void) | undefined;
          const stop = () => {
            stopped = true;
            close?.();
          };
          stops.add(stop);
          (async () => {
            if (since !== undefined && !/^\d+$/.test(since)) throw new ServerError("BAD_USER_INPUT", "bad since");
            const w = await gateway.watch(path, { since: since === undefined ? undefined : Number(since) }, caller);
            close = () => w.close();
            if (stopped) return w.close();
            for await (const e of w) {
              if (stopped || !alive) break;
              sink.next({ version: String(e.version), snapshot: e.snapshot, merge: e.mutation.merge, delete: e.mutation.delete });
            }
          })().catch((error) => {
            if (!stopped && alive) sink.error(toServerError(error));
          });
          return stop;
        },
        async write(request): Promise<WireResult> {
          if (!alive) throw new Error("connection closed");
          let result: Awaited<ReturnType<Gateway["commit"]>>;
          try {
            const m = mutationFromInput({ merge: request.merge, delete: request.delete }, gateway.limits);
            result = await gateway.commit(m, caller, { ts: request.ts, writeId: request.writeId });
          } catch (error) {
            throw toServerError(error);
          }
          if (cutNext) {
            cutNext = false;
            cutCommits++;
            handle.cut();
          }
          if (!alive) throw new Error("connection lost before the reply");
          return {
            version: String(result.version),
            merge: result.mutation.merge,
            delete: result.mutation.delete,
            ts: result.ts ?? null,
            lost: (result.lost ?? []).map((part) => ({ path: [...part.path], winnerTs: part.winnerTs })),
          };
        },
        close() {
          alive = false;
          open.delete(handle);
          for (const s of stops) s();
        },
      };
      return conn;
    },
  };
  return t;
}
