/**
 * Rate and resource limits (docs/security.md, "Rate limits"): a subject over its write budget is
 * refused with RATE_LIMITED and a retry-after over HTTP (429 + Retry-After), SSE and WebSocket
 * (`retryAfterMs`), nothing of the refused write lands, other subjects are unaffected, and the
 * budget refills; per-address buckets follow X-Forwarded-For only through trusted proxies;
 * connection and subscription caps refuse the next one with a clear error.
 */
import { type Client, createClient } from "graphql-ws";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { createAuthenticator } from "../server/auth.ts";
import type { StartOptions } from "../server/index.ts";
import { type WireEvent, sseSubscribe } from "./helpers/clients.ts";
import { pgliteTarget } from "./helpers/db.ts";
import { EventQueue } from "./helpers/events.ts";
import { MERGE, type TestServer, WATCH, startTestServer } from "./helpers/server.ts";

interface GqlError {
  message: string;
  extensions?: { code?: string; retryAfterMs?: number; [k: string]: unknown };
}
interface Answer {
  status: number;
  retryAfter: string | null;
  errors?: GqlError[];
  data?: unknown;
}

/** The subject is the `x-user` header (HTTP, SSE) or the `user` connection parameter (WebSocket). */
const authenticate = createAuthenticator({
  authenticate: ({ headers, connectionParams }) => {
    const user =
      (connectionParams?.user as string | undefined) ?? (headers["x-user"] as string | undefined);
    return { auth: user ? { sub: user } : null };
  },
});

const HIGH = { perSecond: 10_000, burst: 10_000 };

async function write(url: string, key: string, headers: Record<string, string>): Promise<Answer> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ query: MERGE, variables: { path: ["rl", key], value: 1 } }),
  });
  const body = (await res.json()) as { errors?: GqlError[]; data?: unknown };
  return { status: res.status, retryAfter: res.headers.get("retry-after"), ...body };
}

/** One operation over SSE (POST, Accept: text/event-stream): its first payload. */
async function sseOnce(
  url: string,
  query: string,
  variables: Record<string, unknown>,
  headers: Record<string, string>,
): Promise<{ errors?: GqlError[]; data?: unknown }> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "text/event-stream", ...headers },
    body: JSON.stringify({ query, variables }),
  });
  const text = await res.text();
  const data = /^data: (.*)$/m.exec(text)?.[1];
  if (!data) throw new Error(`no event in ${res.status} ${text.slice(0, 200)}`);
  return JSON.parse(data) as { errors?: GqlError[]; data?: unknown };
}

function socketClient(url: string, user: string): Client {
  return createClient({
    url,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    connectionParams: { user },
  });
}

function once(
  client: Client,
  query: string,
  variables: Record<string, unknown>,
): Promise<{ errors?: GqlError[]; data?: unknown }> {
  return new Promise((resolve, reject) => {
    client.subscribe(
      { query, variables },
      {
        next: (r) => resolve(r as never),
        error: (e) => (Array.isArray(e) ? resolve({ errors: e as GqlError[] }) : reject(e)),
        complete: () => {},
      },
    );
  });
}

