/**
 * The rules simulator (`kora rules test`, server/simulate.ts) gives the verdicts real requests
 * get: the authorization table of test/authz.test.ts is run over HTTP against a server with the
 * todo rules, and through the compiled CLI (one process, `--cases`) against the same seed tree.
 * The console's simulator (/console/api/simulate) is checked against the same table on the
 * running server. Also `kora rules check` on good and broken files, and the CLI's single-request form.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT, decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../core/gateway.ts";
import { mutationFromInput } from "../core/tree.ts";
import { createRulesEngine } from "../interceptors/rules.ts";
import { createAuthenticator } from "../server/auth.ts";
import { type RunningKora, startKora } from "../server/index.ts";
import { type Case, DELETE, MERGE, MUTATE, PATH, SEED, type Who, readCases, writeCases } from "./helpers/authz-table.ts";
import { ensureBuilt, kora } from "./helpers/cli.ts";
import { pgliteTarget } from "./helpers/db.ts";

const SECRET = "a-test-secret-of-at-least-32-characters!";
const AUDIENCE = "kora-todo";
const RULES = "examples/todo/kora.rules.yaml";

interface Payload {
  data?: Record<string, unknown> | null;
  errors?: { message: string; path?: (string | number)[]; extensions?: { code?: string } }[];
}

/** One check: a simulator request and the verdict the real request got. */
interface Check {
  title: string;
  request: Record<string, unknown>;
  real: { allowed: boolean; code?: string | undefined };
}

/** The simulator's requests for a table case: one per `path` field of a query. */
function requestsOf(c: Case): { field: string | undefined; request: Record<string, unknown> }[] {
  const v = c.variables ?? {};
  if (c.query === PATH) return [{ field: "path", request: { read: v.path, ...(v.limit !== undefined ? { limit: v.limit } : {}) } }];
  if (c.query === MERGE) return [{ field: "merge", request: { write: v.path, value: v.value } }];
  if (c.query === DELETE) return [{ field: "delete", request: { delete: v.path } }];
  if (c.query === MUTATE) return [{ field: "mutate", request: { mutate: { merge: v.merge, delete: v.delete } } }];
  // Aliases, fragments and batched fields: each `path(path: [...])` field is one read.
  return [...c.query.matchAll(/(?:(\w+):\s*)?path\(path:\s*(\[[^\]]*\])\)/g)].map((m) => ({
    field: m[1] ?? "path",
    request: { read: JSON.parse(m[2] as string) },
  }));
}

