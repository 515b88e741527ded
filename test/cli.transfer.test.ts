/**
 * `kora export` / `kora import` / `kora backup` / `kora restore`, run as the compiled command
 * users run: a 100,000-leaf tree with hostile keys goes from PGlite to PostgreSQL and back (or
 * between two PGlite schemas without DATABASE_URL) and comes out exactly as it went in; bad
 * imports fail naming the path and reason and leave the store untouched, even after a first
 * chunk was written; a backup taken while writers commit restores to the tree of its version.
 */
import { createReadStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Store } from "../core/store.ts";
import { applyMutation, emptyTree, mutationFromInput } from "../core/tree.ts";
import { backupStore, exportTree, importTree, restoreStore } from "../server/treefile.ts";
import { ensureBuilt, kora } from "./helpers/cli.ts";
import { bigTree, parse } from "./helpers/trees.ts";
import { databaseUrl, dropSchema, postgresTarget, pgliteTarget, storeTargets, uniqueSchema } from "./helpers/db.ts";

describe("kora export and import", () => {
  const dir = mkdtempSync(join(tmpdir(), "kora-transfer-"));
  const dataDir = join(dir, "data");
  const schemas: string[] = [];
  const pgUrl = databaseUrl();

  beforeAll(async () => {
    ensureBuilt();
    // Creating a PGlite data folder takes several seconds: once, here, not in a test's budget.
    writeFileSync(join(dir, "empty.json"), "{}");
    const init = await kora(["import", join(dir, "empty.json"), "--quiet"], { KORA_DATA_DIR: dataDir, KORA_SCHEMA: "init", DATABASE_URL: "" });
    expect(init.code, init.stderr).toBe(0);
  });
  let disposers: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const d of disposers.reverse()) await d();
    disposers = [];
  });
  afterAll(async () => {
    if (pgUrl) for (const s of schemas) await dropSchema(pgUrl, s);
    rmSync(dir, { recursive: true, force: true });
  });

  // The library functions the commands run (server/treefile.ts), in-process, on every store
  // target (two PGlite schemas without DATABASE_URL). The commands themselves move the same tree
  // PGlite -> PostgreSQL -> PGlite as child processes in test/cli.roundtrip.test.ts (about 30 s,
  // so only there), and are run on smaller trees below.
  it("moves 100,000 leaves with hostile keys between PGlite and PostgreSQL (and back) exactly", async () => {
    const tree = bigTree();
    const source = join(dir, "tree.json");
    writeFileSync(source, JSON.stringify(tree));
    const kinds = [pgliteTarget, postgresTarget() ?? pgliteTarget, pgliteTarget];
    const texts: string[] = [];
    let input: AsyncIterable<Uint8Array | string> | string[] = createReadStream(source);
    for (const kind of kinds) {
      const created = await kind.create();
      disposers.push(created.dispose);
      const imported = await importTree(created.store, input, { source: "tree.json" });
      expect(imported.count).toBeGreaterThan(0);
      const chunks: string[] = [];
      const out = new Writable({
        write(chunk: Buffer, _encoding, callback) {
          chunks.push(chunk.toString("utf8"));
          callback();
        },
      });
      const exported = await exportTree(created.store, [], out);
      expect(exported.leaves).toBe(100_000);
      const text = chunks.join("");
      texts.push(text);
      input = [text];
    }
    expect(parse(texts[0] as string)).toEqual(parse(JSON.stringify(tree)));
    // Byte for byte: the same leaves in the same (byte) order, whichever store held them.
    expect(texts[1]).toBe(texts[0]);
    expect(texts[2]).toBe(texts[0]);
  });

  describe("backups through the CLI", () => {
    const env = { KORA_DATA_DIR: dataDir, KORA_SCHEMA: "backup_src", DATABASE_URL: "" };
    const backupFile = join(dir, "b.ndjson");
    beforeAll(async () => {
      writeFileSync(join(dir, "small.json"), JSON.stringify({ "user:info": { dax: { name: "Dax" } }, ["__proto__"]: { "a/b": [1, null] } }));
      expect((await kora(["import", join(dir, "small.json"), "--quiet"], env)).code).toBe(0);
      expect((await kora(["import", join(dir, "small.json"), "--at", '["copy"]', "--quiet"], env)).code).toBe(0);
      const backup = await kora(["backup", "-o", backupFile, "--quiet"], env);
      expect(backup.code, backup.stderr).toBe(0);
    });

    it("restore into an empty store of the other kind gives the same tree at the backup's version", async () => {
      const header = JSON.parse(readFileSync(backupFile, "utf8").split("\n")[0] as string);
      expect(header).toMatchObject({ kora: "backup", version: "2" });
      const target = pgUrl ? { DATABASE_URL: pgUrl, KORA_SCHEMA: uniqueSchema() } : { KORA_DATA_DIR: dataDir, KORA_SCHEMA: "backup_dst", DATABASE_URL: "" };
      if (pgUrl) schemas.push(target.KORA_SCHEMA);
      const restored = await kora(["restore", backupFile], target);
      expect(restored.code, restored.stderr).toBe(0);
      expect(restored.stderr).toMatch(/at version 2/);
      const a = await kora(["export", "--quiet"], env);
      const b = await kora(["export", "--quiet"], target);
      expect(b.stdout).toBe(a.stdout);
      // A subtree export is the value at that path; a path holding nothing is an error.
      const sub = await kora(["export", '["copy","__proto__"]', "--quiet"], target);
      expect(parse(sub.stdout)).toEqual(parse('{"a/b":[1,null]}'));
      const none = await kora(["export", '["nothing"]', "--quiet"], target);
      expect(none.code).not.toBe(0);
      expect(none.stderr).toMatch(/nothing is stored at \["nothing"\]/);
    });

    it("restores only into an empty store, and a truncated backup writes nothing", async () => {
      const twice = await kora(["restore", backupFile, "--quiet"], env);
      expect(twice.code).not.toBe(0);
      expect(twice.stderr).toMatch(/not empty \(version 2\)/);
      const lines = readFileSync(backupFile, "utf8").trim().split("\n");
      writeFileSync(join(dir, "cut.ndjson"), `${lines.slice(0, -1).join("\n")}\n`);
      const cutEnv = { KORA_DATA_DIR: dataDir, KORA_SCHEMA: "backup_cut", DATABASE_URL: "" };
      const cut = await kora(["restore", join(dir, "cut.ndjson"), "--quiet"], cutEnv);
      expect(cut.code).not.toBe(0);
      expect(cut.stderr).toMatch(/truncated/);
      expect((await kora(["export", "--quiet"], cutEnv)).stdout.trim()).toBe("{}");
    });
  });

  describe("bad imports name the path and reason and write nothing", () => {
    const env = { KORA_DATA_DIR: dataDir, KORA_SCHEMA: "bad", DATABASE_URL: "" };
    let before = "";
    beforeAll(async () => {
      writeFileSync(join(dir, "good.json"), JSON.stringify({ keep: { me: 1 } }));
      expect((await kora(["import", join(dir, "good.json"), "--quiet"], env)).code).toBe(0);
      before = (await kora(["backup", "--quiet"], env)).stdout;
    });
    // Thousands of valid leaves first, so the failure comes after a first chunk was written.
    const padding = Array.from({ length: 5000 }, (_, i) => `"p${i}":${i}`).join(",");
    it.each([
      ["malformed JSON", `{"a":{${padding}},"b":{"c" 1}}`, /at byte \d+.*path \["b","c"\].*malformed JSON/],
      ["a truncated file", `{"a":{${padding}},"b":{"c":1`, /malformed JSON: the document ends before/],
      ["a null value", `{"a":{${padding}},"b":{"c":null}}`, /path \["b","c"\].*null is not a value/],
      ["a key with a control character", `{"a":{${padding}},"b":{"x\\u0001y":1}}`, /key "x\\u0001y" at path \["b"\] holds the control character U\+0001/],
      ["trailing data", `{"a":1} {"b":2}`, /after the end of the JSON document|malformed JSON/],
      ["a leaf at the root", `[1,2]`, /the root is always an object/],
    ])("%s", async (_name, text, message) => {
      const file = join(dir, "bad.json");
      writeFileSync(file, text);
      for (const args of [["import", file, "--dry-run"], ["import", file]]) {
        const r = await kora(args, env);
        expect(r.code).not.toBe(0);
        expect(r.stderr).toMatch(message);
        expect(r.stderr).toContain(file);
      }
    });

    it("a bad --at path", async () => {
      const r = await kora(["import", join(dir, "good.json"), "--at", '["a\\u0007"]'], env);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/--at: key "a\\u0007" at path \[\] holds the control character U\+0007/);
    });
    // Last (tests of a file run in order): after every failed import above, the store is
    // exactly as it was: the same leaves, and no version was used.
    it("left the store untouched", async () => {
      const backup = (await kora(["backup", "--quiet"], env)).stdout.split("\n");
      expect(JSON.parse(backup[0] as string).version).toBe("1");
      expect(backup.slice(1)).toEqual(before.split("\n").slice(1));
    });

  });
});

