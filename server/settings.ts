/**
 * Checks what the operator hands Kora before anything starts: the config file's default export
 * (against a JSON Schema, with ajv) and the environment variables. A typo (`limit` for `limits`),
 * a string where a number belongs or `PORT=80a` fails start-up with a message naming the file or
 * variable and the field, instead of being ignored (a NaN limit would disable the limit).
 */
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import type { Limits } from "../core/types.ts";
import type { KoraConfig } from "./config.ts";

const positiveInt = { type: "integer", minimum: 1 } as const;

/** Deadlines and intervals, in milliseconds (docs/operations.md has what each bounds and its default). */
export interface Timeouts {
  /** A client's read, write or new watch waiting for the store (0: none). Default 10000. */
  requestMs: number;
  /** Opening a PostgreSQL connection, including the wait for a pool slot. Default 3000. */
  connectMs: number;
  /** PostgreSQL `statement_timeout`. Default 10000. */
  statementMs: number;
  /** PostgreSQL `lock_timeout` (the version lock). Default 5000. */
  lockMs: number;
  /** PostgreSQL `idle_in_transaction_session_timeout`. Default 15000. */
  idleInTransactionMs: number;
  /** Client-side deadline of one statement (frozen backend, half-open socket). Default statementMs + 2000. */
  queryMs: number;
  /** Change-feed heartbeat interval. Default 500. */
  feedHeartbeatMs: number;
  /** LISTEN counts as deaf after this long without its heartbeat. Default 2000. */
  feedDeafAfterMs: number;
  /** Polling interval of the change log while LISTEN is deaf. Default 250. */
  feedPollMs: number;
  /** The log's head is compared with the feed this often, always. Default 5000. */
  feedCheckMs: number;
  /** WebSocket ping interval (0: no keep-alive). Default 12000. */
  wsPingMs: number;
  /** A WebSocket is closed when a pong has not come this long after its ping. Default 12000. */
  wsPongTimeoutMs: number;
}

export const TIMEOUT_FIELDS = [
  "requestMs",
  "connectMs",
  "statementMs",
  "lockMs",
  "idleInTransactionMs",
  "queryMs",
  "feedHeartbeatMs",
  "feedDeafAfterMs",
  "feedPollMs",
  "feedCheckMs",
  "wsPingMs",
  "wsPongTimeoutMs",
] as const satisfies readonly (keyof Timeouts)[];

/** Environment variables for the timeouts operators tune most (they override the config file). */
const TIMEOUT_ENV: Record<string, keyof Timeouts> = {
  KORA_REQUEST_TIMEOUT_MS: "requestMs",
  KORA_CONNECT_TIMEOUT_MS: "connectMs",
  KORA_STATEMENT_TIMEOUT_MS: "statementMs",
  KORA_LOCK_TIMEOUT_MS: "lockMs",
  KORA_IDLE_IN_TRANSACTION_TIMEOUT_MS: "idleInTransactionMs",
};
const stringOrList = { anyOf: [{ type: "string" }, { type: "array", items: { type: "string" } }] } as const;
const budget = {
  type: "object",
  additionalProperties: false,
  properties: { perSecond: { type: "number", exclusiveMinimum: 0 }, burst: positiveInt },
} as const;
const budgets = {
  type: "object",
  additionalProperties: false,
  properties: { writes: budget, reads: budget, subscriptions: budget },
} as const;

