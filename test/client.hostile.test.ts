/**
 * Hostile input through the offline client's API (docs/client.md, "Bad input"): input the server
 * would refuse whatever its data throws a KoraError with the contract's code at once, and nothing
 * is queued, applied or persisted; keys that are hostile but valid (`__proto__`, `constructor`,
 * `_`, `%`, `/`, unicode, emoji) survive the optimistic replica, file storage, a restart while
 * offline, the replay over WebSocket and another client's replica, without touching prototypes;
 * damaged storage fails loudly instead of dropping unsent writes.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type KoraClient, memoryStorage } from "../client/index.ts";
import { fileStorage } from "../client/file.ts";
import { pgliteTarget } from "./helpers/db.ts";
import { offlineClients } from "./helpers/offline.ts";
import { read, startTestServer, type TestServer } from "./helpers/server.ts";

let server: TestServer;
let dir: string;

beforeAll(async () => {
  server = await startTestServer(pgliteTarget);
  dir = await mkdtemp(join(tmpdir(), "kora-client-hostile-"));
});
afterAll(async () => {
  await closeAll();
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

const { client, closeAll } = offlineClients(() => server.wsUrl);

let deep: unknown = 1;
for (let i = 0; i < 100_000; i++) deep = { d: deep };

const refused: [string, string, (c: KoraClient) => unknown][] = [
  ["null value", "BAD_USER_INPUT", (c) => c.merge(["h", "a"], null)],
  ["undefined value", "BAD_USER_INPUT", (c) => c.merge(["h", "a"], undefined)],
  ["null inside an object", "BAD_USER_INPUT", (c) => c.merge(["h"], { a: 1, b: null })],
  ["a function", "BAD_USER_INPUT", (c) => c.merge(["h", "a"], () => 1)],
  ["a bigint", "BAD_USER_INPUT", (c) => c.merge(["h", "a"], 1n)],
  ["NaN", "BAD_USER_INPUT", (c) => c.merge(["h", "a"], Number.NaN)],
  ["a Date", "BAD_USER_INPUT", (c) => c.merge(["h", "a"], new Date())],
  ["a Map inside an array", "BAD_USER_INPUT", (c) => c.merge(["h", "a"], [new Map()])],
  ["a string with U+0000", "BAD_USER_INPUT", (c) => c.merge(["h", "a"], "x\u0000y")],
  ["a key with a control character", "BAD_USER_INPUT", (c) => c.merge(["h", "a\u0007"], 1)],
  ["a key with a newline inside a value", "BAD_USER_INPUT", (c) => c.merge(["h"], { "a\nb": 1 })],
  ["an empty key", "BAD_USER_INPUT", (c) => c.merge(["h", ""], 1)],
  ["a lone surrogate", "BAD_USER_INPUT", (c) => c.merge(["h", "\ud800"], 1)],
  ["a key over 768 bytes", "BAD_USER_INPUT", (c) => c.merge(["h", "é".repeat(400)], 1)],
  ["a path that is a string", "BAD_USER_INPUT", (c) => c.merge("h" as never, 1)],
  ["a path with a number", "BAD_USER_INPUT", (c) => c.merge(["h", 1 as never], 1)],
  ["a path 100 keys deep", "BAD_USER_INPUT", (c) => c.delete(Array.from({ length: 100 }, () => "h"))],
  ["a value nested 100,000 deep", "BAD_USER_INPUT", (c) => c.merge(["h"], deep)],
  ["a leaf at the root", "BAD_USER_INPUT", (c) => c.merge([], 1)],
  ["a delete of the root", "BAD_USER_INPUT", (c) => c.delete([])],
  ["a delete leaf that is not true", "BAD_USER_INPUT", (c) => c.mutate({ delete: { h: "yes" } })],
  ["an unknown mutate field", "BAD_USER_INPUT", (c) => c.mutate({ merge: { h: { a: 1 } }, delet: { h: true } } as never)],
  ["mutate of an array", "BAD_USER_INPUT", (c) => c.mutate([] as never)],
  ["5 MiB in one write", "PAYLOAD_TOO_LARGE", (c) => c.merge(["h", "big"], "x".repeat(5 * 1024 * 1024))],
];

describe("hostile input through the client", () => {
  it.each(refused)("refuses %s at once with %s, and queues, applies and stores nothing", async (_name, code, write) => {
    const storage = memoryStorage();
    const c = client({ storage, startOffline: true });
    await c.ready;
    void c.merge(["h", "kept"], "before").catch(() => {}); // stays queued (offline)
    await c.flush();
    const stored = new Map(storage.data);
    expect(() => write(c)).toThrow(expect.objectContaining({ code }));
    expect(c.pending.value).toBe(1);
    expect(c.queued()).toHaveLength(1);
    expect(c.get(["h"])).toEqual({ kept: "before" });
    await c.flush();
    expect(storage.data.get("queue")).toBe(stored.get("queue"));
    expect(storage.data.get("replica")).toBe(stored.get("replica"));
  });

  it("keeps hostile but valid keys through file storage, an offline restart, the replay and another client", async () => {
    const keys = ["__proto__", "constructor", "prototype", "_", "%", "%25", "/", "a/b", ".", "..", ":", " ", "ü", "日本", "🦀", "\u00a0", "toString", "hasOwnProperty"];
    const value = Object.fromEntries(keys.map((k, i) => [k, { n: i, [k]: k }]));
    // Object.fromEntries makes "__proto__" an own key; JSON.parse (the wire, storage) does too.
    expect(Object.keys(value)).toContain("__proto__");
    const storage = fileStorage(join(dir, "keys"));
    const a = client({ storage, startOffline: true });
    await a.ready;
    a.watch(["hk"], () => {});
    void a.merge(["hk"], value).catch(() => {});
    void a.delete(["hk", "..", ".."]).catch(() => {});
    void a.merge(["hk", "__proto__", "polluted"], true).catch(() => {});
    await a.flush();
    await a.close();

    const b = client({ storage, startOffline: true });
    await b.ready;
    b.watch(["hk"], () => {});
    const expected = JSON.parse(JSON.stringify(value));
    delete expected[".."][".."];
    const PROTO = "__proto__"; // an own key of the parsed object, not the prototype
    expected[PROTO].polluted = true;
    expect(plain(b.get(["hk"]))).toEqual(expected);
    expect(b.pending.value).toBe(3);
    b.connect();
    await b.synced();
    expect(b.pending.value).toBe(0);
    expect(await read(server.url, ["hk"])).toEqual(expected);

    const other = client();
    other.watch(["hk"], () => {});
    await other.synced();
    expect(plain(other.get(["hk"]))).toEqual(expected);
    expect(plain(other.get(["hk", "__proto__"]))).toEqual(JSON.parse('{"n":0,"__proto__":"__proto__","polluted":true}'));
    // Nothing reached a prototype anywhere.
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty("n");
  });

  it("fails loudly on damaged file storage instead of dropping unsent writes", async () => {
    const path = join(dir, "damaged");
    const storage = fileStorage(path);
    const a = client({ storage, startOffline: true });
    await a.ready;
    void a.merge(["dmg", "x"], 1).catch(() => {});
    await a.flush();
    await a.close();
    await writeFile(join(path, "queue.json"), '[{"id": "w1", "ts": ');
    const b = client({ storage, startOffline: true });
    await expect(b.ready).rejects.toThrow(/queue\.json is not valid JSON.*damaged/);
    await expect(b.merge(["dmg", "y"], 2)).rejects.toThrow(/not valid JSON/);
    b.watch(["dmg"], () => {}); // no unhandled rejection
  });
});

/** Compares as JSON (replica objects have null prototypes; `__proto__` is an own key there). */
function plain(x: unknown): unknown {
  return x === undefined ? undefined : JSON.parse(JSON.stringify(x));
}
