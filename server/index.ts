/**
 * `startKora`: store + gateway + server in one call, used by the CLI, the tests and embedders.
 */
import { type Gateway, type GatewayOptions, type Logger, createGateway } from "../core/gateway.ts";
import type { Store } from "../core/store.ts";
import { DEFAULT_LIMITS } from "../core/types.ts";
import { type ChainOptions, createInterceptorChain } from "../interceptors/chain.ts";
import type { Interceptor } from "../interceptors/types.ts";
import { createKoraServer, type KoraServer, type KoraServerOptions } from "./http.ts";

export interface StartOptions extends Omit<GatewayOptions, "store" | "log">, Omit<KoraServerOptions, "gateway" | "log"> {
  store: Store;
  log: Logger;
  /** Server-side logic, in order (docs/interceptors.md). Ignored when `pipeline` is given. */
  interceptors?: readonly Interceptor[];
  /** Options of the interceptor chain besides the list (cycle bound, effect polling). */
  chain?: Omit<ChainOptions, "interceptors" | "limits" | "log">;
}

export interface RunningKora {
  readonly url: string;
  readonly port: number;
  readonly gateway: Gateway;
  readonly server: KoraServer;
  close(): Promise<void>;
}

export async function startKora(options: StartOptions): Promise<RunningKora> {
  const gatewayOptions: GatewayOptions = { store: options.store, log: options.log };
  if (options.limits) gatewayOptions.limits = options.limits;
  if (options.watchBuffer !== undefined) gatewayOptions.watchBuffer = options.watchBuffer;
  if (options.retention) gatewayOptions.retention = options.retention;
  if (options.conflicts) gatewayOptions.conflicts = options.conflicts;
  if (options.requestTimeoutMs !== undefined) gatewayOptions.requestTimeoutMs = options.requestTimeoutMs;
  if (options.pipeline) gatewayOptions.pipeline = options.pipeline;
  else if (options.interceptors && options.interceptors.length > 0) {
    gatewayOptions.pipeline = createInterceptorChain({
      ...options.chain,
      interceptors: options.interceptors,
      limits: { ...DEFAULT_LIMITS, ...options.limits },
      log: options.log,
    });
  }
  const gateway = await createGateway(gatewayOptions);
  const server = await createKoraServer({ ...options, gateway });
  return { url: server.url, port: server.port, gateway, server, close: () => server.close() };
}
