/**
 * Two gateway processes on one server PostgreSQL: a write through either reaches a watcher on
 * the other (NOTIFY carries the version; each gateway reads the change log itself).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type WireEvent, wsClient } from "./helpers/clients.ts";
import { postgresTarget } from "./helpers/db.ts";
import { EventQueue } from "./helpers/events.ts";
import { WATCH, type TestServer, merge, startTestServer } from "./helpers/server.ts";

const target = postgresTarget();

describe.runIf(target)("two gateway processes on one PostgreSQL", () => {
  let local: TestServer;
  let child: ChildProcess;
  let childUrl: string;

  beforeAll(async () => {
    local = await startTestServer(target!);
    const { schema } = local;
    child = spawn(process.execPath, ["--import", "tsx", "server/cli.ts"], {
      env: { ...process.env, PORT: "0", HOST: "127.0.0.1", KORA_SCHEMA: schema, LOG_LEVEL: "warn" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout!.setEncoding("utf8");
    childUrl = await new Promise<string>((resolve, reject) => {
      child.once("exit", (code) => reject(new Error(`child exited with ${code}: ${out}`)));
      child.stdout!.on("data", (chunk: string) => {
        out += chunk;
        const m = /GraphiQL at (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
    });
  });

  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.kill("SIGTERM");
      await once(child, "exit");
    }
    await local?.close();
  });

  it("a write through one process reaches a watcher on the other, both ways", async () => {
    const onChild = wsClient(childUrl.replace(/^http/, "ws"));
    const onLocal = wsClient(local.wsUrl);
    const childEvents = new EventQueue<WireEvent>();
    const localEvents = new EventQueue<WireEvent>();
    onChild.subscribe<{ watch: WireEvent }>({ query: WATCH, variables: { path: ["mp"] } }, { next: (r) => childEvents.push(r.data!.watch), error: (e) => childEvents.fail(e), complete() {} });
    onLocal.subscribe<{ watch: WireEvent }>({ query: WATCH, variables: { path: ["mp"] } }, { next: (r) => localEvents.push(r.data!.watch), error: (e) => localEvents.fail(e), complete() {} });
    expect((await childEvents.next()).snapshot).toBe(true);
    expect((await localEvents.next()).snapshot).toBe(true);

    const v1 = await merge(local.url, ["mp", "from"], "local");
    const v2 = await merge(childUrl, ["mp", "from"], "child");
    for (const events of [childEvents, localEvents]) {
      const a = await events.next();
      const b = await events.next();
      expect([a.version, b.version]).toEqual([String(v1), String(v2)]);
      expect(a.merge).toEqual({ mp: { from: "local" } });
      expect(b.merge).toEqual({ mp: { from: "child" } });
    }
    await onChild.dispose();
    await onLocal.dispose();
  });

  it("the child shuts down gracefully on SIGTERM", async () => {
    child.kill("SIGTERM");
    const [code] = await once(child, "exit");
    expect(code).toBe(0);
  });
});
