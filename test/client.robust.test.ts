/**
 * The client inside real apps (docs/client.md, "Never crashes its host, never loses a write"):
 * a plain Node program against a server that is not there yet, one writer per storage folder,
 * close-while-in-flight on a slow link, a silent partition, and a server answering UNAVAILABLE.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { type KoraClient, StorageInUseError, createClient } from "../client/index.ts";
import { fileStorage } from "../client/file.ts";
import { KoraError } from "../core/errors.ts";
import type { Interceptor } from "../interceptors/types.ts";
import { pgliteTarget } from "./helpers/db.ts";
import { type TcpProxy, startTcpProxy } from "./helpers/proxy.ts";
import { merge, read, startTestServer, type TestServer } from "./helpers/server.ts";

let dir: string;
let server: TestServer | undefined;
let proxy: TcpProxy | undefined;
const children: ChildProcess[] = [];
const clients: KoraClient[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "kora-robust-"));
});
afterEach(async () => {
  for (const c of clients.splice(0)) await c.close().catch(() => {});
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null && child.pid) {
      const exited = new Promise((r) => child.once("exit", r));
      process.kill(-child.pid, "SIGKILL");
      await exited;
    }
  }
  await proxy?.close();
  proxy = undefined;
  if (server) {
    await server.close();
  }
  server = undefined;
  await rm(dir, { recursive: true, force: true });
});

const until = async (check: () => boolean | Promise<boolean>, what: string, ms = 15_000) => {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

/** Runs test/programs/unreachable-client.ts in its own process group; collects its JSON lines. */
function runProgram(url: string, storageDir: string) {
  const child = spawn(process.execPath, ["--unhandled-rejections=strict", "--import", "tsx", "test/programs/unreachable-client.ts", url, storageDir], {
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  children.push(child);
  const lines: Record<string, unknown>[] = [];
  let stderr = "";
  let buffer = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    buffer += chunk;
    for (let cut = buffer.indexOf("\n"); cut >= 0; cut = buffer.indexOf("\n")) {
      lines.push(JSON.parse(buffer.slice(0, cut)) as Record<string, unknown>);
      buffer = buffer.slice(cut + 1);
    }
  });
  child.stderr.setEncoding("utf8").on("data", (c: string) => {
    stderr += c;
  });
  const exit = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, lines, exit, stderr: () => stderr, has: (key: string) => lines.some((l) => key in l) };
}

/** The store's version now, read by committing a probe write (versions count commits). */
async function versionNow(url: string): Promise<number> {
  return merge(url, ["probe"], Math.random());
}

describe("a plain Node program", () => {
  it("keeps running against an unreachable server, keeps its writes and syncs them once when a server starts", async () => {
    const port = await freePort();
    const program = runProgram(`ws://127.0.0.1:${port}/graphql`, join(dir, "store"));
    // Many failed connects (each was an unhandled rejection before): the program is still alive.
    await until(() => program.lines.some((l) => Number(l.attempts) >= 8) || program.child.exitCode !== null, "8 connect attempts", 30_000);
    expect(program.child.exitCode, program.stderr()).toBeNull();
    expect(program.lines.find((l) => "queued" in l)?.queued).toBe(2);

    server = await startTestServer(pgliteTarget, { port });
    expect(await program.exit, program.stderr()).toBe(0);
    expect(program.stderr()).not.toMatch(/Unhandled|ERR_/);
    expect(program.stderr()).toMatch(/a listener threw .*a listener with a bug/s);
    expect(program.lines.find((l) => "synced" in l)).toEqual({ synced: true, queued: 0 });
    expect(await read(server.url, ["robust"])).toEqual({ a: 1, b: { text: "two" } });
    // Two writes, each committed once: the probe is version 3.
    expect(await versionNow(server.url)).toBe(3);
  }, 90_000);
});

