/**
 * `kora serve` (what `npm start` runs): serves Kora on PORT (default 4000) with GraphiQL at
 * /graphql and the console at /console, on the server PostgreSQL named by DATABASE_URL or else
 * on an embedded PostgreSQL (PGlite) in KORA_DATA_DIR. Environment: PORT, HOST, DATABASE_URL,
 * KORA_DATA_DIR (default ./.kora), KORA_SCHEMA (default kora), KORA_MAX_MUTATION_BYTES,
 * LOG_LEVEL (default info), KORA_CONFIG (like --config), KORA_CONSOLE (docs/console.md).
 */
import { pino } from "pino";
import { openStore } from "../core/store/open.ts";
import { loadConfig, prepareConfig } from "./config.ts";
import { consoleEnabled } from "./console.ts";
import { type EnvSettings, splitTimeouts } from "./settings.ts";

export async function serve(env: EnvSettings, options: { config?: string | undefined }): Promise<void> {
  const log = pino({ level: env.logLevel });
  // Last line of defence: no known path leaves a rejection unhandled (the fault suite checks that
  // this line is never logged), but a gateway that stops serving over one would lose every watch.
  process.on("unhandledRejection", (reason) => log.error({ err: reason }, "BUG: unhandled rejection; the process keeps serving"));
  // The server's modules (yoga, the schema, graphql-ws) take the longest to load: start now,
  // while the config and rules load, so a start pays for the slower of the two, not the sum.
  const serverModule = import("./index.ts");
  serverModule.catch(() => {}); // a failure is reported where it is awaited
  try {
    // Environment, config and rules first: a mistake fails start-up before any store opens.
    // The store's driver loads meanwhile (PGlite's WebAssembly takes a while to compile).
    const loaded = await loadConfig(options.config ?? env.config);
    if (loaded.file) log.info({ file: loaded.file }, `config loaded from ${loaded.file}`);
    const prepared = prepareConfig(loaded, log);
    const { config } = loaded;
    const timeouts = splitTimeouts({ ...config.timeouts, ...env.timeouts });
    const [store, { startKora }] = await Promise.all([
      openStore({
        databaseUrl: env.databaseUrl,
        dataDir: env.dataDir,
        schema: env.schema,
        timeouts: timeouts.store,
        feed: timeouts.feed,
        // A lost connection is retried by the store itself; the log says what happened.
        onError: (error) => log.warn({ err: error }, `store connection failed: ${error instanceof Error ? error.message : String(error)}`),
      }),
      serverModule,
    ]);
    const limits = { ...config.limits, ...env.limits };
    const kora = await startKora({
      store,
      log,
      port: env.port,
      ...(env.host ? { host: env.host } : {}),
      limits,
      interceptors: prepared.interceptors,
      authenticate: prepared.authenticate,
      ...(config.documentLimits ? { documentLimits: config.documentLimits } : {}),
      ...(config.operationLimits ? { operationLimits: config.operationLimits } : {}),
      ...(config.cors ? { cors: config.cors } : {}),
      ...(config.rateLimits !== undefined ? { rateLimits: config.rateLimits } : {}),
      ...(config.trustedProxies ? { trustedProxies: config.trustedProxies } : {}),
      ...(config.watchBuffer !== undefined ? { watchBuffer: config.watchBuffer } : {}),
      ...(config.chain ? { chain: config.chain } : {}),
      ...(timeouts.requestTimeoutMs !== undefined ? { requestTimeoutMs: timeouts.requestTimeoutMs } : {}),
      keepAlive: { ...timeouts.keepAlive, ...(config.socketBufferBytes ? { maxBufferedBytes: config.socketBufferBytes } : {}) },
      console: { ...config.console, ...env.console },
    });
    const consoleUrl = consoleEnabled({ ...config.console, ...env.console }) ? kora.url.replace(/\/graphql$/, "/console") : undefined;
    log.info({ url: kora.url, console: consoleUrl, store: store.description }, `Kora is serving ${kora.url} (GraphiQL) on ${store.description}`);
    // Each URL is followed by a space: scripts (and tests) take the text up to it.
    console.log(`Kora: GraphiQL at ${kora.url}${consoleUrl ? ` — console at ${consoleUrl}` : ""} — store: ${store.description}`);

    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, "shutting down: finishing in-flight writes");
      kora.close().then(
        () => process.exit(0),
        (error) => {
          log.error({ err: error }, "shutdown failed");
          process.exit(1);
        },
      );
    };
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGTERM", () => stop("SIGTERM"));
  } catch (error) {
    log.error({ err: error }, "Kora failed to start");
    // Also in plain words on stderr: a bad rules file names its file, line and pattern here.
    console.error(`Kora failed to start: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }
}