describe("the rules simulator gives the verdicts of real requests", () => {
  let kora_: RunningKora;
  let dispose: () => Promise<void>;
  const dir = mkdtempSync(join(tmpdir(), "kora-rules-"));
  const jwts: Partial<Record<Who, string>> = {};
  const claims: Partial<Record<Who, Record<string, unknown>>> = {};
  const checks: Check[] = [];

  beforeAll(async () => {
    ensureBuilt();
    const created = await pgliteTarget.create();
    dispose = created.dispose;
    const rules = createRulesEngine({ file: RULES, watch: false });
    kora_ = await startKora({
      store: created.store,
      log: silentLogger,
      port: 0,
      host: "127.0.0.1",
      retention: { intervalMs: 0 },
      interceptors: [rules.interceptor],
      authenticate: createAuthenticator({ jwt: { secret: SECRET, audience: AUDIENCE } }),
    });
    await kora_.gateway.commit(mutationFromInput({ merge: SEED }));
    const sign = (c: Record<string, unknown>) =>
      new SignJWT(c).setProtectedHeader({ alg: "HS256" }).setAudience(AUDIENCE).setIssuedAt().setExpirationTime("1h").sign(new TextEncoder().encode(SECRET));
    jwts.dax = await sign({ sub: "dax" });
    jwts.yousef = await sign({ sub: "yousef" });
    jwts.admin = await sign({ sub: "root", roles: ["admin"] });
    for (const who of ["dax", "yousef", "admin"] as const) claims[who] = decodeJwt(jwts[who] as string);

    // The real verdicts, over HTTP, in the table's order (writes commit, as in authz.test.ts).
    for (const c of [...readCases, ...writeCases("s")]) {
      const jwt = jwts[c.who];
      const res = await fetch(kora_.url, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json", ...(jwt ? { authorization: `Bearer ${jwt}` } : {}) },
        body: JSON.stringify({ query: c.query, variables: c.variables ?? {} }),
      });
      const payload = (await res.json()) as Payload;
      for (const { field, request } of requestsOf(c)) {
        const error = payload.errors?.find((e) => e.path === undefined || e.path[0] === field);
        checks.push({
          title: `${c.who}: ${c.what}${field && !["path", "merge", "delete", "mutate"].includes(field) ? ` (${field})` : ""}`,
          request: { as: claims[c.who] ?? null, ...request },
          real: error ? { allowed: false, code: error.extensions?.code } : { allowed: true },
        });
      }
    }
  });
  afterAll(async () => {
    await kora_?.close();
    await dispose?.();
    rmSync(dir, { recursive: true, force: true });
  });

  it("through the CLI, for every case of the authorization table", async () => {
    expect(checks.length).toBeGreaterThan(30);
    expect(checks.filter((c) => c.real.allowed).length).toBeGreaterThan(5);
    expect(checks.filter((c) => !c.real.allowed).length).toBeGreaterThan(10);
    const casesFile = join(dir, "cases.json");
    writeFileSync(casesFile, JSON.stringify(checks.map((c) => ({ ...c.request, expect: c.real.allowed ? "allow" : "deny" }))));
    writeFileSync(join(dir, "seed.json"), JSON.stringify(SEED));
    const r = await kora(["rules", "test", RULES, "--cases", casesFile, "--tree", join(dir, "seed.json"), "--json"], { DATABASE_URL: "" });
    expect(r.code, r.stderr).toBe(0);
    const verdicts = JSON.parse(r.stdout) as { allowed: boolean; code?: string }[];
    expect(verdicts.map((v, i) => [checks[i]?.title, v.allowed, v.code])).toEqual(checks.map((c) => [c.title, c.real.allowed, c.real.code]));
  });

  it("through the console's simulator, on the running server", async () => {
    const origin = new URL(kora_.url).origin;
    const verdicts: [string, boolean, string | undefined][] = [];
    for (const c of checks) {
      const { as, ...rest } = c.request;
      const res = await fetch(`${origin}/console/api/simulate`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ as, ...rest }),
      });
      expect(res.status).toBe(200);
      const v = (await res.json()) as { allowed: boolean; code?: string };
      verdicts.push([c.title, v.allowed, v.code]);
    }
    expect(verdicts).toEqual(checks.map((c) => [c.title, c.real.allowed, c.real.code]));
  });

  it("names the rule that decided, and exits 1 on a denial", async () => {
    const tree = join(dir, "seed.json");
    writeFileSync(tree, JSON.stringify(SEED));
    const allowed = await kora(["rules", "test", RULES, "--as", '{"sub":"dax"}', "--read", '["todos","dax"]', "--tree", tree], { DATABASE_URL: "" });
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(allowed.stdout).toContain('ALLOWED read ["todos","dax"] by rule "todos/$uid" (read: auth != null && auth.sub == uid)');
    const denied = await kora(["rules", "test", RULES, "--as", '{"sub":"dax"}', "--write", '["todos","yousef","x"]', '{"title":"x"}', "--tree", tree], {
      DATABASE_URL: "",
    });
    expect(denied.code).toBe(1);
    expect(denied.stdout).toMatch(/DENIED write \["todos","yousef","x"\] \(FORBIDDEN\): writing \["todos","yousef","x","title"\] is not allowed by the rules/);
    const bad = await kora(["rules", "test", RULES, "--read", "todos/dax", "--tree", tree], { DATABASE_URL: "" });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--read "todos\/dax" is not JSON; write a path as a JSON array/);
  });
});

describe("kora rules check", () => {
  const dir = mkdtempSync(join(tmpdir(), "kora-rules-check-"));
  beforeAll(() => ensureBuilt());
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("accepts a good file and names the line of a mistake", async () => {
    const good = await kora(["rules", "check", RULES], {});
    expect(good.code, good.stderr).toBe(0);
    expect(good.stdout).toMatch(/5 rules, no mistakes/);
    const file = join(dir, "broken.yaml");
    writeFileSync(file, 'rules:\n  "todos/$uid":\n    read: auth.sub ==\n');
    const broken = await kora(["rules", "check", file], {});
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain(file);
    expect(broken.stderr).toMatch(/broken\.yaml:3:\d+: rule "todos\/\$uid": read is not valid CEL/);
  });
});
