/**
 * Hostile operator input (server/settings.ts): config files and environment variables with wrong
 * types, typos, unknown fields and odd characters fail start-up with a message naming the file or
 * variable and the field; every config the examples ship passes.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../server/config.ts";
import { checkConfig, settingsFromEnv } from "../server/settings.ts";
import { runCliToExit } from "./helpers/server.ts";

const bad: [string, unknown, RegExp][] = [
  ["a typo at the top", { limit: { maxDepth: 4 } }, /unknown field "limit"/],
  ["__proto__ as a field", JSON.parse('{"__proto__": {"limits": 1}}'), /unknown field "__proto__"/],
  ["a string limit", { limits: { maxDepth: "32" } }, /limits\.maxDepth must be integer/],
  ["a zero limit", { limits: { maxMutationBytes: 0 } }, /limits\.maxMutationBytes must be >= 1/],
  ["a fractional limit", { limits: { maxKeyBytes: 1.5 } }, /limits\.maxKeyBytes must be integer/],
  ["an unknown limit", { limits: { maxWidth: 3 } }, /limits: unknown field "maxWidth"/],
  ["rules as a number", { rules: 1 }, /rules/],
  ["rules as true", { rules: true }, /rules/],
  ["an empty rules path", { rules: "" }, /rules/],
  ["interceptors as an object", { interceptors: { a: 1 } }, /interceptors must be array/],
  ["an interceptor hook that is not a function", { interceptors: [{ beforeMutation: "yes" }] }, /interceptors\.0\.beforeMutation must be a function/],
  ["a misspelt hook", { interceptors: [{ name: "x", beforeMutaton() {} }] }, /interceptors\.0: unknown field "beforeMutaton"/],
  ["a jwt typo", { auth: { jwt: { secrett: "s" } } }, /auth\.jwt: unknown field "secrett"/],
  ["an empty secret", { auth: { jwt: { secret: "" } } }, /auth\.jwt\.secret/],
  ["a non-function authenticate", { auth: { authenticate: "me" } }, /auth\.authenticate must be a function/],
  ["a negative watch buffer", { watchBuffer: -1 }, /watchBuffer must be >= 1/],
  ["a document limit of the wrong type", { documentLimits: { maxBytes: [1] } }, /documentLimits\.maxBytes must be integer/],
  ["chain options with a typo", { chain: { maxRound: 2 } }, /chain: unknown field "maxRound"/],
];

describe("config files", () => {
  it.each(bad)("refuses %s, naming the file and the field", (_name, config, message) => {
    expect(() => checkConfig(config, "config file /x/kora.config.ts")).toThrow(message);
    expect(() => checkConfig(config, "config file /x/kora.config.ts")).toThrow(/^config file \/x\/kora\.config\.ts: /);
  });

  it("lists every problem at once", () => {
    const check = () => checkConfig({ limits: { maxDepth: "a", maxKeyBytes: -1 }, watchBuffer: "x" }, "f");
    for (const m of [/limits\.maxDepth must be integer/, /limits\.maxKeyBytes must be >= 1/, /watchBuffer must be integer/]) expect(check).toThrow(m);
  });

  it("checks timeouts: known fields, whole milliseconds", () => {
    expect(checkConfig({ timeouts: { requestMs: 3000, feedPollMs: 100 }, socketBufferBytes: 1024 }, "f")).toBeTruthy();
    expect(() => checkConfig({ timeouts: { requestMs: "3s" } }, "f")).toThrow(/timeouts\.requestMs must be integer/);
    expect(() => checkConfig({ timeouts: { requestTimeout: 3000 } }, "f")).toThrow(/timeouts: unknown field "requestTimeout"/);
    expect(() => checkConfig({ timeouts: { lockMs: -5 } }, "f")).toThrow(/timeouts\.lockMs must be >= 0/);
  });

  it("accepts every config the repository ships", async () => {
    for (const file of ["kora.config.ts", "examples/company/kora.config.ts", "examples/company/kora.rules.config.ts", "examples/todo/kora.config.ts", "examples/offline-todo/kora.config.ts"]) {
      const loaded = await loadConfig(file);
      expect(loaded.file).toContain(file);
    }
  });

  it("loadConfig refuses a bad file with its path", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kora-config-"));
    const file = join(dir, "kora.config.ts");
    writeFileSync(file, "export default { limits: { maxDepth: 'deep' } };\n");
    await expect(loadConfig(file)).rejects.toThrow(new RegExp(`config file ${file.replaceAll(/[.\\/]/g, "\\$&")}: limits\\.maxDepth must be integer`));
  });
});

describe("environment variables", () => {
  it("defaults", () => {
    expect(settingsFromEnv({})).toEqual({
      logLevel: "info",
      port: 4000,
      host: undefined,
      databaseUrl: undefined,
      dataDir: "./.kora",
      schema: "kora",
      limits: {},
      timeouts: {},
      config: undefined,
    });
    expect(settingsFromEnv({ PORT: "0", KORA_MAX_MUTATION_BYTES: "1024", KORA_SCHEMA: "app_2" })).toMatchObject({
      port: 0,
      limits: { maxMutationBytes: 1024 },
      schema: "app_2",
    });
    expect(settingsFromEnv({ KORA_REQUEST_TIMEOUT_MS: "2500", KORA_LOCK_TIMEOUT_MS: "0", KORA_CONNECT_TIMEOUT_MS: "900" }).timeouts).toEqual({
      requestMs: 2500,
      lockMs: 0,
      connectMs: 900,
    });
  });

  const badEnv: [Record<string, string>, RegExp][] = [
    [{ PORT: "80a" }, /^PORT="80a" must be a whole number from 0 to 65535/],
    [{ PORT: "70000" }, /PORT="70000"/],
    [{ PORT: "-1" }, /PORT="-1"/],
    [{ PORT: "4e3" }, /PORT="4e3"/],
    [{ KORA_MAX_MUTATION_BYTES: "NaN" }, /KORA_MAX_MUTATION_BYTES="NaN" must be a whole number/],
    [{ KORA_MAX_MUTATION_BYTES: "0" }, /KORA_MAX_MUTATION_BYTES="0"/],
    [{ KORA_MAX_MUTATION_BYTES: "1.5" }, /KORA_MAX_MUTATION_BYTES="1.5"/],
    [{ KORA_SCHEMA: 'kora"; drop schema public; --' }, /^KORA_SCHEMA=.* must be a PostgreSQL identifier/],
    [{ KORA_SCHEMA: "1kora" }, /KORA_SCHEMA="1kora"/],
    [{ KORA_SCHEMA: "kora-prod" }, /KORA_SCHEMA="kora-prod"/],
    [{ KORA_SCHEMA: "kóra" }, /KORA_SCHEMA="kóra"/],
    [{ KORA_SCHEMA: "k\u0000" }, /KORA_SCHEMA="k\\u0000"/],
    [{ KORA_SCHEMA: "k".repeat(64) }, /KORA_SCHEMA=/],
    [{ KORA_REQUEST_TIMEOUT_MS: "5s" }, /^KORA_REQUEST_TIMEOUT_MS="5s" must be a whole number from 0 to 86400000/],
    [{ KORA_STATEMENT_TIMEOUT_MS: "-1" }, /KORA_STATEMENT_TIMEOUT_MS="-1"/],
    [{ LOG_LEVEL: "loud" }, /^LOG_LEVEL="loud" must be one of fatal, error, warn, info, debug, trace, silent/],
  ];
  it.each(badEnv)("refuses %o", (env, message) => {
    expect(() => settingsFromEnv(env)).toThrow(message);
  });

  it("npm start exits with the message before opening any store", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kora-env-"));
    const { code, stderr } = await runCliToExit([], { PORT: "80a", KORA_DATA_DIR: join(dir, "data"), DATABASE_URL: "" });
    expect(code).toBe(1);
    expect(stderr).toContain('Kora failed to start: PORT="80a" must be a whole number from 0 to 65535');
  });
});