/** Polls `attempt` until it holds, at most `count` times and `ms` milliseconds. */
async function eventually<T>(
  attempt: () => Promise<T | undefined>,
  count = 200,
  ms = 10_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (let i = 0; i < count && Date.now() < deadline; i++) {
    const value = await attempt();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error("condition not met before the deadline");
}

function expectRateLimited(error: GqlError | undefined, mention: RegExp) {
  expect(error?.extensions?.code).toBe("RATE_LIMITED");
  expect(error?.extensions?.retryAfterMs).toBeGreaterThan(0);
  expect(error?.message).toMatch(mention);
}

describe("rate limits", () => {
  let server: TestServer | undefined;
  const clients: Client[] = [];
  const sockets: WebSocket[] = [];
  const start = async (options: Partial<Omit<StartOptions, "store" | "log">>) => {
    server = await startTestServer(pgliteTarget, { authenticate, ...options });
    return server;
  };
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.dispose();
    for (const s of sockets.splice(0)) s.terminate();
    await server?.close();
    server = undefined;
  });

  it("a subject over its write budget gets RATE_LIMITED over HTTP, SSE and WebSocket; others are not", async () => {
    // One token a minute: the refusals below do not depend on how fast this machine is today.
    const { url, wsUrl, kora } = await start({
      rateLimits: {
        subject: { writes: { perSecond: 1 / 60, burst: 3 } },
        address: { writes: HIGH, reads: HIGH, subscriptions: HIGH },
      },
    });
    for (let i = 0; i < 3; i++)
      expect((await write(url, `a${i}`, { "x-user": "alice" })).status).toBe(200);
    const version = await kora.gateway.store.version();

    const refused = await write(url, "over", { "x-user": "alice" });
    expect(refused.status).toBe(429);
    expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
    expectRateLimited(
      refused.errors?.[0],
      /too many writes for subject "alice".*rateLimits\.subject\.writes/,
    );
    expect(refused.errors?.[0]?.extensions).not.toHaveProperty("http");

    const overSse = await sseOnce(
      url,
      MERGE,
      { path: ["rl", "sse"], value: 1 },
      { "x-user": "alice" },
    );
    expectRateLimited(overSse.errors?.[0], /subject "alice"/);

    const alice = socketClient(wsUrl, "alice");
    clients.push(alice);
    const overWs = await once(alice, MERGE, { path: ["rl", "ws"], value: 1 });
    expectRateLimited(overWs.errors?.[0], /subject "alice"/);
    expect(overWs.errors?.[0]?.extensions).not.toHaveProperty("http");

    expect(await kora.gateway.store.version()).toBe(version); // nothing of the refused writes landed

    // Another subject, from the same address, is unaffected.
    expect((await write(url, "b", { "x-user": "bob" })).status).toBe(200);
    const bob = socketClient(wsUrl, "bob");
    clients.push(bob);
    expect((await once(bob, MERGE, { path: ["rl", "bws"], value: 1 })).errors).toBeUndefined();
  });

  it("the budget refills", async () => {
    const { url } = await start({
      rateLimits: {
        subject: { writes: { perSecond: 2, burst: 1 } },
        address: { writes: HIGH, reads: HIGH, subscriptions: HIGH },
      },
    });
    // Writes come faster than one per 500 ms, so one is refused (however slow the machine, the
    // loop is bounded)...
    const refusal = await eventually(async () => {
      const r = await write(url, "w", { "x-user": "frank" });
      return r.status === 429 ? r : undefined;
    }, 50);
    expectRateLimited(refusal.errors?.[0], /subject "frank"/);
    // ...and once the bucket refills, one is accepted again.
    const again = await eventually(async () => {
      const r = await write(url, "w", { "x-user": "frank" });
      return r.status === 200 ? r : undefined;
    });
    expect(again.errors).toBeUndefined();
  });

  it("new subscriptions have their own budget, over SSE and WebSocket", async () => {
    const { url, wsUrl } = await start({
      rateLimits: {
        subject: { subscriptions: { perSecond: 0.01, burst: 2 } },
        address: { writes: HIGH, reads: HIGH, subscriptions: HIGH },
      },
    });
    const first = sseSubscribe(url, WATCH, { path: ["rl"] }, { "x-user": "carol" });
    const second = sseSubscribe(url, WATCH, { path: ["rl"] }, { "x-user": "carol" });
    try {
      expect((await first.events.next()).snapshot).toBe(true);
      expect((await second.events.next()).snapshot).toBe(true);
      const third = await sseOnce(url, WATCH, { path: ["rl"] }, { "x-user": "carol" });
      expectRateLimited(third.errors?.[0], /too many subscriptions for subject "carol"/);
      const carol = socketClient(wsUrl, "carol");
      clients.push(carol);
      expectRateLimited((await once(carol, WATCH, { path: ["rl"] })).errors?.[0], /subscriptions/);
      // Writes and other subjects are untouched.
      expect((await write(url, "c", { "x-user": "carol" })).status).toBe(200);
      const dave = sseSubscribe(url, WATCH, { path: ["rl"] }, { "x-user": "dave" });
      expect((await dave.events.next()).snapshot).toBe(true);
      dave.close();
    } finally {
      first.close();
      second.close();
    }
  });

  it("a query the fast path hands to yoga (it has errors) is charged once", async () => {
    const { url } = await start({
      rateLimits: { address: { reads: { perSecond: 0.01, burst: 2 } } },
    });
    const query = async (q: string) => {
      const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query: q }),
      });
      return { status: res.status, ...((await res.json()) as { errors?: GqlError[] }) };
    };
    const failing = await query('{ path(path: ["rl"], limit: 0) }'); // BAD_USER_INPUT: runs on the fast path, then in yoga
    expect(failing.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
    expect((await query('{ path(path: ["rl"]) }')).status).toBe(200);
    const third = await query('{ path(path: ["rl"]) }');
    expect(third.status).toBe(429);
    expectRateLimited(third.errors?.[0], /too many reads from address/);
  });

  it("per-address buckets use X-Forwarded-For only from a trusted proxy", async () => {
    const budgets = { address: { writes: { perSecond: 0.01, burst: 2 } } };
    const { url } = await start({ rateLimits: budgets, trustedProxies: ["loopback"] });
    const from = (ip: string) => ({ "x-forwarded-for": ip });
    expect((await write(url, "p1", from("203.0.113.1"))).status).toBe(200);
    expect((await write(url, "p2", from("203.0.113.1"))).status).toBe(200);
    const refused = await write(url, "p3", from("203.0.113.1"));
    expect(refused.status).toBe(429);
    expectRateLimited(
      refused.errors?.[0],
      /from address 203\.0\.113\.1 \(rateLimits\.address\.writes/,
    );
    expect((await write(url, "q1", from("203.0.113.2"))).status).toBe(200);
    await server!.close();

    // Not trusted: the header is ignored and every request is the socket's peer, 127.0.0.1.
    const untrusted = await start({ rateLimits: budgets });
    expect((await write(untrusted.url, "u1", from("198.51.100.1"))).status).toBe(200);
    expect((await write(untrusted.url, "u2", from("198.51.100.2"))).status).toBe(200);
    const spoofed = await write(untrusted.url, "u3", from("198.51.100.3"));
    expect(spoofed.status).toBe(429);
    expect(spoofed.errors?.[0]?.message).toMatch(/from address 127\.0\.0\.1/);
  });

  it("refuses the connection over the per-address cap with 429, and admits one again after a close", async () => {
    const { wsUrl } = await start({ rateLimits: { maxConnectionsPerAddress: 2 } });
    const connect = () =>
      new Promise<{ ws: WebSocket; status: number; reason: string }>((resolve, reject) => {
        const ws = new WebSocket(wsUrl, "graphql-transport-ws");
        sockets.push(ws);
        ws.once("open", () => resolve({ ws, status: 101, reason: "" }));
        ws.once("unexpected-response", (_req, res) => {
          let reason = "";
          res.setEncoding("utf8").on("data", (c: string) => {
            reason += c;
          });
          res.on("end", () =>
            resolve({ ws, status: res.statusCode ?? 0, reason: `${res.statusMessage} ${reason}` }),
          );
        });
        ws.once("error", reject);
      });
    const a = await connect();
    const b = await connect();
    expect([a.status, b.status]).toEqual([101, 101]);
    const c = await connect();
    expect(c.status).toBe(429);
    expect(c.reason).toMatch(/at most 2 are accepted \(rateLimits\.maxConnectionsPerAddress\)/);
    a.ws.close();
    await eventually(async () => ((await connect()).status === 101 ? true : undefined));
  });

  it("SSE streams count as connections of their address, with WebSockets", async () => {
    const { url, wsUrl } = await start({ rateLimits: { maxConnectionsPerAddress: 2 } });
    const first = sseSubscribe(url, WATCH, { path: ["rl"] });
    const second = sseSubscribe(url, WATCH, { path: ["rl"] });
    try {
      expect((await first.events.next()).snapshot).toBe(true);
      expect((await second.events.next()).snapshot).toBe(true);
      const third = await sseOnce(url, WATCH, { path: ["rl"] }, {});
      expectRateLimited(
        third.errors?.[0],
        /at most 2 are accepted \(rateLimits\.maxConnectionsPerAddress\)/,
      );
      const upgrade = await new Promise<number>((resolve, reject) => {
        const ws = new WebSocket(wsUrl, "graphql-transport-ws");
        sockets.push(ws);
        ws.once("open", () => resolve(101));
        ws.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
        ws.once("error", reject);
      });
      expect(upgrade).toBe(429);
      first.close();
      // Once the first stream's response has closed, a new one is admitted.
      await eventually(async () => {
        const again = sseSubscribe(url, WATCH, { path: ["rl"] });
        try {
          return (await again.events.next().catch(() => undefined))?.snapshot;
        } finally {
          again.close();
        }
      });
    } finally {
      first.close();
      second.close();
    }
  });

  it("is on by default: the 101st connection from one address is refused", async () => {
    const { wsUrl } = await start({ rateLimits: undefined });
    const statuses: number[] = [];
    for (let i = 0; i < 101; i++) {
      statuses.push(
        await new Promise<number>((resolve, reject) => {
          const ws = new WebSocket(wsUrl, "graphql-transport-ws");
          sockets.push(ws);
          ws.once("open", () => resolve(101));
          ws.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
          ws.once("error", reject);
        }),
      );
    }
    expect(statuses.filter((s) => s === 101)).toHaveLength(100);
    expect(statuses[100]).toBe(429);
  });

  it("refuses the subscription over the per-connection cap; another connection is unaffected", async () => {
    const { wsUrl } = await start({ rateLimits: { maxSubscriptionsPerConnection: 3 } });
    const client = socketClient(wsUrl, "erin");
    clients.push(client);
    const queues = Array.from({ length: 4 }, () => new EventQueue<WireEvent>());
    queues.forEach((events, i) => {
      client.subscribe<{ watch: WireEvent }>(
        { query: WATCH, variables: { path: ["rl", `s${i}`] } },
        {
          next: (r) => (r.errors ? events.fail(r.errors) : events.push(r.data!.watch)),
          error: (e) => events.fail(e),
          complete: () => {},
        },
      );
    });
    for (const events of queues.slice(0, 3)) expect((await events.next()).snapshot).toBe(true);
    const refusal = (await queues[3]!.next().catch((e: unknown) => e)) as GqlError[];
    expectRateLimited(
      refusal[0],
      /already has 3 operations active; at most 3 are accepted \(rateLimits\.maxSubscriptionsPerConnection\)/,
    );
    const other = socketClient(wsUrl, "erin");
    clients.push(other);
    const events = new EventQueue<WireEvent>();
    other.subscribe<{ watch: WireEvent }>(
      { query: WATCH, variables: { path: ["rl"] } },
      { next: (r) => events.push(r.data!.watch), error: (e) => events.fail(e), complete: () => {} },
    );
    expect((await events.next()).snapshot).toBe(true);
  });
});
