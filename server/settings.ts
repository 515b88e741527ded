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
const stringOrList = { anyOf: [{ type: "string" }, { type: "array", items: { type: "string" } }] } as const;

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
      properties: { maxBytes: positiveInt, maxNesting: positiveInt, maxTokens: positiveInt, maxDepth: positiveInt },
    },
    watchBuffer: positiveInt,
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
