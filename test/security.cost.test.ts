/**
 * Bounded cost per operation (docs/security.md, "Cost"): the alias flood and the fragment chain
 * of issue 9 are refused cheaply, before execution; what one operation may read is bounded
 * (PAYLOAD_TOO_LARGE naming the limit) on every transport; legitimate large reads still work.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { watchFastPathStats } from "../server/watchpath.ts";
import { type StreamResult, sseResults, wsClient } from "./helpers/clients.ts";
import { pgliteTarget } from "./helpers/db.ts";
import { EventQueue } from "./helpers/events.ts";
import {
  type GraphQLResponse,
  type TestServer,
  http,
  merge,
  startTestServer,
} from "./helpers/server.ts";

const LEAVES = 1000;
const subtree = Object.fromEntries(
  Array.from({ length: LEAVES }, (_, i) => [`k${String(i).padStart(4, "0")}`, `value ${i}`]),
);

function aliases(n: number, path: (i: number) => string[]): string {
  const fields = Array.from(
    { length: n },
    (_, i) => `a${i}: path(path: ${JSON.stringify(path(i))})`,
  );
  return `query { ${fields.join(" ")} }`;
}

/** 30 levels of `ofType`, each in its own fragment: depth that only shows through the spreads. */
function fragmentChain(levels: number): string {
  const fragments = Array.from({ length: levels }, (_, i) =>
    i === levels - 1
      ? `fragment F${i} on __Type { name }`
      : `fragment F${i} on __Type { ofType { ...F${i + 1} } }`,
  );
  return `query { __schema { types { ...F0 } } } ${fragments.join(" ")}`;
}

/**
 * Runs `work` three times and returns its last result with the least process CPU time and RSS
 * growth of the runs (the server runs in this process). The process' CPU time also counts GC
 * threads and timers of earlier work: on a loaded CI machine one run once measured 393 ms for
 * a refusal that takes a few. The least of three still catches the 4.2 s the issue measured;
 * the work must be free of side effects (refused requests are).
 */
async function measured<T>(
  work: () => Promise<T>,
): Promise<{ result: T; cpuMs: number; rssMiB: number }> {
  let best: { result: T; cpuMs: number; rssMiB: number } | undefined;
  for (let run = 0; run < 3; run++) {
    const rss = process.memoryUsage.rss();
    const cpu = process.cpuUsage();
    const result = await work();
    const used = process.cpuUsage(cpu);
    const cpuMs = (used.user + used.system) / 1000;
    const rssMiB = (process.memoryUsage.rss() - rss) / 2 ** 20;
    best = { result, cpuMs: Math.min(cpuMs, best?.cpuMs ?? cpuMs), rssMiB: Math.min(rssMiB, best?.rssMiB ?? rssMiB) };
  }
  return best as { result: T; cpuMs: number; rssMiB: number };
}

async function seed(url: string, count: number) {
  for (let t = 0; t < count; t++) await merge(url, [`t${t}`], subtree);
}

describe("cost bounds with the default limits", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(pgliteTarget);
    await seed(server.url, 10);
  });
  afterAll(async () => {
    await server?.close();
  });

  it("refuses 1,900 aliases of a 1,000-leaf subtree cheaply, before execution", async () => {
    const query = aliases(1900, () => ["t0"]);
    expect(Buffer.byteLength(query)).toBeGreaterThan(40 * 1024); // within documentLimits.maxBytes
    await http(server.url, query); // the first run also compiles (JIT) the parser and rules
    const { result, cpuMs, rssMiB } = await measured(() => http(server.url, query));
    expect(result.data ?? null).toBeNull();
    expect(result.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
    expect(result.errors?.[0]?.message).toMatch(/Aliases limit of 100 exceeded.*maxAliases/);
    // The issue measured 4.2 s and +461 MiB for this request; the bounds leave room for a busy machine.
    expect(cpuMs).toBeLessThan(100);
    expect(rssMiB).toBeLessThan(20);
  });

  it("refuses a 30-level fragment chain cheaply (depth counts through spreads, introspection too)", async () => {
    const { result, cpuMs, rssMiB } = await measured(() => http(server.url, fragmentChain(30)));
    expect(result.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
    expect(result.errors?.[0]?.message).toMatch(/depth limit of 16 exceeded.*maxDepth/);
    expect(cpuMs).toBeLessThan(100);
    expect(rssMiB).toBeLessThan(20);
  });

  it("still answers GraphiQL's introspection query", async () => {
    const { getIntrospectionQuery } = await import("graphql");
    const r = await http(server.url, getIntrospectionQuery());
    expect(r.errors).toBeUndefined();
  });

  it("still answers one operation reading 10 subtrees of 1,000 leaves", async () => {
    const r = await http<Record<string, Record<string, string>>>(
      server.url,
      aliases(10, (i) => [`t${i}`]),
    );
    expect(r.errors).toBeUndefined();
    for (let i = 0; i < 10; i++) expect(Object.keys(r.data![`a${i}`]!)).toHaveLength(LEAVES);
  });
});

