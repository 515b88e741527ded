/**
 * The interceptor chain: the gateway's `Pipeline` built from the ordered list of interceptors.
 * Hooks are sorted by phase once, here, so a phase no interceptor uses costs nothing.
 * docs/interceptors.md describes what each hook sees and when it runs.
 */
import { type Caller, type Gateway, type ListChildren, type Logger, type Pipeline, INTERNAL_CALLER } from "../core/gateway.ts";
import { KoraError, isKoraError, showPath } from "../core/errors.ts";
import type { BuildMutation, CommitResult, WriteContext } from "../core/store.ts";
import {
  applyMutation,
  combine,
  emptyMutation,
  emptyTree,
  equalNodes,
  getNode,
  has,
  inflate,
  isEmptyMutation,
  isTree,
  mutationFromInput,
  restrict,
} from "../core/tree.ts";
import type { ChildSummary, DeleteTree, Limits, Mutation, Node, Path, ReadOptions, Tree } from "../core/types.ts";
import { type EffectRunner, createEffectRunner } from "./effects.ts";
import { type CompiledPattern, type Cursor, START, compilePatterns, complete, deeper, keysOf, matchMutation, matchPath, step } from "./pattern.ts";
import type { EffectTask, Interceptor, Match, MutationHookArgs, MutationInput, ReadHookArgs, ReadKind } from "./types.ts";

export interface ChainOptions {
  interceptors: readonly Interceptor[];
  limits: Limits;
  log: Logger;
  /**
   * Most rounds of additions (additions of additions…) one mutation may trigger before it is
   * rejected as a cycle. Default 16.
   */
  maxRounds?: number;
  /** How often the effect runner looks for due tasks written by other processes. Default 1000 ms. */
  effectPollMs?: number;
  /**
   * How long a running effect is leased before another process (or this one after a restart)
   * may run it again. Longer than your slowest effect. Default 60,000 ms.
   */
  effectLeaseMs?: number;
}

interface Entry {
  interceptor: Interceptor;
  name: string;
  patterns: CompiledPattern[];
}

export interface InterceptorChain extends Pipeline {
  readonly interceptors: readonly Interceptor[];
  /** The effect runner, once the gateway started it (inspect tasks through `gateway.store.outbox`). */
  readonly effects: EffectRunner | undefined;
}