describe("one writer per storage folder", () => {
  it("refuses a second instance in this process until the first is closed", async () => {
    server = await startTestServer(pgliteTarget);
    const storage = fileStorage(join(dir, "one"));
    const a = createClient({ url: server.wsUrl, webSocketImpl: WebSocket, storage, startOffline: true });
    clients.push(a);
    await a.ready;
    void a.merge(["one", "a"], 1);
    const b = createClient({ url: server.wsUrl, webSocketImpl: WebSocket, storage: fileStorage(join(dir, "one")), startOffline: true });
    clients.push(b);
    await expect(b.ready).rejects.toBeInstanceOf(StorageInUseError);
    await expect(b.merge(["one", "b"], 2)).rejects.toThrow(/open by another client in this process/);
    await a.close();
    const c = createClient({ url: server.wsUrl, webSocketImpl: WebSocket, storage, startOffline: true });
    clients.push(c);
    await c.ready;
    expect(c.queued().map((w) => w.merge)).toEqual([{ one: { a: 1 } }]);
  });

  it("refuses an instance while another process holds the folder, and takes over once that process is killed", async () => {
    const port = await freePort();
    const folder = join(dir, "shared");
    const program = runProgram(`ws://127.0.0.1:${port}/graphql`, folder);
    await until(() => program.has("queued"), "the program's writes");
    const mine = createClient({ url: `ws://127.0.0.1:${port}/graphql`, webSocketImpl: WebSocket, storage: fileStorage(folder), startOffline: true });
    clients.push(mine);
    await expect(mine.ready).rejects.toThrow(new RegExp(`open by a client in process ${program.child.pid}`));

    process.kill(-(program.child.pid as number), "SIGKILL");
    await program.exit;
    // kill -9 left the lock file behind; its process is gone, so the lock is stale.
    const next = createClient({ url: `ws://127.0.0.1:${port}/graphql`, webSocketImpl: WebSocket, storage: fileStorage(folder), startOffline: true });
    clients.push(next);
    await next.ready;
    expect(next.queued()).toHaveLength(2);
  }, 60_000);
});

describe("close while a write is in flight", () => {
  it("keeps every write over 50 close / reopen / write / reopen rounds on a slow link", async () => {
    // Counts writes reaching the server: a write seen here has its reply still on the slow link.
    let arrived = 0;
    const counter: Interceptor = {
      name: "arrivals",
      path: ["loop", "**"],
      async beforeMutation() {
        arrived++;
      },
    };
    server = await startTestServer(pgliteTarget, { interceptors: [counter] });
    proxy = await startTcpProxy(Number(new URL(server.url).port));
    proxy.setDelay(15);
    const url = `ws://127.0.0.1:${proxy.port}/graphql`;
    const folder = join(dir, "loop");
    const open = (online: boolean) => {
      const c = createClient({ url, webSocketImpl: WebSocket, storage: fileStorage(folder), startOffline: !online, backoff: { initialMs: 5, maxMs: 50 } });
      clients.push(c);
      return c;
    };
    const sent: number[] = [];
    for (let i = 0; i < 50; i++) {
      const a = open(true);
      await a.ready;
      const before = arrived;
      void a.merge(["loop", `a${i}`], i);
      // Mostly close with the write on the wire and its reply still coming; sometimes before it left.
      if (Math.random() < 0.8) await until(() => arrived > before, "the write at the server");
      await a.close();
      const b = open(false);
      await b.ready;
      void b.merge(["loop", `b${i}`], i);
      await b.close();
      sent.push(i);
    }
    const last = open(true);
    await last.ready;
    await last.synced(30_000);
    await last.close();
    const stored = (await read(server.url, ["loop"])) as Record<string, number>;
    const expected = Object.fromEntries(sent.flatMap((i) => [[`a${i}`, i], [`b${i}`, i]]));
    expect(stored).toEqual(expected);
  }, 120_000);
});