describe("the read bound", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(pgliteTarget, {
      documentLimits: { maxAliases: 5000 }, // only the read bound stands in the way
      operationLimits: { maxReadLeaves: 5000, maxReadBytes: 100_000 },
    });
    await seed(server.url, 6);
    await merge(server.url, ["blob"], { s: "x".repeat(150_000) });
  });
  afterAll(async () => {
    await server?.close();
  });

  const refusedFor = (r: GraphQLResponse, limit: string) => {
    expect(r.data ?? null).toBeNull();
    expect(r.errors).toHaveLength(1);
    expect(r.errors?.[0]?.extensions?.code).toBe("PAYLOAD_TOO_LARGE");
    expect(r.errors?.[0]?.message).toContain(`operationLimits.${limit}`);
  };

  it("refuses the alias flood as PAYLOAD_TOO_LARGE without building the response", async () => {
    const { result, rssMiB } = await measured(() =>
      http(
        server.url,
        aliases(1900, () => ["t0"]),
      ),
    );
    refusedFor(result, "maxReadLeaves");
    expect(rssMiB).toBeLessThan(20);
  });

  it("counts leaves over distinct subtrees, within and over the bound, on the fast path and through yoga", async () => {
    const within = await http(
      server.url,
      aliases(5, (i) => [`t${i}`]),
    );
    expect(within.errors).toBeUndefined();
    refusedFor(
      await http(
        server.url,
        aliases(6, (i) => [`t${i}`]),
      ),
      "maxReadLeaves",
    );
    // Without an Accept header the same request takes the fast path (server/fastpath.ts).
    const res = await fetch(server.url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: aliases(6, (i) => [`t${i}`]) }),
    });
    refusedFor((await res.json()) as GraphQLResponse, "maxReadLeaves");
  });

  it("counts bytes", async () => {
    refusedFor(await http(server.url, `{ path(path: ["blob"]) }`), "maxReadBytes");
  });

  it("applies to subscription events: a watch snapshot over the bound is refused", async () => {
    const client = wsClient(server.wsUrl);
    try {
      const r = await new Promise<GraphQLResponse>((resolve, reject) => {
        client.subscribe(
          { query: "subscription { watch(path: []) { version snapshot merge } }" },
          { next: (v) => resolve(v as GraphQLResponse), error: reject, complete: () => {} },
        );
      });
      refusedFor(r, "maxReadLeaves");
    } finally {
      await client.dispose();
    }
  });

  it("an event over the bound mid-stream is refused and the watch goes on, the same over graphql-ws and SSE", async () => {
    const query = `subscription { watch(path: ["ev"]) { version snapshot merge } }`;
    const ws = wsClient(server.wsUrl);
    const overWs = new EventQueue<StreamResult>();
    const direct = watchFastPathStats.direct;
    ws.subscribe(
      { query },
      {
        next: (r) => overWs.push(r as StreamResult),
        error: (e) => overWs.fail(e),
        complete: () => overWs.end(),
      },
    );
    const overSse = sseResults(server.url, query);
    try {
      for (const q of [overWs, overSse.results])
        expect((await q.next()).data?.watch).toMatchObject({ snapshot: true });
      expect(watchFastPathStats.direct).toBe(direct + 1); // the graphql-ws watch is served directly
      const big = Object.fromEntries(Array.from({ length: 6000 }, (_, i) => [`b${i}`, i]));
      await merge(server.url, ["ev", "big"], big);
      await merge(server.url, ["ev", "small"], 1);
      for (const q of [overWs, overSse.results]) {
        refusedFor((await q.next()) as GraphQLResponse, "maxReadLeaves");
        expect((await q.next()).data?.watch).toMatchObject({
          snapshot: false,
          merge: { ev: { small: 1 } },
        });
      }
    } finally {
      overSse.close();
      await ws.dispose();
    }
  });

  it("applies over graphql-ws", async () => {
    const client = wsClient(server.wsUrl);
    try {
      const r = await new Promise<GraphQLResponse>((resolve, reject) => {
        client.subscribe(
          { query: aliases(6, (i) => [`t${i}`]) },
          { next: (v) => resolve(v as GraphQLResponse), error: reject, complete: () => {} },
        );
      });
      refusedFor(r, "maxReadLeaves");
      expect(r.errors?.[0]?.extensions).not.toHaveProperty("http");
    } finally {
      await client.dispose();
    }
  });
});