export function createInterceptorChain(options: ChainOptions): InterceptorChain {
  const { limits, log } = options;
  const maxRounds = options.maxRounds ?? 16;
  const entries: Entry[] = options.interceptors.map((interceptor, i) => {
    const name = interceptor.name ?? `interceptor #${i + 1}`;
    try {
      return { interceptor, name, patterns: compilePatterns(interceptor.path) };
    } catch (error) {
      throw new Error(`${name}: ${(error as Error).message}`);
    }
  });
  const names = new Set<string>();
  for (const e of entries) {
    if (e.interceptor.effect || e.interceptor.runEffect) {
      if (!e.interceptor.name) throw new Error(`${e.name} declares effects, so it needs a unique name (tasks outlive the process and find it by name)`);
      if (!e.interceptor.effect || !e.interceptor.runEffect) throw new Error(`${e.name} declares effect without runEffect (or the reverse); both are needed`);
    }
    if (e.interceptor.name) {
      if (names.has(e.interceptor.name)) throw new Error(`two interceptors are named ${JSON.stringify(e.interceptor.name)}; names must be unique`);
      names.add(e.interceptor.name);
    }
  }
  const phase = (hook: keyof Interceptor) => entries.filter((e) => typeof e.interceptor[hook] === "function");
  const beforeMutation = phase("beforeMutation");
  const effect = phase("effect");
  const afterMutation = phase("afterMutation");
  const beforeRead = phase("beforeRead");
  const resolveQuery = phase("resolveQuery");
  const byName = new Map(entries.filter((e) => e.interceptor.name).map((e) => [e.interceptor.name as string, e.interceptor]));

  let runner: EffectRunner | undefined;

  async function matches(e: Entry, m: Mutation, keysAt: (p: Path) => Promise<string[]>): Promise<Match[]> {
    if (e.patterns.length === 1) return matchMutation(e.patterns[0] as CompiledPattern, m, keysAt);
    const seen = new Set<string>();
    const out: Match[] = [];
    for (const p of e.patterns) {
      for (const match of await matchMutation(p, m, keysAt)) {
        const key = JSON.stringify(match.path);
        if (seen.has(key)) continue;
        seen.add(key);
        out.push(match);
      }
    }
    return out;
  }

  function build(mutation: Mutation, caller: Caller): BuildMutation {
    if (beforeMutation.length === 0 && effect.length === 0) return async () => mutation;
    return async (tx: WriteContext) => {
      const now = Date.now();
      let total = mutation;
      // Committed data cannot change while this mutation is built (the store serves it under the
      // batch's lock), so each path is read at most once per build, and a path below one already
      // read is taken from it: several hooks and rules at the same paths cost one read.
      const reads = new Map<string, Promise<Node | undefined>>();
      const data = (at: Path): Promise<Node | undefined> => {
        let key = "";
        for (let i = 0; i <= at.length; i++) {
          if (i > 0) key += `\u0001${at[i - 1] as string}`;
          const cached = reads.get(key);
          if (cached) return i === at.length ? cached : cached.then((v) => getNode(v, at.slice(i)));
        }
        const read = tx.read(at);
        reads.set(key, read);
        return read;
      };
      const keysAt = async (p: Path) => keysOf(await data(p));
      const newData = async (at: Path) => {
        // Where the mutation replaces the whole subtree (a delete or a leaf at or above `at`),
        // the committed value does not matter: no read.
        if (replaces(total, at)) return getNode(total.merge, at);
        const current = await data(at);
        const base = current === undefined ? emptyTree() : at.length === 0 ? (current as Tree) : (inflate(at, current) as Tree);
        return getNode(applyMutation(base, total), at);
      };
      const args = (match: Match, m: Mutation, internal: boolean): MutationHookArgs => ({
        ...match,
        part: restrict(m, match.path) ?? emptyMutation(),
        mutation: total,
        auth: caller.auth,
        internal,
        data: (at = match.path) => data(at),
        newData: (at = match.path) => newData(at),
        now,
      });

      let pending: { m: Mutation; internal: boolean }[] = [{ m: mutation, internal: caller.internal }];
      for (let round = 0; pending.length > 0; round++) {
        const next: typeof pending = [];
        let lastAdder = "";
        for (const { m, internal } of pending) {
          for (const e of beforeMutation) {
            for (const match of await matches(e, m, keysAt)) {
              const result = await (e.interceptor.beforeMutation as NonNullable<Interceptor["beforeMutation"]>)(args(match, m, internal));
              if (!result) continue;
              const addition = normalizeAddition(result, e.name, match.path);
              if (isEmptyMutation(addition)) continue;
              const combined = combine(total, addition);
              // Writing what is already written adds nothing: that is how a fixpoint is reached.
              if (equalNodes(combined.merge, total.merge) && equalNodes(combined.delete, total.delete)) continue;
              total = combined;
              next.push({ m: addition, internal: true });
              lastAdder = `${e.name} at ${showPath(match.path)}`;
            }
          }
        }
        if (next.length > 0 && round + 1 >= maxRounds) {
          throw new KoraError(
            "INTERNAL_SERVER_ERROR",
            `interceptors kept adding writes for ${maxRounds} rounds (last: ${lastAdder}); an interceptor probably triggers itself in a cycle. Make additions idempotent or narrow its path pattern.`,
          );
        }
        pending = next;
      }

      if (effect.length > 0) {
        if (!tx.enqueue) throw new KoraError("INTERNAL_SERVER_ERROR", "this store has no outbox, so effects cannot be recorded");
        for (const e of effect) {
          for (const match of await matches(e, total, keysAt)) {
            const tasks = await (e.interceptor.effect as NonNullable<Interceptor["effect"]>)(args(match, total, caller.internal));
            if (!tasks) continue;
            const list: readonly EffectTask[] = Array.isArray(tasks) ? tasks : [tasks as EffectTask];
            const maxAttempts = e.interceptor.effectRetry?.attempts ?? 8;
            for (const task of list) tx.enqueue({ interceptor: e.interceptor.name as string, payload: task.payload ?? null, maxAttempts });
          }
        }
      }
      return total;
    };
  }

  function normalizeAddition(result: MutationInput, name: string, at: Path): Mutation {
    if (typeof result !== "object" || result === null) {
      throw new KoraError("INTERNAL_SERVER_ERROR", `${name} at ${showPath(at)} returned ${typeof result} from beforeMutation; return { merge?, delete? } or nothing`);
    }
    try {
      return mutationFromInput(result, limits);
    } catch (error) {
      if (isKoraError(error)) throw new KoraError(error.code, `addition of ${name} at ${showPath(at)}: ${error.message}`, { path: error.treePath ?? at });
      throw error;
    }
  }

  function committed(result: CommitResult, caller: Caller): void {
    if (effect.length > 0) runner?.kick();
    if (afterMutation.length === 0) return;
    void (async () => {
      for (const e of afterMutation) {
        try {
          // After commit a replaced subtree is gone: only merged keys and literal steps match inside it.
          for (const match of await matches(e, result.mutation, async () => [])) {
            await (e.interceptor.afterMutation as NonNullable<Interceptor["afterMutation"]>)({
              ...match,
              part: restrict(result.mutation, match.path) ?? emptyMutation(),
              mutation: result.mutation,
              version: result.version,
              auth: caller.auth,
              internal: caller.internal,
            });
          }
        } catch (error) {
          log.error({ err: error, interceptor: e.name, version: result.version }, "afterMutation failed (the write stands)");
        }
      }
    })();
  }

  // -------------------------------------------------------------------------------------------
  // Reads

  let gatewayRef: Gateway | undefined;
  const readData = async (at: Path) => {
    if (!gatewayRef) return undefined;
    return (await gatewayRef.read([{ path: at }])).values[0];
  };

  /** Calls one interceptor's beforeRead; throwing a KoraError counts as `false`. */
  async function verdict(e: Entry, base: Omit<ReadHookArgs, keyof Match | "leaf" | "data">, match: Match, leaf: boolean): Promise<boolean | undefined> {
    try {
      const v = await (e.interceptor.beforeRead as NonNullable<Interceptor["beforeRead"]>)({
        ...base,
        ...match,
        leaf,
        data: (at = match.path) => readData(at),
      });
      return v === true || v === false ? v : undefined;
    } catch (error) {
      if (isKoraError(error)) return false;
      throw error;
    }
  }

  type Cursors = (Cursor | undefined)[];
  /** An interceptor that has not decided a read yet, with its cursors where the check stands. */
  type Undecided = { e: Entry; cursors: Cursors };

  /**
   * Checks the paths from the root down to `target`. Returns "granted" (the interceptor allows
   * all below), "denied", or the cursors standing at `target` for checking the data below.
   */
  async function checkAncestors(
    e: Entry,
    target: Path,
    base: Omit<ReadHookArgs, keyof Match | "leaf" | "data">,
    leafAtTarget: boolean,
  ): Promise<"granted" | "denied" | Cursors> {
    let cursors: Cursors = e.patterns.map(() => START);
    for (let i = 0; ; i++) {
      const path = target.slice(0, i);
      const at = cursors.findIndex((c, j) => c !== undefined && complete(e.patterns[j] as CompiledPattern, c));
      if (at >= 0) {
        const v = await verdict(e, base, { path, captures: (cursors[at] as Cursor).captures }, i === target.length && leafAtTarget);
        if (v === false) return "denied";
        if (v === true) return "granted";
      }
      if (i === target.length) return cursors;
      const key = target[i] as string;
      cursors = cursors.map((c, j) => (c ? step(e.patterns[j] as CompiledPattern, c, key) : undefined));
      if (cursors.every((c) => c === undefined)) return "granted"; // nothing of this interceptor applies here
    }
  }

  /** The readable part of `node` (at `path`) for one interceptor; undefined when nothing is left. */
  async function prune(
    e: Entry,
    node: unknown,
    path: string[],
    cursors: Cursors,
    base: Omit<ReadHookArgs, keyof Match | "leaf" | "data">,
    isDelete: boolean,
  ): Promise<unknown> {
    if (!isTree(node)) return node;
    let out: Record<string, unknown> | undefined;
    for (const key of Object.keys(node)) {
      const child = (node as Record<string, unknown>)[key];
      const childPath = [...path, key];
      const next = cursors.map((c, j) => (c ? step(e.patterns[j] as CompiledPattern, c, key) : undefined));
      let kept: unknown = child;
      const at = next.findIndex((c, j) => c !== undefined && complete(e.patterns[j] as CompiledPattern, c));
      let v: boolean | undefined;
      if (at >= 0) v = await verdict(e, base, { path: childPath, captures: (next[at] as Cursor).captures }, !isDelete && !isTree(child));
      if (v === false) kept = undefined;
      else if (v === undefined && next.some((c, j) => c !== undefined && deeper(e.patterns[j] as CompiledPattern, c))) {
        kept = await prune(e, child, childPath, next, base, isDelete);
      }
      if (kept !== child) {
        out ??= { ...(node as Record<string, unknown>) };
        if (kept === undefined) delete out[key];
        else out[key] = kept;
      }
    }
    if (!out) return node;
    const tree = Object.assign(Object.create(null), out) as Record<string, unknown>;
    for (const _ in tree) return tree;
    return undefined;
  }

  function baseArgs(target: Path, caller: Caller, kind: ReadKind) {
    return { target, kind, auth: caller.auth, internal: caller.internal, now: Date.now() };
  }

  async function authorize(target: Path, caller: Caller, kind: "query" | "watch"): Promise<void> {
    const base = baseArgs(target, caller, kind);
    for (const e of beforeRead) {
      if ((await checkAncestors(e, target, base, false)) === "denied") throw forbidden(target, e);
    }
  }

  async function filterValue(target: Path, value: Node | undefined, caller: Caller): Promise<Node | undefined> {
    const base = baseArgs(target, caller, "query");
    let out: unknown = value;
    for (const e of beforeRead) {
      if (out === undefined) break;
      const state = await checkAncestors(e, target, base, !isTree(out));
      if (state === "denied") throw forbidden(target, e);
      if (state === "granted") continue;
      out = await prune(e, out, [...target], state, base, false);
    }
    return out as Node | undefined;
  }

  async function filterChildren(
    target: Path,
    leaf: boolean,
    children: readonly ChildSummary[],
    caller: Caller,
    list: ListChildren,
  ): Promise<ChildSummary[]> {
    const base = baseArgs(target, caller, "query");
    // The interceptors that decide nothing at or above `target`, with their cursors there.
    const open: Undecided[] = [];
    for (const e of beforeRead) {
      const state = await checkAncestors(e, target, base, leaf);
      if (state === "denied") throw forbidden(target, e);
      if (state !== "granted") open.push({ e, cursors: state });
    }
    if (leaf || open.length === 0) return [...children];
    const out: ChildSummary[] = [];
    for (const child of children) if (await readable(open, target, child, base, list)) out.push(child);
    return out;
  }

  /**
   * Whether anything at or under `child` of `parent` is left once every interceptor in `open`
   * has pruned it, as `prune` run by each in turn would leave it: the path is out when one of
   * them says `false` here; in when each has said `true` here or above, or has no pattern that
   * could match deeper (or the child is a leaf: nothing deeper is delivered); otherwise (an
   * object some interceptor decides only below) it is in when one of its own children is. That
   * search lists keys, never values, and stops at the first readable descendant; at worst it
   * visits every key of the subtree that `path` would have read whole.
   */
  async function readable(
    open: readonly Undecided[],
    parent: Path,
    child: ChildSummary,
    base: Omit<ReadHookArgs, keyof Match | "leaf" | "data">,
    list: ListChildren,
  ): Promise<boolean> {
    const path = [...parent, child.key];
    const isLeaf = child.type !== "object";
    const deeperOpen: Undecided[] = [];
    for (const { e, cursors } of open) {
      const next = cursors.map((c, j) => (c ? step(e.patterns[j] as CompiledPattern, c, child.key) : undefined));
      const at = next.findIndex((c, j) => c !== undefined && complete(e.patterns[j] as CompiledPattern, c));
      let v: boolean | undefined;
      if (at >= 0) v = await verdict(e, base, { path, captures: (next[at] as Cursor).captures }, isLeaf);
      if (v === false) return false;
      if (v === true || isLeaf) continue;
      if (next.some((c, j) => c !== undefined && deeper(e.patterns[j] as CompiledPattern, c))) deeperOpen.push({ e, cursors: next });
    }
    if (deeperOpen.length === 0) return true;
    let after: string | undefined;
    // Bounded by the subtree's keys (every page moves `after` forward) and by the request's deadline.
    for (;;) {
      const page = await list(path, after);
      for (const grandchild of page.children) if (await readable(deeperOpen, path, grandchild, base, list)) return true;
      const last = page.children[page.children.length - 1];
      if (!page.more || !last) return false;
      after = last.key;
    }
  }

  async function filterEvent(target: Path, mutation: Mutation, caller: Caller): Promise<Mutation | null> {
    const base = baseArgs(target, caller, "event");
    let merge: unknown = getNode(mutation.merge, target);
    let del: unknown = getDelete(mutation.delete, target);
    for (const e of beforeRead) {
      const state = await checkAncestors(e, target, base, merge !== undefined && !isTree(merge));
      if (state === "denied") return null;
      if (state === "granted") continue;
      if (merge !== undefined) merge = await prune(e, merge, [...target], state, base, false);
      if (del !== undefined && del !== true) del = await prune(e, del, [...target], state, base, true);
    }
    if (isEmptyNode(merge)) merge = undefined;
    if (isEmptyNode(del)) del = undefined;
    if (merge === undefined && del === undefined) return null;
    return {
      merge: merge === undefined ? emptyTree() : target.length === 0 ? (merge as Tree) : (inflate(target, merge) as Tree),
      delete:
        del === undefined
          ? (Object.create(null) as DeleteTree)
          : target.length === 0
            ? (del as DeleteTree)
            : (inflate(target, del) as DeleteTree),
    };
  }

  async function resolve(path: Path, readOptions: ReadOptions | undefined, caller: Caller) {
    for (const e of resolveQuery) {
      for (const p of e.patterns) {
        const captures = matchPath(p, path);
        if (!captures) continue;
        const value = await (e.interceptor.resolveQuery as NonNullable<Interceptor["resolveQuery"]>)({
          path,
          captures,
          options: readOptions,
          auth: caller.auth,
          internal: caller.internal,
        });
        return { value };
      }
    }
    return undefined;
  }

  return {
    interceptors: options.interceptors,
    get effects() {
      return runner;
    },
    checksReads: beforeRead.length > 0,
    build,
    committed,
    authorize,
    filterValue,
    filterChildren,
    filterEvent,
    resolve,
    start(gateway) {
      gatewayRef = gateway;
      if (effect.length > 0) {
        if (!gateway.store.outbox) throw new Error(`the store (${gateway.store.description}) has no outbox, so effects cannot run`);
        runner = createEffectRunner({
          outbox: gateway.store.outbox,
          handlers: byName,
          log,
          pollMs: options.effectPollMs ?? 1000,
          ...(options.effectLeaseMs !== undefined ? { leaseMs: options.effectLeaseMs } : {}),
          commit: async (input) => {
            const r = await gateway.commit(mutationFromInput(input, gateway.limits), INTERNAL_CALLER);
            return { version: r.version };
          },
        });
        runner.start();
      }
    },
    async close() {
      await runner?.close();
    },
  };
}

