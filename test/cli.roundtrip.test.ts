/**
 * The round trip, with the commands users run (dist/server/cli.js as child processes,
 * not their library functions): a 100,000-leaf tree with hostile keys is imported into a PGlite
 * data folder, exported to a file, imported into an empty server PostgreSQL schema, exported,
 * imported into a new PGlite folder and exported again; every export is byte for byte the first,
 * and the first is exactly the tree that went in.
 *
 * Needs server PostgreSQL (DATABASE_URL); skipped without it, failed instead with
 * KORA_REQUIRE_PG=1, as the other server PostgreSQL suites are. Measured here: about 30 s
 * (the two PGlite imports, which create their data folders, are two thirds of it).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isTree } from "../core/tree.ts";
import { ensureBuilt, kora } from "./helpers/cli.ts";
import { databaseUrl, dropSchema, uniqueSchema } from "./helpers/db.ts";
import { HOSTILE, bigTree, parse } from "./helpers/trees.ts";

const pgUrl = databaseUrl();
const required = process.env.KORA_REQUIRE_PG === "1";

/** Leaves of a parsed tree (arrays are leaves), and whether every hostile key occurs as a key. */
function census(node: unknown, keys: Set<string>): number {
  if (!isTree(node)) return 1;
  let n = 0;
  for (const key of Object.keys(node)) {
    keys.add(key);
    n += census(node[key], keys);
  }
  return n;
}

describe.runIf(pgUrl || required)("kora export | kora import: PGlite -> PostgreSQL -> PGlite, as commands", () => {
  const dir = mkdtempSync(join(tmpdir(), "kora-roundtrip-"));
  const schema = uniqueSchema();
  const pglite = (folder: string) => ({ DATABASE_URL: "", KORA_DATA_DIR: join(dir, folder) });
  const postgres = { DATABASE_URL: pgUrl ?? "", KORA_SCHEMA: schema };

  beforeAll(() => {
    if (!pgUrl) throw new Error("KORA_REQUIRE_PG=1 but DATABASE_URL is not set: the PostgreSQL round trip cannot run");
    ensureBuilt();
  });
  afterAll(async () => {
    if (pgUrl) await dropSchema(pgUrl, schema);
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs one command to its exit; fails the test with its stderr if it did not succeed. */
  async function run(args: string[], env: Record<string, string>): Promise<void> {
    const r = await kora([...args, "--quiet"], env);
    expect(r.code, `kora ${args.join(" ")}: ${r.stderr}`).toBe(0);
  }

  it("reproduces the tree exactly: 100,000 leaves, hostile keys included", { timeout: 240_000 }, async () => {
    const tree = bigTree();
    const source = join(dir, "tree.json");
    writeFileSync(source, JSON.stringify(tree));
    const file = (n: number) => join(dir, `export-${n}.json`);

    await run(["import", source], pglite("first"));
    await run(["export", "-o", file(1)], pglite("first"));
    await run(["import", file(1)], postgres);
    await run(["export", "-o", file(2)], postgres);
    await run(["import", file(2)], pglite("second"));
    await run(["export", "-o", file(3)], pglite("second"));

    const [first, second, third] = [1, 2, 3].map((n) => readFileSync(file(n), "utf8")) as [string, string, string];
    // The first export is the tree that went in (its keys in byte order, compared as data).
    const exported = parse(first);
    expect(exported).toEqual(parse(JSON.stringify(tree)));
    const keys = new Set<string>();
    expect(census(exported, keys)).toBe(100_000);
    for (const key of HOSTILE) expect(keys.has(key), JSON.stringify(key)).toBe(true);
    // The other two, byte for byte: same leaves, same byte order of keys, whichever store held them.
    expect(second.length).toBe(first.length);
    expect(second === first).toBe(true);
    expect(third === first).toBe(true);
  });
});
