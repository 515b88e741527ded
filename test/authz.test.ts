/**
 * Authorization cannot be bypassed: a table of allowed and denied operations run over HTTP,
 * SSE and WebSocket against the todo example's rules, with real JWTs. Reads of a parent leave
 * forbidden children out (docs/rules.md); watchers never receive a forbidden change; batched
 * `path` fields, aliases and fragments are each checked.
 */
import { type Client, createClient } from "graphql-ws";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../core/gateway.ts";
import { mutationFromInput } from "../core/tree.ts";
import { createRulesEngine } from "../interceptors/rules.ts";
import { createAuthenticator } from "../server/auth.ts";
import { type RunningKora, startKora } from "../server/index.ts";
import WebSocket from "ws";
import { pgliteTarget } from "./helpers/db.ts";
import { type Case, type Who, MERGE, SEED, WATCH, readCases, writeCases } from "./helpers/authz-table.ts";
import { sseResults } from "./helpers/clients.ts";
import { EventQueue } from "./helpers/events.ts";

const SECRET = "a-test-secret-of-at-least-32-characters!";
const AUDIENCE = "kora-todo";

async function token(claims: Record<string, unknown>, options: { exp?: number | string; secret?: string; aud?: string } = {}) {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setAudience(options.aud ?? AUDIENCE).setIssuedAt();
  jwt.setExpirationTime(options.exp ?? "1h");
  return jwt.sign(new TextEncoder().encode(options.secret ?? SECRET));
}

interface Payload {
  data?: Record<string, unknown> | null;
  errors?: { message: string; path?: (string | number)[]; extensions?: { code?: string } }[];
}

interface Transport {
  name: string;
  /** One query or mutation; resolves with its single result. */
  run(query: string, variables: Record<string, unknown>, jwt?: string): Promise<Payload>;
  /** A subscription's results (events and errors) as they arrive. */
  watch(query: string, variables: Record<string, unknown>, jwt?: string): { results: EventQueue<Payload>; close(): void };
  dispose(): Promise<void>;
}

function bearer(jwt?: string): Record<string, string> {
  return jwt ? { authorization: `Bearer ${jwt}` } : {};
}

function httpTransport(url: string): Transport {
  return {
    name: "HTTP",
    async run(query, variables, jwt) {
      const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/graphql-response+json, application/json", ...bearer(jwt) },
        body: JSON.stringify({ query, variables }),
      });
      return (await res.json()) as Payload;
    },
    watch(query, variables, jwt) {
      return sseTransport(url).watch(query, variables, jwt);
    },
    async dispose() {},
  };
}

/** GraphQL over SSE with plain fetch: every `next` payload in order. */
function sseTransport(url: string): Transport {
  const open = (query: string, variables: Record<string, unknown>, jwt?: string) =>
    sseResults(url, query, variables, bearer(jwt));
  return {
    name: "SSE",
    async run(query, variables, jwt) {
      const { results, close } = open(query, variables, jwt);
      try {
        return await results.next();
      } finally {
        close();
      }
    },
    watch: open,
    async dispose() {},
  };
}

function wsTransport(wsUrl: string): Transport {
  const clients: Client[] = [];
  const client = (jwt?: string) => {
    const c = createClient({
      url: wsUrl,
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      lazy: true,
      connectionParams: jwt ? { authorization: `Bearer ${jwt}` } : {},
    });
    clients.push(c);
    return c;
  };
  const open = (query: string, variables: Record<string, unknown>, jwt?: string) => {
    const results = new EventQueue<Payload>();
    const c = client(jwt);
    const stop = c.subscribe<Record<string, unknown>>(
      { query, variables },
      {
        next: (r) => results.push(r as Payload),
        // Errors that end an operation arrive as a list of GraphQL errors.
        error: (e) => (Array.isArray(e) ? results.push({ errors: e as Payload["errors"] }) : results.fail(e)),
        complete: () => results.end(),
      },
    );
    return { results, close: stop };
  };
  return {
    name: "WebSocket",
    async run(query, variables, jwt) {
      const { results, close } = open(query, variables, jwt);
      try {
        return await results.next();
      } finally {
        close();
      }
    },
    watch: open,
    async dispose() {
      await Promise.all(clients.map((c) => c.dispose()));
    },
  };
}

const transports: [string, (k: RunningKora) => Transport][] = [
  ["HTTP", (k) => httpTransport(k.url)],
  ["SSE", (k) => sseTransport(k.url)],
  ["WebSocket", (k) => wsTransport(k.url.replace(/^http/, "ws"))],
];

