/**
 * The interceptor framework end to end: the contract's company example (once with an
 * interceptor, once with rules), atomic rejection after additions, the cycle bound,
 * afterMutation and resolveQuery. Real servers on port 0, real clients, no sleeps.
 */
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../core/gateway.ts";
import { KoraError } from "../core/errors.ts";
import { companyEmployees } from "../examples/company/interceptor.ts";
import { createRulesEngine } from "../interceptors/rules.ts";
import type { Interceptor } from "../interceptors/types.ts";
import { type StartOptions, startKora } from "../server/index.ts";
import { type WireEvent, wsClient } from "./helpers/clients.ts";
import { type StoreTarget, storeTargets } from "./helpers/db.ts";
import { EventQueue } from "./helpers/events.ts";
import { MERGE, WATCH, del, http, merge, ok, read } from "./helpers/server.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function start(target: StoreTarget, options: Partial<StartOptions> = {}) {
  const { store, dispose } = await target.create();
  const kora = await startKora({ store, log: silentLogger, port: 0, host: "127.0.0.1", retention: { intervalMs: 0 }, ...options });
  cleanups.push(async () => {
    await kora.close();
    await dispose();
  });
  return { kora, url: kora.url, wsUrl: kora.url.replace(/^http/, "ws") };
}

function watch(wsUrl: string, path: string[]) {
  const client = wsClient(wsUrl);
  const events = new EventQueue<WireEvent>();
  client.subscribe<{ watch: WireEvent }>(
    { query: WATCH, variables: { path } },
    { next: (r) => (r.errors ? events.fail(r.errors) : events.push(r.data!.watch)), error: (e) => events.fail(e), complete: () => events.end() },
  );
  cleanups.push(() => client.dispose());
  return events;
}

const companyRules = () => createRulesEngine({ file: "examples/company/kora.rules.yaml", watch: false }).interceptor;

describe.each(storeTargets().map((t) => [t.name, t] as [string, StoreTarget]))("interceptors on %s", (_name, target) => {
  it.each([
    ["an interceptor", () => [companyEmployees as Interceptor]],
    ["rules", () => [companyRules()]],
  ])("company example with %s: same version, moves, watcher sees it appear and disappear", async (_how, interceptors) => {
    const { url, wsUrl } = await start(target, { interceptors: interceptors() });
    const ironbay = watch(wsUrl, ["company:employees", "ironbay"]);
    expect((await ironbay.next()).snapshot).toBe(true);

    const first = await ok<{ merge: { version: string; merge: Record<string, any> } }>(url, MERGE, {
      path: ["user:info", "dax"],
      value: { name: "Dax", company: "ironbay" },
    });
    const stamp = first.merge.merge["company:employees"].ironbay.dax;
    expect(typeof stamp).toBe("number");
    const appeared = await ironbay.next();
    expect(appeared.version).toBe(first.merge.version);
    expect(appeared.merge).toEqual({ "company:employees": { ironbay: { dax: stamp } } });
    expect(await read(url, ["company:employees"])).toEqual({ ironbay: { dax: stamp } });

    await merge(url, ["company:info", "acme"], { name: "Acme" }); // untouched by the interceptor
    const moved = await ok<{ merge: { version: string; delete: Record<string, unknown> } }>(url, MERGE, {
      path: ["user:info", "dax", "company"],
      value: "acme",
    });
    expect(moved.merge.delete).toEqual({ "company:employees": { ironbay: { dax: true } } });
    const gone = await ironbay.next();
    expect(gone.version).toBe(moved.merge.version);
    expect(gone.delete).toEqual({ "company:employees": { ironbay: { dax: true } } });
    expect(Object.keys((await read(url, ["company:employees"])) as object)).toEqual(["acme"]);

    await del(url, ["user:info", "dax"]);
    expect(await read(url, ["company:employees"])).toBeNull();
  });

  it("rejection after another interceptor added writes leaves store, change log and watchers untouched", async () => {
    const audit: Interceptor = {
      name: "audit",
      path: ["doc", "$id"],
      beforeMutation: ({ captures, now }) => ({ merge: { audit: { [captures.id as string]: now } } }),
    };
    const lock: Interceptor = {
      name: "lock",
      path: ["doc", "$id"],
      async beforeMutation({ newData, path }) {
        const value = (await newData()) as { locked?: boolean } | undefined;
        if (value?.locked) throw new KoraError("FORBIDDEN", `document ${JSON.stringify(path)} is locked`);
      },
    };
    const { url, wsUrl, kora } = await start(target, { interceptors: [audit, lock] });
    const all = watch(wsUrl, []);
    expect((await all.next()).snapshot).toBe(true);
    const v1 = await merge(url, ["doc", "a"], { title: "A" });
    expect((await all.next()).merge).toMatchObject({ doc: { a: { title: "A" } }, audit: { a: expect.any(Number) } });

    const rejected = await http(url, MERGE, { path: ["doc", "b"], value: { locked: true } });
    expect(rejected.errors?.[0]?.extensions?.code).toBe("FORBIDDEN");
    expect(await kora.gateway.store.version()).toBe(v1);
    expect(await kora.gateway.store.changes(v1, 10)).toEqual([]);
    expect(await read(url, ["audit"])).toEqual({ a: expect.any(Number) });
    expect(await read(url, ["doc", "b"])).toBeNull();

    const v2 = await merge(url, ["other"], 1);
    expect(v2).toBe(v1 + 1);
    const next = await all.next(); // the rejected mutation never reached the watcher
    expect([next.version, next.merge]).toEqual([String(v2), { other: 1 }]);
  });

  it("additions that never settle fail with a clear cycle error and write nothing", async () => {
    const chain: Interceptor = {
      name: "chain",
      path: ["n", "$i"],
      beforeMutation: ({ captures }) => ({ merge: { n: { [String(Number(captures.i) + 1)]: true } } }),
    };
    const { url, kora } = await start(target, { interceptors: [chain], chain: { maxRounds: 8 } });
    const r = await http(url, MERGE, { path: ["n", "0"], value: true });
    expect(r.errors?.[0]?.extensions?.code).toBe("INTERNAL_SERVER_ERROR");
    expect(r.errors?.[0]?.message).toMatch(/kept adding writes for 8 rounds \(last: chain at \["n","\d+"\]\).*cycle/);
    expect(await kora.gateway.store.version()).toBe(0);
  });

  it("afterMutation sees the committed version; resolveQuery answers virtual paths; failures never undo writes", async () => {
    let seen: (v: number) => void = () => {};
    const after = new Promise<number>((resolve) => {
      seen = resolve;
    });
    const interceptors: Interceptor[] = [
      { name: "after", path: ["x"], afterMutation: ({ version }) => seen(version) },
      {
        name: "broken-after",
        afterMutation: () => {
          throw new Error("best effort");
        },
      },
      { name: "virtual", path: ["virtual:hello", "$who"], resolveQuery: ({ captures }) => `hello ${captures.who}` },
    ];
    const { url } = await start(target, { interceptors });
    const v = await merge(url, ["x"], 1);
    expect(await after).toBe(v);
    expect(await read(url, ["x"])).toBe(1);
    const both = await ok<{ a: unknown; b: unknown }>(url, `{ a: path(path: ["virtual:hello", "dax"]) b: path(path: ["x"]) }`);
    expect(both).toEqual({ a: "hello dax", b: 1 });
  });
});