/** The config's shape. Functions (interceptor hooks, `authenticate`) are checked separately. */
const CONFIG_SCHEMA = {
  type: "object",
  additionalProperties: false,
  properties: {
    interceptors: { type: "array", items: { type: "object" } },
    rules: { anyOf: [{ type: "string", minLength: 1 }, { const: false }] },
    watchRules: { type: "boolean" },
    auth: {
      type: "object",
      additionalProperties: false,
      properties: {
        jwt: {
          type: "object",
          additionalProperties: false,
          properties: {
            secret: { type: "string", minLength: 1 },
            jwksFile: { type: "string", minLength: 1 },
            issuer: stringOrList,
            audience: stringOrList,
            algorithms: { type: "array", items: { type: "string" }, minItems: 1 },
            clockToleranceSec: { type: "number", minimum: 0 },
          },
        },
        authenticate: {},
      },
    },
    limits: {
      type: "object",
      additionalProperties: false,
      properties: { maxKeyBytes: positiveInt, maxDepth: positiveInt, maxMutationBytes: positiveInt },
    },
    documentLimits: {
      type: "object",
      additionalProperties: false,
      properties: {
        maxBytes: positiveInt,
        maxNesting: positiveInt,
        maxTokens: positiveInt,
        maxDepth: positiveInt,
        maxAliases: { type: "integer", minimum: 0 },
        maxDirectives: { type: "integer", minimum: 0 },
        maxCost: positiveInt,
      },
    },
    operationLimits: {
      type: "object",
      additionalProperties: false,
      properties: { maxReadLeaves: positiveInt, maxReadBytes: positiveInt },
    },
    cors: {
      type: "object",
      additionalProperties: false,
      required: ["origins"],
      properties: {
        origins: { type: "array", items: { type: "string", minLength: 1 } },
        credentials: { type: "boolean" },
        maxAgeSec: { type: "integer", minimum: 0 },
      },
    },
    rateLimits: {
      anyOf: [
        { const: false },
        {
          type: "object",
          additionalProperties: false,
          properties: {
            subject: budgets,
            address: budgets,
            maxConnectionsPerAddress: positiveInt,
            maxSubscriptionsPerConnection: positiveInt,
          },
        },
      ],
    },
    trustedProxies: { type: "array", items: { type: "string", minLength: 1 } },
    watchBuffer: positiveInt,
    timeouts: {
      type: "object",
      additionalProperties: false,
      properties: Object.fromEntries(TIMEOUT_FIELDS.map((f) => [f, { type: "integer", minimum: 0 }])),
    },
    socketBufferBytes: positiveInt,
    console: {
      type: "object",
      additionalProperties: false,
      properties: { enabled: { type: "boolean" }, adminToken: { type: "string", minLength: 16 } },
    },
    chain: {
      type: "object",
      additionalProperties: false,
      properties: { maxRounds: positiveInt, effectPollMs: positiveInt, effectLeaseMs: positiveInt },
    },
  },
} as const;

// Compiled on first use: every `kora` command reads the environment through this module, and
// compiling the schema is most of what loading it costs.
let compiled: ValidateFunction | undefined;
function validateShape(config: unknown): boolean {
  compiled ??= new Ajv({ allErrors: true, strict: true }).compile(CONFIG_SCHEMA);
  const ok = compiled(config);
  validateShape.errors = compiled.errors;
  return ok;
}
validateShape.errors = undefined as ErrorObject[] | null | undefined;

function describe(e: ErrorObject): string {
  const at = e.instancePath ? e.instancePath.slice(1).replaceAll("/", ".") : "the config";
  if (e.keyword === "additionalProperties") {
    const name = (e.params as { additionalProperty: string }).additionalProperty;
    return `${at === "the config" ? "" : `${at}: `}unknown field "${name}"`;
  }
  return `${at} ${e.message ?? "is invalid"}`;
}

/** Throws one error listing every problem of `config`, prefixed with `source` (the file). */
export function checkConfig(config: unknown, source: string): KoraConfig {
  const problems: string[] = [];
  if (!validateShape(config)) {
    // anyOf reports each branch; the first message per field is enough.
    const seen = new Set<string>();
    for (const e of validateShape.errors ?? []) {
      if (e.keyword === "anyOf" || seen.has(e.instancePath)) continue;
      seen.add(e.instancePath);
      problems.push(describe(e));
    }
  } else {
    const c = config as KoraConfig;
    if (c.auth?.authenticate !== undefined && typeof c.auth.authenticate !== "function") {
      problems.push("auth.authenticate must be a function");
    }
    c.interceptors?.forEach((interceptor, i) => {
      for (const [key, value] of Object.entries(interceptor)) {
        if (HOOKS.has(key) && typeof value !== "function") problems.push(`interceptors.${i}.${key} must be a function`);
        else if (!HOOKS.has(key) && !INTERCEPTOR_FIELDS.has(key)) problems.push(`interceptors.${i}: unknown field "${key}"`);
      }
    });
  }
  if (problems.length > 0) throw new Error(`${source}: ${problems.join("; ")}`);
  return config as KoraConfig;
}

