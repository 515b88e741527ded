/**
 * The server's configuration file: `kora.config.ts` (or `--config PATH`) default-exports
 * `defineConfig({...})`. A `.ts` config is imported through tsx's loader API (loaded only then),
 * so the compiled server runs plain JavaScript and a config is still plain typed code.
 * See docs/interceptors.md and docs/auth.md for what each part does.
 */
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Logger } from "../core/gateway.ts";
import type { Limits } from "../core/types.ts";
import type { ChainOptions } from "../interceptors/chain.ts";
import { type RulesEngine, createRulesEngine } from "../interceptors/rules.ts";
import type { Interceptor } from "../interceptors/types.ts";
import { type AuthOptions, type Authenticator, createAuthenticator } from "./auth.ts";
import { type CorsOptions, createOriginPolicy } from "./crosssite.ts";
import type { ConsoleOptions } from "./console.ts";
import type { DocumentLimits } from "./limits.ts";
import { type DeepPartial, type RateLimits, createAddressOf } from "./rate.ts";
import type { ReadLimits } from "./readbound.ts";
import { type Timeouts, checkConfig } from "./settings.ts";

export interface KoraConfig {
  /** Server-side logic, run in this order after the rules (docs/interceptors.md). */
  interceptors?: Interceptor[];
  /**
   * The rules file (YAML or JSON, docs/rules.md), relative to the config file. Default: the first
   * of `kora.rules.yaml`, `kora.rules.yml`, `kora.rules.json` found beside the config (or in the
   * working directory without one). `false`: no rules. Without rules EVERY CLIENT MAY READ AND
   * WRITE EVERYTHING.
   */
  rules?: string | false;
  /** Reload the rules file when it changes. Default true. */
  watchRules?: boolean;
  /** Token verification (docs/auth.md). Default: none; requests without a token are anonymous. */
  auth?: AuthOptions;
  /** Input limits (key bytes, depth, mutation bytes); defaults in core/types.ts. */
  limits?: Partial<Limits>;
  /** Limits on GraphQL documents (size, nesting, tokens, depth, aliases, directives, cost); defaults in server/limits.ts. */
  documentLimits?: Partial<DocumentLimits>;
  /** What one operation may read (`maxReadLeaves` default 100,000, `maxReadBytes` default 16 MiB): server/readbound.ts. */
  operationLimits?: Partial<ReadLimits>;
  /**
   * Browser origins allowed to call Kora from other origins (docs/security.md). Default none:
   * same origin only. Requests without an Origin header (apps, servers) are always served.
   */
  cors?: CorsOptions;
  /**
   * Token buckets per subject and per client address, connection and subscription caps
   * (docs/security.md, defaults in server/rate.ts); `false` turns them off.
   */
  rateLimits?: DeepPartial<RateLimits> | false;
  /**
   * Reverse proxies whose X-Forwarded-For gives the client address: addresses, CIDR ranges or
   * `loopback`/`linklocal`/`uniquelocal`. Default none (the TCP peer is the client).
   */
  trustedProxies?: string[];
  /** Most undelivered events per watch before it is resynced with a snapshot. Default 1000. */
  watchBuffer?: number;
  /** Deadlines and intervals in milliseconds (docs/operations.md); env variables override them. */
  timeouts?: Partial<Timeouts>;
  /** Most unsent bytes one WebSocket may hold before it is closed (1013). Default 32 MiB. */
  socketBufferBytes?: number;
  /** The data console at /console: on in development, off in production unless enabled (docs/console.md). */
  console?: ConsoleOptions;
  /** Interceptor chain options: cycle bound (`maxRounds`, default 16), effect polling (`effectPollMs`, default 1000). */
  chain?: Omit<ChainOptions, "interceptors" | "limits" | "log">;
}

/** Identity with types: `export default defineConfig({ ... })`. */
export function defineConfig(config: KoraConfig): KoraConfig {
  return config;
}

export const DEFAULT_CONFIG_FILE = "kora.config.ts";
const RULES_FILES = ["kora.rules.yaml", "kora.rules.yml", "kora.rules.json"];

export interface LoadedConfig {
  config: KoraConfig;
  /** The config file, or undefined when none was found. */
  file: string | undefined;
  /** The folder relative paths in the config are resolved from. */
  dir: string;
}

/**
 * Loads `path` (which must exist), or `kora.config.ts` in `cwd` when present, or an empty
 * config. The file's default export is the config.
 */
export async function loadConfig(path: string | undefined, cwd = process.cwd()): Promise<LoadedConfig> {
  const file = path !== undefined ? resolve(cwd, path) : resolve(cwd, DEFAULT_CONFIG_FILE);
  if (!existsSync(file)) {
    if (path !== undefined) throw new Error(`config file ${file} does not exist`);
    return { config: {}, file: undefined, dir: cwd };
  }
  const mod = (await importConfig(file)) as { default?: unknown };
  const config = mod.default;
  if (!config || typeof config !== "object") {
    throw new Error(`config file ${file} must default-export defineConfig({...}); its default export is ${typeof config}`);
  }
  return { config: checkConfig(config, `config file ${file}`), file, dir: dirname(file) };
}

/**
 * TypeScript configs go through tsx's `tsImport` unless a TypeScript-aware loader (tsx, vitest)
 * already runs this very file as TypeScript; JavaScript configs are plain imports.
 */
async function importConfig(file: string): Promise<unknown> {
  const url = pathToFileURL(file).href;
  if (!/\.[cm]?ts$/.test(file) || import.meta.url.endsWith(".ts")) return import(url);
  const { tsImport } = await import("tsx/esm/api");
  return tsImport(url, import.meta.url);
}

export interface PreparedConfig {
  /** Rules first (they judge what clients send), then the config's interceptors. */
  interceptors: Interceptor[];
  authenticate: Authenticator;
  rules: RulesEngine | undefined;
  /** Stops watching the rules file. */
  close(): void;
}

/** Builds the runtime pieces of a config: loads rules (throwing `RulesError`), sets up auth. */
export function prepareConfig(loaded: LoadedConfig, log: Logger): PreparedConfig {
  const { config, dir } = loaded;
  // Settings whose values (not only shapes) can be wrong fail here, before any store opens.
  createOriginPolicy(config.cors);
  createAddressOf(config.trustedProxies);
  let rulesFile: string | undefined;
  if (typeof config.rules === "string") {
    rulesFile = resolve(dir, config.rules);
    if (!existsSync(rulesFile)) throw new Error(`rules file ${rulesFile} (from the config's "rules") does not exist`);
  } else if (config.rules === undefined) {
    rulesFile = RULES_FILES.map((f) => resolve(dir, f)).find((f) => existsSync(f));
  }
  const rules = rulesFile ? createRulesEngine({ file: rulesFile, watch: config.watchRules ?? true, log }) : undefined;
  if (rules) log.info({ file: rulesFile, rules: rules.ruleset.rules.length }, `rules loaded from ${rulesFile}`);
  else {
    log.warn(
      "NO RULES FILE: every client may read and write everything. Add kora.rules.yaml (docs/rules.md) before exposing this server.",
    );
  }
  return {
    interceptors: [...(rules ? [rules.interceptor] : []), ...(config.interceptors ?? [])],
    authenticate: createAuthenticator(config.auth ?? {}),
    rules,
    close: () => rules?.close(),
  };
}
