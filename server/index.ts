/**
 * `startKora`: store + gateway + server in one call, used by the CLI, the tests and embedders.
 */
import { type Gateway, type GatewayOptions, type Logger, createGateway } from "../core/gateway.ts";
import type { Store } from "../core/store.ts";
import { DEFAULT_LIMITS } from "../core/types.ts";
import { type ChainOptions, createInterceptorChain } from "../interceptors/chain.ts";
import type { Interceptor } from "../interceptors/types.ts";
import { createKoraServer, type KoraServer, type KoraServerOptions } from "./http.ts";
import { type MetricsOptions, createMetrics } from "./metrics.ts";
import { requestLogger } from "./requests.ts";

export interface StartOptions extends Omit<GatewayOptions, "store" | "log">, Omit<KoraServerOptions, "gateway" | "log" | "metrics"> {
  store: Store;
  /** Every line written while a request is handled carries its id (`reqId`, server/requests.ts). */
  log: Logger;
  /**
   * Prometheus metrics at `GET /metrics` (docs/operations.md). Default on; `false` turns them off.
   * The endpoint tells anyone who reaches it how busy the server is: expose it only where scrapers
   * reach it (a proxy rule, or a separate network).
   */
  metrics?: boolean | MetricsOptions;
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
  const log = requestLogger(options.log);
  const metrics = options.metrics === false ? undefined : createMetrics(options.metrics === true ? {} : options.metrics);
  const store = metrics ? metrics.observeStore(options.store) : options.store;
  const gatewayOptions: GatewayOptions = { store, log };
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
      log,
    });
  }
  const gateway = await createGateway(gatewayOptions);
  metrics?.observeGateway(gateway);
  const server = await createKoraServer({ ...options, log, gateway, metrics });
  return { url: server.url, port: server.port, gateway, server, close: () => server.close() };
}
