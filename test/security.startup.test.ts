/**
 * Start-up refuses an unusable security config with a precise message, before any store opens:
 * a JWT whose secret comes from an unset variable, an unreadable or invalid JWKS file, an origin
 * allowlist entry that is not an origin, an unparsable trusted proxy, budgets of the wrong shape.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createAuthenticator } from "../server/auth.ts";
import { checkConfig } from "../server/settings.ts";
import { runCliToExit } from "./helpers/server.ts";

function configFile(body: string): { dir: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), "kora-sec-"));
  const file = join(dir, "kora.config.mjs");
  writeFileSync(file, body);
  return { dir, file };
}

const cases: [string, string, RegExp][] = [
  [
    "a JWT secret read from an unset environment variable",
    "export default { rules: false, auth: { jwt: { secret: process.env.KORA_TEST_SURELY_UNSET_SECRET, issuer: 'me' } } };",
    /auth\.jwt is configured but has no key.*is the environment variable it reads set\?/,
  ],
  [
    "a JWKS file that does not exist",
    "export default { rules: false, auth: { jwt: { jwksFile: '/nonexistent/jwks.json' } } };",
    /auth\.jwt\.jwksFile \/nonexistent\/jwks\.json: ENOENT/,
  ],
  [
    "a CORS wildcard",
    "export default { rules: false, cors: { origins: ['*'] } };",
    /cors\.origins entry "\*" is not an origin/,
  ],
  [
    "a trusted proxy that is not an address",
    "export default { rules: false, trustedProxies: ['my-proxy'] };",
    /trustedProxies: invalid IP address: my-proxy/,
  ],
];

describe("start-up refuses an unusable security config", () => {
  it.each(cases)("%s", async (_name, body, message) => {
    const { dir, file } = configFile(body);
    const { code, stderr } = await runCliToExit(["--config", file], {
      KORA_DATA_DIR: join(dir, "data"),
      DATABASE_URL: "",
      PORT: "0",
    });
    expect(code).toBe(1);
    expect(stderr).toMatch(message);
    expect(stderr).toContain("Kora failed to start");
  });

  it("an unreadable or invalid JWKS file is named with what is wrong", () => {
    const { dir } = configFile("");
    const notJson = join(dir, "a.json");
    writeFileSync(notJson, "{ keys");
    expect(() => createAuthenticator({ jwt: { jwksFile: notJson } })).toThrow(
      new RegExp(`auth\\.jwt\\.jwksFile ${notJson}: .*JSON`),
    );
    const notJwks = join(dir, "b.json");
    writeFileSync(notJwks, '{"kids": []}');
    expect(() => createAuthenticator({ jwt: { jwksFile: notJwks } })).toThrow(/is not a JWKS/);
  });

  it.each([
    [{ cors: { origin: ["https://a.example"] } }, /cors must have required property 'origins'/],
    [{ cors: { origins: "https://a.example" } }, /cors\.origins must be array/],
    [
      { rateLimits: { subject: { writes: { perSecond: 0, burst: 1 } } } },
      /rateLimits\.subject\.writes\.perSecond must be > 0/,
    ],
    [{ rateLimits: { address: { write: {} } } }, /rateLimits\.address: unknown field "write"/],
    [{ rateLimits: true }, /rateLimits/],
    [
      { operationLimits: { maxReadLeaves: "many" } },
      /operationLimits\.maxReadLeaves must be integer/,
    ],
    [{ trustedProxies: "loopback" }, /trustedProxies must be array/],
    [{ documentLimits: { maxAliases: -1 } }, /documentLimits\.maxAliases must be >= 0/],
  ])("the config's shape: %o", (config, message) => {
    expect(() => checkConfig(config, "config file /x/kora.config.ts")).toThrow(message);
  });

  it("accepts the documented settings", () => {
    const config = {
      cors: { origins: ["https://app.example.com"], credentials: true, maxAgeSec: 60 },
      rateLimits: {
        subject: { writes: { perSecond: 5, burst: 10 } },
        maxConnectionsPerAddress: 10,
        maxSubscriptionsPerConnection: 20,
      },
      trustedProxies: ["loopback", "10.0.0.0/8"],
      operationLimits: { maxReadLeaves: 1000, maxReadBytes: 1_000_000 },
      documentLimits: { maxAliases: 10, maxDirectives: 5, maxCost: 100 },
    };
    expect(checkConfig(config, "x")).toBe(config);
    expect(checkConfig({ rateLimits: false }, "x")).toEqual({ rateLimits: false });
  });
});