const HOOKS = new Set(["beforeMutation", "effect", "runEffect", "afterMutation", "beforeRead", "resolveQuery"]);
const INTERCEPTOR_FIELDS = new Set(["name", "path", "effectRetry"]);

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** What the CLI reads from the environment (docs/decisions.md lists the variables). */
export interface EnvSettings {
  logLevel: string;
  port: number;
  host: string | undefined;
  databaseUrl: string | undefined;
  dataDir: string;
  schema: string;
  limits: Partial<Limits>;
  timeouts: Partial<Timeouts>;
  config: string | undefined;
  /** KORA_CONSOLE=on|off and KORA_CONSOLE_TOKEN (docs/console.md); override the config's. */
  console?: { enabled?: boolean; adminToken?: string };
}

/** Parses the environment; throws naming the variable and what it must be. */
export function settingsFromEnv(env: NodeJS.ProcessEnv = process.env): EnvSettings {
  const int = (name: string, min: number, max: number): number | undefined => {
    const raw = env[name];
    if (raw === undefined || raw === "") return undefined;
    if (!/^\d+$/.test(raw.trim()) || Number(raw) < min || Number(raw) > max) {
      throw new Error(`${name}=${JSON.stringify(raw.slice(0, 40))} must be a whole number from ${min} to ${max}`);
    }
    return Number(raw);
  };
  const schema = env.KORA_SCHEMA || "kora";
  // Identifiers are quoted in SQL (core/store/db.ts); this keeps them to what an operator means.
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema)) {
    throw new Error(`KORA_SCHEMA=${JSON.stringify(schema.slice(0, 70))} must be a PostgreSQL identifier: letters, digits and _, at most 63, not starting with a digit`);
  }
  const logLevel = env.LOG_LEVEL || "info";
  if (!LOG_LEVELS.includes(logLevel)) throw new Error(`LOG_LEVEL=${JSON.stringify(logLevel.slice(0, 40))} must be one of ${LOG_LEVELS.join(", ")}`);
  const maxMutationBytes = int("KORA_MAX_MUTATION_BYTES", 1, 1024 * 1024 * 1024);
  const timeouts: Partial<Timeouts> = {};
  for (const [name, field] of Object.entries(TIMEOUT_ENV)) {
    const ms = int(name, 0, 24 * 60 * 60 * 1000);
    if (ms !== undefined) timeouts[field] = ms;
  }
  const consoleSetting = env.KORA_CONSOLE?.trim().toLowerCase();
  if (consoleSetting && !["on", "off"].includes(consoleSetting)) {
    throw new Error(`KORA_CONSOLE=${JSON.stringify(consoleSetting.slice(0, 40))} must be on or off`);
  }
  const consoleToken = env.KORA_CONSOLE_TOKEN || undefined;
  if (consoleToken !== undefined && consoleToken.length < 16) throw new Error("KORA_CONSOLE_TOKEN must be at least 16 characters (it is the console's admin credential)");
  return {
    logLevel,
    port: int("PORT", 0, 65535) ?? 4000,
    host: env.HOST || undefined,
    databaseUrl: env.DATABASE_URL || undefined,
    dataDir: env.KORA_DATA_DIR || "./.kora",
    schema,
    limits: maxMutationBytes === undefined ? {} : { maxMutationBytes },
    timeouts,
    config: env.KORA_CONFIG || undefined,
    ...(consoleSetting || consoleToken
      ? {
          console: {
            ...(consoleSetting ? { enabled: consoleSetting === "on" } : {}),
            ...(consoleToken ? { adminToken: consoleToken } : {}),
          },
        }
      : {}),
  };
}

/** The parts of `Timeouts` each layer takes: the store's deadlines and feed checks, the server's. */
export function splitTimeouts(t: Partial<Timeouts>) {
  const pick = <K extends string>(entries: [K, number | undefined][]) =>
    Object.fromEntries(entries.filter(([, v]) => v !== undefined)) as Partial<Record<K, number>>;
  return {
    store: pick([
      ["connectMs", t.connectMs],
      ["statementMs", t.statementMs],
      ["lockMs", t.lockMs],
      ["idleInTransactionMs", t.idleInTransactionMs],
      ["queryMs", t.queryMs],
    ]),
    feed: pick([
      ["heartbeatMs", t.feedHeartbeatMs],
      ["deafAfterMs", t.feedDeafAfterMs],
      ["pollMs", t.feedPollMs],
      ["checkMs", t.feedCheckMs],
    ]),
    keepAlive: pick([
      ["pingMs", t.wsPingMs],
      ["pongTimeoutMs", t.wsPongTimeoutMs],
    ]),
    requestTimeoutMs: t.requestMs,
  };
}
