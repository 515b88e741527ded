/**
 * Effects: recorded in the outbox with their mutation, run after commit, retried with backoff
 * until they succeed (then run exactly once more: never again), marked failed after their
 * attempts, never recorded for a rejected mutation, and run after a gateway crash.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { KoraError } from "../core/errors.ts";
import type { InterceptorChain } from "../interceptors/chain.ts";
import type { Interceptor } from "../interceptors/types.ts";
import { type WireEvent, wsClient } from "./helpers/clients.ts";
import { type StoreTarget, storeTargets } from "./helpers/db.ts";
import { EventQueue } from "./helpers/events.ts";
import { MERGE, http, merge, startTestServer } from "./helpers/server.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe.each(storeTargets().map((t) => [t.name, t] as [string, StoreTarget]))("effects on %s", (_name, target) => {
  it("a failing effect is retried with backoff and its work runs once it succeeds; rejected mutations record none", async () => {
    const sent: unknown[] = [];
    let succeeded: () => void = () => {};
    const done = new Promise<void>((resolve) => {
      succeeded = resolve;
    });
    const mailer: Interceptor = {
      name: "mailer",
      path: ["orders", "$id"],
      effect: ({ captures }) => ({ payload: { order: captures.id } }),
      runEffect(payload, { attempt }) {
        if (attempt < 3) throw new Error(`smtp down (attempt ${attempt})`);
        sent.push(payload);
        succeeded();
      },
      effectRetry: { attempts: 5, baseMs: 5 },
    };
    const hopeless: Interceptor = {
      name: "hopeless",
      path: ["doomed"],
      effect: () => ({ payload: null }),
      runEffect() {
        throw new Error("always fails");
      },
      effectRetry: { attempts: 2, baseMs: 5 },
    };
    const guard: Interceptor = {
      path: ["orders", "$id"],
      async beforeMutation({ newData }) {
        if ((await newData()) === "bad") throw new KoraError("BAD_USER_INPUT", "bad order");
      },
    };
    const server = await startTestServer(target, { interceptors: [guard, mailer, hopeless], chain: { effectPollMs: 50 } });
    cleanups.push(() => server.close());
    const { kora } = server;
    const { store } = kora.gateway;
    const rejected = await http(kora.url, MERGE, { path: ["orders", "o0"], value: "bad" });
    expect(rejected.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
    const version = await merge(kora.url, ["orders", "o1"], "ok");
    await merge(kora.url, ["doomed"], 1);
    await done;
    const runner = (kora.gateway.pipeline as InterceptorChain).effects!;
    await runner.idle();
    // Wait until the hopeless task has used its attempts (state changes are the events here).
    for (;;) {
      const [doomed] = await store.outbox!.list({ state: "failed" });
      if (doomed) {
        expect([doomed.interceptor, doomed.attempts, doomed.lastError]).toEqual(["hopeless", 2, "always fails"]);
        break;
      }
      await runner.idle();
    }
    expect(sent).toEqual([{ order: "o1" }]);
    const tasks = await store.outbox!.list();
    expect(tasks.map((t) => [t.interceptor, t.version, t.state]).sort()).toEqual([
      ["hopeless", version + 1, "failed"],
      ["mailer", version, "done"],
    ]);
    expect(tasks.find((t) => t.interceptor === "mailer")?.attempts).toBe(3);
  });
});

/** Starts `npm start` in a child process; resolves with its URL. */
function startChild(args: string[], env: Record<string, string>, onLine?: (line: string) => void) {
  const child = spawn(process.execPath, ["--import", "tsx", "server/cli.ts", ...args], {
    env: { ...process.env, PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  const url = new Promise<string>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`child exited with ${code}: ${out}`)));
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      out += chunk;
      for (const line of chunk.split("\n")) if (line) onLine?.(line);
      const m = /GraphiQL at (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
  });
  return { child, url };
}

async function kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill(signal);
  await exited;
}

const CRASH_CONFIG = `
const mode = process.env.EFFECT_MODE;
export default {
  rules: false,
  chain: { effectPollMs: 100, effectLeaseMs: 300 },
  interceptors: [{
    name: "mailer",
    path: ["orders", "$id"],
    effect: ({ captures }) => ({ payload: { order: captures.id } }),
    async runEffect(payload, { commit, attempt }) {
      if (mode === "hang") {
        console.log("EFFECT STARTED " + payload.order);
        await new Promise(() => {});
      }
      await commit({ merge: { sent: { [payload.order]: attempt } } });
    },
  }],
};
`;

describe("effects survive a gateway crash", () => {
  it("an effect recorded (and started) before kill -9 runs after restart on the same PGlite data dir", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kora-crash-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const config = join(dir, "kora.config.ts");
    writeFileSync(config, CRASH_CONFIG);
    const env = { KORA_DATA_DIR: join(dir, "data") };

    let started: () => void = () => {};
    const effectStarted = new Promise<void>((resolve) => {
      started = resolve;
    });
    const first = startChild(["--config", config], { ...env, EFFECT_MODE: "hang" }, (line) => {
      if (line.startsWith("EFFECT STARTED o1")) started();
    });
    cleanups.push(() => kill(first.child, "SIGKILL"));
    const firstUrl = await first.url;
    await merge(firstUrl, ["orders", "o1"], { total: 42 });
    await effectStarted;
    await kill(first.child, "SIGKILL"); // a crash: no shutdown, the task stays leased mid-run

    const second = startChild(["--config", config], { ...env, EFFECT_MODE: "ok" });
    cleanups.push(() => kill(second.child, "SIGTERM"));
    const secondUrl = await second.url;
    const client = wsClient(secondUrl.replace(/^http/, "ws"));
    cleanups.push(() => client.dispose());
    const events = new EventQueue<WireEvent>();
    client.subscribe<{ watch: WireEvent }>(
      { query: `subscription { watch(path: ["sent"]) { version snapshot merge delete value } }` },
      { next: (r) => events.push(r.data!.watch), error: (e) => events.fail(e), complete: () => {} },
    );
    // The snapshot may already hold the result (the effect can run before the watch starts).
    for (;;) {
      const event = await events.next(30_000);
      if (event.value && typeof event.value === "object" && "o1" in event.value) {
        expect(event.value).toEqual({ o1: 2 }); // attempt 1 died with the first process
        break;
      }
    }
  });
});
