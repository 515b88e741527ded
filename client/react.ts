/**
 * `kora/react`: React bindings for `kora/client` (docs/client.md, "React"). A provider and hooks on
 * `useSyncExternalStore`, so every render reads one consistent value (no tearing under concurrent
 * rendering) and server rendering gets a stable empty snapshot instead of touching the client.
 * Works with a `KoraClient` and with a `TabClient` (client/tabs.ts). No JSX here: the package
 * builds without a JSX setting.
 */
import { type ReactNode, createContext, createElement, useCallback, useContext, useMemo, useState, useSyncExternalStore } from "react";
import type { Node, Path } from "../core/types.ts";
import type { Observable, PendingWrite, Status } from "./client.ts";

/** What the hooks use of a client: `KoraClient` and `TabClient` both have it. */
export interface ReactiveClient {
  readonly status: Observable<Status>;
  readonly pending: Observable<number>;
  get(path: Path): Node | undefined;
  watch(path: Path, listener: (value: Node | undefined) => void): () => void;
  merge(path: Path, value: unknown): Promise<PendingWrite>;
  delete(path: Path): Promise<PendingWrite>;
  mutate(input: { merge?: unknown; delete?: unknown }): Promise<PendingWrite>;
}

const KoraContext = createContext<ReactiveClient | undefined>(undefined);

/** Makes `client` available to the hooks below it. */
export function KoraProvider(props: { client: ReactiveClient; children?: ReactNode }): ReactNode {
  return createElement(KoraContext.Provider, { value: props.client }, props.children);
}

/** The client of the nearest `KoraProvider`. */
export function useKora(): ReactiveClient {
  const client = useContext(KoraContext);
  if (!client) throw new Error("useKora and the Kora hooks need a <KoraProvider client={...}> above them");
  return client;
}

export interface WatchState<T> {
  /** The value at the path: the local replica (server data plus this device's pending writes). */
  value: T | undefined;
  /** True until the watch delivered its first value (from storage, at once even offline); always true on the server. */
  loading: boolean;
  /** The client's connection status: `online` means the value is confirmed and live. */
  status: Status;
}

/**
 * Watches `path` and re-renders when its value changes (local writes at once, remote changes as
 * they arrive). `T` types the value (e.g. a type from the codegen output or your own); Kora does
 * not check it.
 */
export function useWatch<T = Node>(path: Path): WatchState<T> {
  const client = useKora();
  const key = JSON.stringify(path);
  const store = useMemo(() => {
    const at = JSON.parse(key) as Path;
    let snapshot: { value: Node | undefined; loading: boolean } = { value: client.get(at), loading: true };
    return {
      subscribe(onChange: () => void) {
        return client.watch(at, (value) => {
          snapshot = { value, loading: false };
          onChange();
        });
      },
      get: () => snapshot,
    };
  }, [client, key]);
  const snap = useSyncExternalStore(store.subscribe, store.get, serverWatch);
  const status = useStatus();
  return { value: snap.value as T | undefined, loading: snap.loading, status };
}

const SERVER_WATCH = { value: undefined, loading: true };
const serverWatch = () => SERVER_WATCH;

/** The client's status (`online`, `syncing`, `offline`); `offline` on the server. */
export function useStatus(): Status {
  const client = useKora();
  return useSyncExternalStore(
    useCallback((onChange: () => void) => client.status.subscribe(onChange), [client]),
    () => client.status.value,
    () => "offline",
  );
}

/** How many writes are not yet confirmed by the server; 0 on the server. */
export function usePending(): number {
  const client = useKora();
  return useSyncExternalStore(
    useCallback((onChange: () => void) => client.pending.subscribe(onChange), [client]),
    () => client.pending.value,
    () => 0,
  );
}

export interface MutationState {
  merge(path: Path, value: unknown): Promise<PendingWrite | undefined>;
  delete(path: Path): Promise<PendingWrite | undefined>;
  mutate(input: { merge?: unknown; delete?: unknown }): Promise<PendingWrite | undefined>;
  /** Writes made through this hook that the server has not confirmed yet (offline: they wait). */
  waiting: number;
  /** The last write the server refused (it was rolled back), or input refused at the call. */
  error: Error | undefined;
}

/**
 * Writes with state for the component: each call applies at once (optimistic) and resolves with
 * the committed write, or with undefined when it was refused (then `error` tells why). Never
 * rejects, so an event handler can ignore the promise.
 */
export function useMutation(): MutationState {
  const client = useKora();
  const [waiting, setWaiting] = useState(0);
  const [error, setError] = useState<Error | undefined>(undefined);
  const track = useCallback((start: () => Promise<PendingWrite>): Promise<PendingWrite | undefined> => {
    let p: Promise<PendingWrite>;
    try {
      p = start();
    } catch (e) {
      setError(e as Error);
      return Promise.resolve(undefined);
    }
    setWaiting((n) => n + 1);
    return p.then(
      (w) => {
        setWaiting((n) => n - 1);
        return w;
      },
      (e: unknown) => {
        setWaiting((n) => n - 1);
        setError(e as Error);
        return undefined;
      },
    );
  }, []);
  return {
    merge: useCallback((path: Path, value: unknown) => track(() => client.merge(path, value)), [client, track]),
    delete: useCallback((path: Path) => track(() => client.delete(path)), [client, track]),
    mutate: useCallback((input: { merge?: unknown; delete?: unknown }) => track(() => client.mutate(input)), [client, track]),
    waiting,
    error,
  };
}