describe.each(transports)("authorization over %s", (_name, makeTransport) => {
  let kora: RunningKora;
  let dispose: () => Promise<void>;
  let transport: Transport;
  const jwts: Partial<Record<Who, string>> = {};

  beforeAll(async () => {
    const created = await pgliteTarget.create();
    dispose = created.dispose;
    const rules = createRulesEngine({ file: "examples/todo/kora.rules.yaml", watch: false });
    kora = await startKora({
      store: created.store,
      log: silentLogger,
      port: 0,
      host: "127.0.0.1",
      retention: { intervalMs: 0 },
      interceptors: [rules.interceptor],
      authenticate: createAuthenticator({ jwt: { secret: SECRET, audience: AUDIENCE } }),
    });
    // Seeded as server-side code: internal writes bypass the rules on purpose.
    await kora.gateway.commit(mutationFromInput({ merge: SEED }));
    transport = makeTransport(kora);
    jwts.dax = await token({ sub: "dax" });
    jwts.yousef = await token({ sub: "yousef" });
    jwts.admin = await token({ sub: "root", roles: ["admin"] });
  });
  afterAll(async () => {
    await transport?.dispose();
    await kora?.close();
    await dispose?.();
  });

  const check = (result: Payload, c: Case) => {
    if ("code" in c.expect) {
      expect(result.errors?.[0]?.extensions?.code, JSON.stringify(result)).toBe(c.expect.code);
      // Nothing of a denied field leaks into the data; allowed fields beside it still resolve.
      if (c.expect.at) expect(result.data?.[c.expect.at] ?? null).toBeNull();
      if (c.expect.at && c.expect.also) expect(result.data?.[c.expect.also]).toEqual(SEED.todos.dax.t1);
    } else {
      expect(result.errors, JSON.stringify(result.errors)).toBeUndefined();
      expect(result.data).toEqual(c.expect.data);
    }
  };

  it.each(readCases.map((c) => [`${c.who} reads ${c.what}`, c] as [string, Case]))("%s", async (_title, c) => {
    check(await transport.run(c.query, c.variables ?? {}, jwts[c.who]), c);
  });

  it.each(writeCases("w").map((c) => [`${c.who} writes ${c.what}`, c] as [string, Case]))("%s", async (_title, c) => {
    check(await transport.run(c.query, c.variables ?? {}, jwts[c.who]), c);
  });

  it.each([
    ["dax", ["todos", "yousef"]],
    ["anonymous", ["todos", "dax"]],
    ["dax", ["secret"]],
    ["yousef", ["admin"]],
  ] as [Who, string[]][])("%s may not watch %j", async (who, path) => {
    const { results, close } = transport.watch(WATCH, { path }, jwts[who]);
    const first = await results.next();
    close();
    expect(first.errors?.[0]?.extensions?.code).toBe("FORBIDDEN");
    expect(first.data?.watch ?? null).toBeNull();
  });

  it.each([[[]], [["todos"]]] as [string[]][])("a watcher of %j never receives a forbidden change", async (path) => {
    const { results, close } = transport.watch(WATCH, { path }, jwts.dax);
    try {
      const snapshot = (await results.next()).data?.watch as { snapshot: boolean; merge: Record<string, any> };
      expect(snapshot.snapshot).toBe(true);
      expect(JSON.stringify(snapshot.merge)).not.toMatch(/yousef|hunter2/);
      // Changes dax may not read: by another user, and by server-side code.
      const yousef = await transport.run(MERGE, { path: ["todos", "yousef", "w2"], value: { title: "hidden" } }, jwts.yousef);
      expect(yousef.errors).toBeUndefined();
      await kora.gateway.commit(mutationFromInput({ merge: { secret: { rotated: "hunter3" } } }));
      // One change with a readable and a forbidden part: only the readable part arrives.
      await kora.gateway.commit(
        mutationFromInput({ merge: { todos: { dax: { mixed: { title: "seen" } }, yousef: { mixed: { title: "unseen" } } } } }),
      );
      const own = await transport.run(MERGE, { path: ["todos", "dax", "w3"], value: { title: "mine" } }, jwts.dax);
      const mixed = (await results.next()).data?.watch as { merge: Record<string, unknown>; delete: Record<string, unknown> };
      expect(mixed.merge).toEqual({ todos: { dax: { mixed: { title: "seen" } } } });
      const next = (await results.next()).data?.watch as { version: string; merge: Record<string, unknown> };
      expect(next.version).toBe((own.data!.merge as { version: string }).version);
      expect(next.merge).toEqual({ todos: { dax: { w3: { title: "mine" } } } });
    } finally {
      close();
    }
  });
});
