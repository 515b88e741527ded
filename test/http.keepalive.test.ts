/**
 * No write is lost to the transport: HTTP mutations sent on keep-alive sockets that sat idle
 * longer than Node's default `keepAliveTimeout` (5 s), to a server whose event loop lags, all
 * commit; none dies with ECONNRESET / "socket hang up" (server/keepalive.ts, docs/decisions.md).
 *
 * The race it guards against: a server with a 5 s keep-alive timeout (Node 20 closes such sockets
 * after 6 s: it adds 1 s to what it advertises) whose loop is blocked when
 * the timer is due runs the timer first when the loop frees, and destroys a socket whose next
 * request is already waiting in it. With KEEP_ALIVE_TIMEOUT_MS=5000 in the server's environment
 * (see startServer below) this test fails: most of its second requests are reset.
 *
 * The server runs in its own process (test/helpers/lagging-server.ts) so that blocking its loop
 * does not block the clients. Each client is a `node:http` agent with one keep-alive socket and no
 * idle timeout of its own, as a proxy in front of Kora would reuse its upstream sockets.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { Agent, request } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { MERGE } from "./helpers/server.ts";

const CLIENTS = 16;

let child: ChildProcess | undefined;
const agents: Agent[] = [];

afterEach(async () => {
  for (const agent of agents.splice(0)) agent.destroy();
  if (child && child.exitCode === null && child.signalCode === null) {
    child.kill("SIGKILL");
    await once(child, "exit");
  }
  child = undefined;
});

async function startServer(env: Record<string, string> = {}): Promise<string> {
  const proc = spawn(process.execPath, ["--import", "tsx", "test/helpers/lagging-server.ts"], {
    env: { ...process.env, LAG_BLOCK_MS: "400", LAG_PERIOD_MS: "500", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  child = proc;
  let out = "";
  proc.stdout.setEncoding("utf8");
  return new Promise<string>((resolve, reject) => {
    proc.once("exit", (code) => reject(new Error(`server exited with ${code}: ${out}`)));
    proc.stdout.on("data", (chunk: string) => {
      out += chunk;
      const m = /listening (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1] as string);
    });
  });
}

/** One merge over HTTP on `agent`; resolves with its version and whether it reused a socket. */
function mergeOver(agent: Agent, url: string, path: string[], value: unknown): Promise<{ version: string; reused: boolean }> {
  const body = JSON.stringify({ query: MERGE, variables: { path, value } });
  const { hostname, port, pathname } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request(
      { agent, hostname, port, path: pathname, method: "POST", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          text += c;
        });
        res.on("error", reject);
        res.on("end", () => {
          try {
            const parsed = JSON.parse(text) as { data?: { merge?: { version: string } }; errors?: unknown[] };
            if (res.statusCode !== 200 || !parsed.data?.merge) throw new Error(`HTTP ${res.statusCode}: ${text}`);
            resolve({ version: parsed.data.merge.version, reused: req.reusedSocket });
          } catch (error) {
            reject(error);
          }
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("HTTP keep-alive under a lagging event loop", () => {
  it("mutations on sockets idle longer than Node's default (5 s + 1 s) all commit, none reset", async () => {
    const url = await startServer();
    const outcomes = await Promise.all(
      Array.from({ length: CLIENTS }, async (_, i) => {
        const agent = new Agent({ keepAlive: true, maxSockets: 1 });
        agents.push(agent);
        // Start times spread over one lag period and idle times over 6.1-6.55 s, so that some
        // sockets' deadlines fall inside a block of the server's loop whatever its phase. (Node 20
        // advertises `timeout=5` but closes idle sockets after keepAliveTimeout + 1 s: 6 s.)
        // Waiting for time is the point here: the idle time is the condition under test.
        await delay((i % 4) * 125);
        const first = await mergeOver(agent, url, ["keepalive", `c${i}`], 1);
        await delay(6_100 + Math.floor(i / 4) * 150);
        const second = await mergeOver(agent, url, ["keepalive", `c${i}`], 2).catch((error: Error) => error);
        return { first, second };
      }),
    );
    const failures = outcomes.filter((o) => o.second instanceof Error).map((o) => (o.second as Error).message);
    expect(failures).toEqual([]);
    for (const { first, second } of outcomes) {
      const s = second as { version: string; reused: boolean };
      // The second request went out on the idle socket (the race needs a reused socket).
      expect(s.reused).toBe(true);
      expect(Number(s.version)).toBeGreaterThan(Number(first.version));
    }
  });
});