describe("dead connections", () => {
  it("turns offline within the pong deadline on a silent partition, and the queued write lands once after healing", async () => {
    server = await startTestServer(pgliteTarget);
    proxy = await startTcpProxy(Number(new URL(server.url).port));
    const c = createClient({
      url: `ws://127.0.0.1:${proxy.port}/graphql`,
      webSocketImpl: WebSocket,
      storage: fileStorage(join(dir, "partition")),
      keepAlive: { pingIntervalMs: 200, pongTimeoutMs: 600 },
      connectTimeoutMs: 1_000,
      backoff: { initialMs: 50, maxMs: 200 },
    });
    clients.push(c);
    c.watch(["part"], () => {});
    await c.synced();
    const v0 = await versionNow(server.url);

    proxy.setBlackhole(true);
    const cut = Date.now();
    const write = c.merge(["part", "x"], "during the partition");
    await until(() => c.status.value === "offline", "offline", 10_000);
    // Detected within one ping interval plus the pong deadline (with room for a loaded machine).
    expect(Date.now() - cut).toBeLessThan(200 + 600 + 2_000);
    expect(c.queued()).toHaveLength(1);

    proxy.setBlackhole(false);
    await write;
    await c.synced();
    expect(await read(server.url, ["part"])).toEqual({ x: "during the partition" });
    // The write was on the dead connection and replayed on the new one: committed once.
    expect(await versionNow(server.url)).toBe(v0 + 2);
  }, 60_000);

  it("keeps a write queued while the server answers UNAVAILABLE, retries it with backoff, and lands it when the store is back", async () => {
    let down = true;
    let attempts = 0;
    const storeDown: Interceptor = {
      name: "store down",
      path: ["unavail", "**"],
      async beforeMutation() {
        if (!down) return;
        attempts++;
        throw new KoraError("UNAVAILABLE", "the store did not answer in time; retry");
      },
    };
    server = await startTestServer(pgliteTarget, { interceptors: [storeDown] });
    const c = createClient({
      url: server.wsUrl,
      webSocketImpl: WebSocket,
      storage: fileStorage(join(dir, "unavail")),
      backoff: { initialMs: 20, maxMs: 100 },
    });
    clients.push(c);
    const errors: unknown[] = [];
    c.onError((e) => errors.push(e));
    let settled = false;
    const write = c.merge(["unavail", "x"], 1).finally(() => {
      settled = true;
    });
    await until(() => attempts >= 3, "three attempts");
    expect(settled).toBe(false);
    expect(errors).toEqual([]);
    expect(c.queued()).toHaveLength(1);
    expect(c.status.value).not.toBe("online");

    down = false;
    await write;
    await c.synced();
    expect(await read(server.url, ["unavail"])).toEqual({ x: 1 });
    expect(c.queued()).toHaveLength(0);
  }, 60_000);
});

describe("a closed instance", () => {
  it("ignores a reply that arrives after close() and writes nothing more to its storage", async () => {
    // A transport whose connection ignores close(), as a reply already in a socket buffer would:
    // the reply is handed to the client after close() resolved.
    let reply: ((r: { version: string; merge: Record<string, unknown>; delete: Record<string, unknown>; ts: string }) => void) | undefined;
    let sent: { ts: string; merge: Record<string, unknown> } | undefined;
    const transport = {
      async connect() {
        return {
          watch: () => () => {},
          write: (request: { ts: string; merge: Record<string, unknown> }) => {
            sent = request;
            return new Promise<never>((resolve) => {
              reply = resolve as never;
            });
          },
          close() {},
        };
      },
    };
    const { memoryStorage } = await import("../client/index.ts");
    const storage = memoryStorage();
    let writesAfterClose = 0;
    let closedAt = false;
    const set = storage.set.bind(storage);
    storage.set = async (key, value) => {
      if (closedAt) writesAfterClose++;
      await set(key, value);
    };
    const a = createClient({ storage, transport });
    clients.push(a);
    await a.ready;
    void a.merge(["late", "x"], 1);
    await until(() => reply !== undefined, "the write sent");
    await a.close();
    closedAt = true;
    reply?.({ version: "7", merge: sent?.merge ?? {}, delete: {}, ts: sent?.ts ?? "" });
    await new Promise((r) => setImmediate(r));
    await a.flush();
    expect(writesAfterClose).toBe(0);
    const b = createClient({ storage, transport, startOffline: true });
    clients.push(b);
    await b.ready;
    // Still queued, uncommitted: the next instance replays it (the server answers by write id).
    expect(b.queued().map((w) => [w.merge, w.committed])).toEqual([[{ late: { x: 1 } }, undefined]]);
  });
});