describe.each(storeTargets().map((t) => [t.name, t] as const))("backup under concurrent writes on %s", (_name, target) => {
  let disposers: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const d of disposers.reverse()) await d();
    disposers = [];
  });

  it("restores to a consistent tree at its version", async () => {
    const source = await target.create();
    disposers.push(source.dispose);
    const store: Store = source.store;
    // Each mutation moves a pair together: a consistent snapshot never shows them apart.
    const seed = Object.create(null) as Record<string, unknown>;
    for (let i = 0; i < 12_000; i++) seed[`k${i}`] = { a: 0, b: 0 };
    await store.commit(async () => mutationFromInput({ merge: { pairs: seed } }));
    let stop = false;
    let committed = 0;
    const writers = Array.from({ length: 4 }, async (_x, w) => {
      for (let n = 1; !stop && n < 20_000; n++) {
        const key = `k${(w * 7919 + n * 31) % 12_000}`;
        await store.commit(async () => mutationFromInput({ merge: { pairs: { [key]: { a: n, b: n } }, [`w${w}`]: n } }));
        committed++;
        // Like clients over a network: a write does not arrive within the previous one's microtasks
        // (PGlite in memory answers without yielding to the event loop).
        await new Promise((r) => setImmediate(r));
      }
    });
    // The backup's output waits for writers to commit after each page (on PostgreSQL, where they
    // run beside the snapshot; PGlite has one connection, so there they queue behind it).
    const chunks: Buffer[] = [];
    const untilCommitted = async (n: number) => {
      const deadline = Date.now() + 20_000;
      while (committed < n && Date.now() < deadline) await new Promise((r) => setImmediate(r));
    };
    const out = new Writable({
      highWaterMark: 1,
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk);
        if (target.name === "postgres") untilCommitted(committed + 5).then(() => callback());
        else callback();
      },
    });
    await untilCommitted(20);
    const during = committed;
    const result = await backupStore(store, out);
    if (target.name === "postgres") expect(committed).toBeGreaterThan(during + 20);
    await untilCommitted(committed + 10);
    stop = true;
    await Promise.all(writers);
    const latest = await store.version();
    expect(latest).toBeGreaterThan(result.version);

    // The tree at the backup's version, replayed from the change log.
    let expected = emptyTree();
    for (const change of await store.changes(0, result.version)) expected = applyMutation(expected, change.mutation);

    const empty = await (target.name === "postgres" ? pgliteTarget : (postgresTarget() ?? pgliteTarget)).create();
    disposers.push(empty.dispose);
    async function* bytes() {
      yield Buffer.concat(chunks);
    }
    const restored = await restoreStore(empty.store, bytes());
    expect(restored.version).toBe(result.version);
    expect(await empty.store.version()).toBe(result.version);
    const { values } = await empty.store.read([{ path: [] }]);
    expect(values[0]).toEqual(expected);
    const pairs = (values[0] as Record<string, Record<string, { a: number; b: number }>>).pairs as Record<string, { a: number; b: number }>;
    for (const p of Object.values(pairs)) expect(p.a).toBe(p.b);
  });
});
