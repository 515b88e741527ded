/**
 * Reads a mutation's build makes inside the write transaction (each one is a round trip): the
 * chain reads a path at most once per build and takes paths below from it, `newData` reads
 * nothing where the mutation replaces the subtree, and the rules engine reads only for
 * expressions that name `data` / `newData`.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { silentLogger } from "../core/gateway.ts";
import type { WriteContext } from "../core/store.ts";
import { deleteAt, getNode, mergeAt } from "../core/tree.ts";
import { DEFAULT_LIMITS, type Mutation, type Node, type Path } from "../core/types.ts";
import { createInterceptorChain, replaces } from "../interceptors/chain.ts";
import { BENCH_RULES } from "../interceptors/bench.ts";
import { createRulesEngine } from "../interceptors/rules.ts";
import type { Interceptor } from "../interceptors/types.ts";

function fakeTx(stored: Record<string, unknown>) {
  const reads: Path[] = [];
  const tx: WriteContext = {
    async read(path) {
      reads.push(path);
      return structuredClone(getNode(stored as Node, path));
    },
  };
  return { tx, reads };
}

function chain(interceptors: Interceptor[]) {
  return createInterceptorChain({ interceptors, limits: DEFAULT_LIMITS, log: silentLogger });
}

describe("reads of a build", () => {
  it("data and newData of the same or deeper paths cost one read", async () => {
    const seen: unknown[] = [];
    const { tx, reads } = fakeTx({ a: { b: { c: 1, d: 2 } } });
    const hook: Interceptor = {
      path: ["a", "$x"],
      async beforeMutation({ data, newData }) {
        seen.push(await data(), await data(["a", "b", "c"]), await newData(), await newData(["a", "b", "d"]), await data());
      },
    };
    await chain([hook, { ...hook }]).build(mergeAt(["a", "b", "d"], 5), { auth: null, internal: false })(tx);
    expect(reads).toEqual([["a", "b"]]);
    expect(JSON.parse(JSON.stringify(seen))).toEqual([{ c: 1, d: 2 }, 1, { c: 1, d: 5 }, 5, { c: 1, d: 2 }, { c: 1, d: 2 }, 1, { c: 1, d: 5 }, 5, { c: 1, d: 2 }]);
  });

  it("newData reads nothing where the mutation replaces the subtree", async () => {
    const { tx, reads } = fakeTx({ a: { b: { c: 1 } } });
    const out: unknown[] = [];
    const hook: Interceptor = {
      path: ["a", "b", "**"],
      async beforeMutation({ newData }) {
        out.push(await newData(), await newData(["a", "b", "c"]));
      },
    };
    await chain([hook]).build(mergeAt(["a", "b"], 7), { auth: null, internal: false })(tx);
    await chain([hook]).build(deleteAt(["a"]), { auth: null, internal: false })(tx);
    expect(reads).toEqual([]);
    expect(out).toEqual([7, undefined, undefined, undefined]);
  });

  it("replaces: a delete or a leaf at or above the path", () => {
    const m = (x: Partial<Mutation>) => ({ merge: Object.create(null), delete: Object.create(null), ...x }) as Mutation;
    expect(replaces(mergeAt(["a"], 1), ["a", "b"])).toBe(true);
    expect(replaces(mergeAt(["a", "b"], 1), ["a", "b"])).toBe(true);
    expect(replaces(mergeAt(["a", "b"], { c: 1 }), ["a", "b"])).toBe(false);
    expect(replaces(mergeAt(["a", "b"], 1), ["a"])).toBe(false);
    expect(replaces(deleteAt(["a"]), ["a", "b"])).toBe(true);
    expect(replaces(m({ delete: { a: { b: true } } as never }), ["a"])).toBe(false);
    expect(replaces(mergeAt(["x"], 1), [])).toBe(false);
  });

  it("the bench rules read once per client merge: write rules without data/newData read nothing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kora-reads-"));
    const file = join(dir, "kora.rules.yaml");
    writeFileSync(file, BENCH_RULES);
    const engine = createRulesEngine({ file, watch: false });
    const { tx, reads } = fakeTx({ bench: { u1: { a: { n: 1 }, b: { n: 2 } } } });
    const caller = { auth: { sub: "u1" }, internal: false };
    const built = await chain([engine.interceptor]).build(mergeAt(["bench", "u1", "a"], { n: 3 }), caller)(tx);
    expect(getNode(built.merge, ["bench", "u1", "a", "n"])).toBe(3);
    expect(reads).toEqual([["bench", "u1", "a"]]);
    // The schema still sees the committed siblings: a bad committed value fails it.
    const bad = fakeTx({ bench: { u1: { a: { n: "x" } } } });
    await expect(chain([engine.interceptor]).build(mergeAt(["bench", "u1", "a"], { m: 1 }), caller)(bad.tx)).rejects.toThrow(/schema/);
    engine.close();
  });
});