function isEmptyNode(node: unknown): boolean {
  if (!isTree(node)) return false;
  for (const _ in node) return false;
  return true;
}

/** The delete tree at `path`: `true` when a mark at or above it removes it. */
function getDelete(del: DeleteTree, path: Path): unknown {
  let node: unknown = del;
  for (const key of path) {
    if (node === true) return true;
    if (!isTree(node) || !has(node, key)) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

function forbidden(target: Path, e: Entry): KoraError {
  return new KoraError("FORBIDDEN", `reading ${showPath(target)} is not allowed (denied by ${e.name}); read a path your rules grant`, {
    path: target,
  });
}

/**
 * Whether applying `m` leaves nothing of what was stored at `path`: a delete mark at or above it,
 * or a leaf merged above it. (Merging a leaf AT `path` also replaces it.)
 */
export function replaces(m: Mutation, path: Path): boolean {
  let del: DeleteTree | true | undefined = m.delete;
  let merge: Node | undefined = m.merge;
  for (let i = 0; ; i++) {
    if (del === true) return true;
    if (merge !== undefined && !isTree(merge)) return true;
    if (i === path.length) return false;
    const key = path[i] as string;
    del = del !== undefined && has(del, key) ? del[key] : undefined;
    merge = isTree(merge) && has(merge, key) ? merge[key] : undefined;
  }
}
