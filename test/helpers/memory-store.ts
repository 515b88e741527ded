/**
 * A Store held in memory, for unit tests of the watch hub and the gateway: the same contract as
 * the SQL stores (contiguous versions, one snapshot per read, atomic commits) without a database.
 * The SQL stores are checked against the same expectations by test/store.conformance.test.ts.
 */
import type { BuildMutation, ChangeFeed, CommitResult, ReadRequest, ReadResult, Store } from "../../core/store.ts";
import { applyMutation, emptyTree, getNode, isEmptyMutation, listChildren, select } from "../../core/tree.ts";
import type { Change, Tree, Version } from "../../core/types.ts";

export function createMemoryStore(): Store & { tree(): Tree } {
  let tree: Tree = emptyTree();
  let version: Version = 0;
  const log: (Change & { at: number })[] = [];
  const listeners = new Set<(v: Version) => void>();
  let queue: Promise<unknown> = Promise.resolve();
  const feed: ChangeFeed = {
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
  return {
    kind: "pglite",
    description: "memory",
    feed,
    health: () => ({ feed: "local" }),
    tree: () => tree,
    async read(requests: readonly ReadRequest[]): Promise<ReadResult> {
      return { version, values: requests.map((r) => select(getNode(tree, r.path), r.options)) };
    },
    async keys(path, options) {
      return { version, ...listChildren(getNode(tree, path), options) };
    },
    commit(build: BuildMutation): Promise<CommitResult> {
      const run = queue.then(async () => {
        const mutation = await build({ read: async (path, options) => select(getNode(tree, path), options) });
        if (isEmptyMutation(mutation)) return { version, mutation, empty: true };
        tree = applyMutation(tree, mutation);
        version += 1;
        log.push({ version, mutation, at: Date.now() });
        for (const l of listeners) l(version);
        return { version, mutation, empty: false };
      });
      queue = run.catch(() => {});
      return run;
    },
    async changes(after: Version, limit: number) {
      return log.filter((c) => c.version > after).slice(0, limit).map(({ version, mutation }) => ({ version, mutation }));
    },
    async version() {
      return version;
    },
    async oldestVersion() {
      return log[0]?.version;
    },
    async trim({ keep, maxAgeMs }) {
      const before = log.length;
      const now = Date.now();
      while (log.length > 0 && log[0]!.version <= version - keep && log[0]!.at <= now - maxAgeMs) log.shift();
      return before - log.length;
    },
    async close() {},
  };
}
