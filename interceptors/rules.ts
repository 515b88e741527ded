/**
 * The declarative rules engine: a `kora.rules.yaml` (or `.json`) file mapping path patterns to
 * `read`/`write` CEL expressions, `validate` (CEL) and `schema` (JSON Schema) checks on `newData`,
 * and `denormalize` markup. It is an ordinary interceptor built on the public API; docs/rules.md
 * is the reference for the file format and the semantics.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { type FSWatcher, readFileSync, watch } from "node:fs";
import { basename, dirname, resolve as resolvePath } from "node:path";
import { Environment } from "@marcbachmann/cel-js";
import { Ajv, type ValidateFunction } from "ajv";
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node as YamlNode, type Pair } from "yaml";
import type { Logger } from "../core/gateway.ts";
import { KoraError, showPath } from "../core/errors.ts";
import { has, isTree } from "../core/tree.ts";
import type { Node, Path } from "../core/types.ts";
import { type CompiledPattern, START, compilePattern, deeper, keysOf, matchMutation, matchPath, step } from "./pattern.ts";
import type { Interceptor, MutationHookArgs, Pattern, ReadHookArgs } from "./types.ts";

/** A rules file that cannot be loaded: the message names the file, line, column and pattern. */
export class RulesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RulesError";
  }
}

/**
 * A compiled CEL expression. `usesData` / `usesNewData`: whether its text names the variable at all;
 * when it does not, the engine reads nothing for it (a read inside the write transaction is a
 * round trip).
 */
type Expr = { source: string; run: (ctx: Record<string, unknown>) => unknown; usesData: boolean; usesNewData: boolean };

interface DenormalizeEntry {
  /** Segments of the target path: literal, `$capture`, or a CEL expression over `value`. */
  path: ({ kind: "literal"; key: string } | { kind: "capture"; name: string } | { kind: "expr"; expr: Expr })[];
  /** What to write at the target; default `now`. */
  value: Expr | undefined;
}

interface Rule {
  /** As written in the file, for messages. */
  source: string;
  pattern: CompiledPattern;
  read?: Expr;
  write?: Expr;
  validate?: Expr;
  schema?: ValidateFunction;
  denormalize: DenormalizeEntry[];
}

export interface Ruleset {
  readonly file: string;
  readonly rules: readonly Rule[];
}

const RULE_KEYS = ["read", "write", "validate", "schema", "denormalize"] as const;
const TOP_KEYS = ["rules"] as const;

/** Parses a rule's key: keys separated by `/` (`~1` is a literal `/`, `~0` a `~`); `/` alone is the root. */
export function parseRulePath(text: string): Pattern {
  if (text === "/" || text === "") return [];
  return text
    .replace(/^\//, "")
    .split("/")
    .map((k) => k.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function baseEnvironment(): Environment {
  return new Environment({ homogeneousAggregateLiterals: false })
    .registerVariable("auth", "dyn")
    .registerVariable("data", "dyn")
    .registerVariable("newData", "dyn")
    .registerVariable("value", "dyn")
    .registerVariable("now", "int");
}

/** Loads and checks a rules file; throws `RulesError` with file, line and pattern on any mistake. */
export function loadRules(file: string): Ruleset {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new RulesError(`${file}: cannot read the rules file (${(error as Error).message})`);
  }
  return parseRules(text, file);
}

export function parseRules(text: string, file: string): Ruleset {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true });
  const at = (node: YamlNode | Pair | null | undefined) => {
    const range = (node as { range?: [number, number, number] } | null | undefined)?.range;
    if (!range) return file;
    const pos = lines.linePos(range[0]);
    return `${file}:${pos.line}:${pos.col}`;
  };
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const pos = e.linePos?.[0];
    throw new RulesError(`${file}${pos ? `:${pos.line}:${pos.col}` : ""}: syntax error: ${e.message.split("\n")[0]}`);
  }
  const root = doc.contents;
  if (!root || (isScalar(root) && root.value == null)) return { file, rules: [] };
  if (!isMap(root)) throw new RulesError(`${at(root)}: the rules file must be a mapping with a "rules" key`);
  for (const pair of root.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : "";
    if (!(TOP_KEYS as readonly string[]).includes(key)) {
      throw new RulesError(`${at(pair.key as YamlNode)}: unknown key ${JSON.stringify(key)}; the file holds "rules" only`);
    }
  }
  const rulesNode = root.get("rules", true) as YamlNode | undefined;
  if (rulesNode == null || (isScalar(rulesNode) && rulesNode.value == null)) return { file, rules: [] };
  if (!isMap(rulesNode)) throw new RulesError(`${at(rulesNode)}: "rules" must map path patterns to rules`);

  const env = baseEnvironment();
  const ajv = new Ajv({ allErrors: true, strict: true });
  const rules: Rule[] = [];
  for (const pair of rulesNode.items) {
    const keyNode = pair.key as YamlNode;
    const source = isScalar(keyNode) ? String(keyNode.value) : "";
    const where = (node: YamlNode | Pair | null | undefined) => `${at(node ?? keyNode)}: rule ${JSON.stringify(source)}`;
    let pattern: CompiledPattern;
    try {
      pattern = compilePattern(parseRulePath(source));
    } catch (error) {
      throw new RulesError(`${where(keyNode)}: ${(error as Error).message}`);
    }
    const captures = pattern.steps.flatMap((s) => (s.kind === "capture" ? [s.name] : []));
    const ruleEnv = env.clone();
    for (const name of captures) {
      if (["auth", "data", "newData", "value", "now"].includes(name)) {
        throw new RulesError(`${where(keyNode)}: capture $${name} shadows a built-in variable; rename it`);
      }
      ruleEnv.registerVariable(name, "string");
    }
    const body = pair.value as YamlNode | null;
    if (!isMap(body)) throw new RulesError(`${where(body)}: a rule is a mapping with ${RULE_KEYS.join(", ")}`);
    const rule: Rule = { source, pattern, denormalize: [] };
    const compileExpr = (node: YamlNode | null | undefined, what: string, text?: string): Expr => {
      const value = text ?? (isScalar(node) ? node.value : undefined);
      const src = typeof value === "boolean" ? String(value) : value;
      if (typeof src !== "string" || src.trim() === "") {
        throw new RulesError(`${where(node)}: ${what} must be a CEL expression (a string), e.g. "auth != null"`);
      }
      const checked = ruleEnv.check(src);
      if (!checked.valid) {
        throw new RulesError(`${where(node)}: ${what} is not valid CEL: ${String(checked.error?.message ?? "").split("\n")[0]}`);
      }
      const run = ruleEnv.parse(src) as unknown as (ctx: Record<string, unknown>) => unknown;
      return { source: src, run, usesData: /\bdata\b/.test(src), usesNewData: /\bnewData\b/.test(src) };
    };
    for (const item of body.items) {
      const k = isScalar(item.key) ? String(item.key.value) : "";
      const v = item.value as YamlNode | null;
      switch (k) {
        case "read":
        case "write":
        case "validate": {
          const expr = compileExpr(v, k);
          if (k === "read" || k === "write" || k === "validate") {
            const checked = ruleEnv.check(expr.source);
            if (checked.valid && checked.type !== "bool" && checked.type !== "dyn") {
              throw new RulesError(`${where(v)}: ${k} must be a boolean expression; ${JSON.stringify(expr.source)} is ${checked.type}`);
            }
          }
          rule[k] = expr;
          break;
        }
        case "schema": {
          try {
            rule.schema = ajv.compile((v as YamlNode).toJSON() as object);
          } catch (error) {
            throw new RulesError(`${where(v)}: schema is not a valid JSON Schema: ${(error as Error).message}`);
          }
          break;
        }
        case "denormalize": {
          if (!isSeq(v)) throw new RulesError(`${where(v)}: denormalize is a list of { path, value? }`);
          for (const entryNode of v.items as YamlNode[]) {
            if (!isMap(entryNode)) throw new RulesError(`${where(entryNode)}: a denormalize entry is { path, value? }`);
            for (const p of entryNode.items) {
              const ek = isScalar(p.key) ? String(p.key.value) : "";
              if (ek !== "path" && ek !== "value") {
                throw new RulesError(`${where(p.key as YamlNode)}: unknown denormalize key ${JSON.stringify(ek)}; use path and value`);
              }
            }
            const pathNode = entryNode.get("path", true) as YamlNode | undefined;
            const pathText = isScalar(pathNode) ? pathNode.value : undefined;
            if (typeof pathText !== "string" || pathText === "") {
              throw new RulesError(`${where(pathNode ?? entryNode)}: denormalize path must be a string like "company:employees/{value}/$uid"`);
            }
            const segments = parseRulePath(pathText).map((seg) => {
              const expr = /^\{(.+)\}$/.exec(seg);
              if (expr) return { kind: "expr" as const, expr: compileExpr(pathNode, `denormalize path segment ${seg}`, expr[1]) };
              if (seg.startsWith("$")) {
                const name = seg.slice(1);
                if (!captures.includes(name)) {
                  throw new RulesError(`${where(pathNode)}: denormalize path uses $${name}, which the rule's pattern does not capture`);
                }
                return { kind: "capture" as const, name };
              }
              return { kind: "literal" as const, key: seg.startsWith("\\") ? seg.slice(1) : seg };
            });
            if (segments.length === 0) throw new RulesError(`${where(pathNode)}: denormalize path cannot be the root`);
            const valueNode = entryNode.get("value", true) as YamlNode | undefined;
            rule.denormalize.push({ path: segments, value: valueNode === undefined ? undefined : compileExpr(valueNode, "denormalize value") });
          }
          break;
        }
        default:
          throw new RulesError(`${where(item.key as YamlNode)}: unknown key ${JSON.stringify(k)}; a rule may hold ${RULE_KEYS.join(", ")}`);
      }
    }
    rules.push(rule);
  }
  return { file, rules };
}

/** CEL numbers come back as BigInt (ints) or Maps: turn results into JSON for the tree. */
function toJsonValue(v: unknown): unknown {
  if (typeof v === "bigint") return Number(v);
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [String(k), toJsonValue(x)]));
  if (Array.isArray(v)) return v.map(toJsonValue);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toJsonValue(x)]));
  return v;
}

/** Evaluates a boolean rule; any evaluation error (a missing key, a type mismatch) is `false`. */
function holds(expr: Expr, ctx: Record<string, unknown>): boolean {
  try {
    return expr.run(ctx) === true;
  } catch {
    return false;
  }
}

/** Which rule decided a read or write check at one path (the rules simulator shows these). */
export interface RuleDecision {
  kind: "read" | "write";
  path: Path;
  allowed: boolean;
  /** The rule's key as written in the file, when a rule granted. */
  rule?: string;
  /** The CEL expression that granted. */
  expression?: string;
}

// Decisions are recorded only inside `traceRuleDecisions`: the simulator runs the very checks a
// request runs and reads them here, so its verdicts cannot drift from the real ones.
const tracing = new AsyncLocalStorage<RuleDecision[]>();
function record(decision: RuleDecision): void {
  tracing.getStore()?.push(decision);
}

/** Runs `fn`, collecting the decisions every rules engine takes for it (in its async context). */
export async function traceRuleDecisions<T>(fn: () => Promise<T>, into: RuleDecision[] = []): Promise<{ result: T; decisions: RuleDecision[] }> {
  const result = await tracing.run(into, fn);
  return { result, decisions: into };
}

export interface RulesEngineOptions {
  /** The rules file (YAML or JSON). */
  file: string;
  /** Reload the file when it changes (a broken edit is logged and the previous rules stay). Default true. */
  watch?: boolean;
  log?: Logger;
}

export interface RulesEngine {
  /** The interceptor to put in the config's list (first, so rules see client writes before others add to them). */
  readonly interceptor: Interceptor;
  readonly ruleset: Ruleset;
  /** Loads the file again; throws `RulesError` and keeps the previous rules on a mistake. */
  reload(): Ruleset;
  close(): void;
}

/** Loads a rules file (throwing `RulesError` on any mistake) and returns its interceptor. */
export function createRulesEngine(options: RulesEngineOptions): RulesEngine {
  const file = resolvePath(options.file);
  let ruleset = loadRules(file);
  const log = options.log;
  let watcher: FSWatcher | undefined;
  if (options.watch ?? true) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    // Watch the folder: editors often replace the file instead of writing it in place.
    watcher = watch(dirname(file), (_event, name) => {
      if (name !== null && name !== basename(file)) return;
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        try {
          ruleset = loadRules(file);
          log?.info({ file, rules: ruleset.rules.length }, "rules reloaded");
        } catch (error) {
          log?.error({ file, err: error }, `rules not reloaded, the previous ones stay: ${(error as Error).message}`);
        }
      }, 50);
      timer.unref?.();
    });
    watcher.unref?.();
  }

  function ctxFor(captures: Readonly<Record<string, string>>, auth: unknown, now: number, extra: Record<string, unknown>) {
    return { ...captures, auth: auth ?? null, now: BigInt(now), data: null, newData: null, value: null, ...extra };
  }

  async function beforeRead(args: ReadHookArgs): Promise<boolean | undefined> {
    if (args.internal) return true;
    let anyBelow = false;
    for (const rule of ruleset.rules) {
      if (rule.read) {
        const captures = matchPath(rule.pattern, args.path);
        if (captures) {
          const data = rule.read.usesData ? ((await args.data()) ?? null) : null;
          if (holds(rule.read, ctxFor(captures, args.auth, args.now, { data }))) {
            record({ kind: "read", path: args.path, allowed: true, rule: rule.source, expression: rule.read.source });
            return true;
          }
        }
      }
      if (!anyBelow && rule.read && canMatchBelow(rule.pattern, args.path)) anyBelow = true;
    }
    // Nothing grants here: deeper rules may still grant parts, unless there is nothing deeper.
    if (anyBelow && !args.leaf) return undefined;
    record({ kind: "read", path: args.path, allowed: false });
    return false;
  }

  async function beforeMutation(args: MutationHookArgs): Promise<{ merge: unknown; delete: unknown } | undefined> {
    const rules = ruleset.rules;
    const m = args.part;
    const keysAt = async (p: Path) => keysOf(await args.data(p));
    if (!args.internal) await checkWrite(args, rules);
    const merge = Object.create(null) as Record<string, unknown>;
    const del = Object.create(null) as Record<string, unknown>;
    let added = false;
    for (const rule of rules) {
      if (!rule.validate && !rule.schema && rule.denormalize.length === 0) continue;
      for (const match of await matchMutation(rule.pattern, m, keysAt)) {
        const after = await args.newData(match.path);
        if ((rule.validate || rule.schema) && after !== undefined) {
          if (rule.schema && !rule.schema(after)) {
            const detail = (rule.schema.errors ?? []).map((e) => `${e.instancePath || "value"} ${e.message}`).join("; ");
            throw new KoraError("BAD_USER_INPUT", `value at ${showPath(match.path)} does not match the schema of rule ${JSON.stringify(rule.source)}: ${detail}`, {
              path: match.path,
            });
          }
          if (rule.validate) {
            const before = rule.validate.usesData ? ((await args.data(match.path)) ?? null) : null;
            if (!holds(rule.validate, ctxFor(match.captures, args.auth, args.now, { data: before, newData: after, value: after }))) {
              throw new KoraError(
                "BAD_USER_INPUT",
                `value at ${showPath(match.path)} fails validate of rule ${JSON.stringify(rule.source)}: ${rule.validate.source}`,
                { path: match.path },
              );
            }
          }
        }
        if (rule.denormalize.length === 0) continue;
        const before = await args.data(match.path);
        for (const entry of rule.denormalize) {
          const base = { data: before ?? null, newData: after ?? null };
          const target = { rule: rule.source, at: match.path };
          // The old target was computed when it was written, so it was a valid key then: a value
          // that no longer computes one leaves nothing to delete. The new one must be a key.
          const oldPath =
            before === undefined ? undefined : render(entry, match.captures, ctxFor(match.captures, args.auth, args.now, { ...base, value: before }));
          const newPath =
            after === undefined ? undefined : render(entry, match.captures, ctxFor(match.captures, args.auth, args.now, { ...base, value: after }), target);
          if (oldPath && (!newPath || showPath(oldPath) !== showPath(newPath))) {
            put(del, oldPath, true);
            added = true;
          }
          if (newPath) {
            const ctx = ctxFor(match.captures, args.auth, args.now, { ...base, value: after });
            let value: unknown = args.now;
            if (entry.value) {
              try {
                value = toJsonValue(entry.value.run(ctx));
              } catch (error) {
                throw new KoraError("BAD_USER_INPUT", `denormalize value of rule ${JSON.stringify(rule.source)} failed at ${showPath(match.path)}: ${(error as Error).message.split("\n")[0]}`, {
                  path: match.path,
                });
              }
            }
            if (value === null || value === undefined) put(del, newPath, true);
            else put(merge, newPath, value);
            added = true;
          }
        }
      }
    }
    return added ? { merge, delete: del } : undefined;
  }

  /** Firebase-like cascade: a write is allowed where a rule at it or above it grants `write`. */
  async function checkWrite(args: MutationHookArgs, rules: readonly Rule[]): Promise<void> {
    const walk = async (path: string[], merge: unknown, del: unknown): Promise<void> => {
      for (const rule of rules) {
        if (!rule.write) continue;
        const captures = matchPath(rule.pattern, path);
        if (!captures) continue;
        const extra: Record<string, unknown> = {};
        if (rule.write.usesNewData) extra.newData = (await args.newData(path)) ?? null;
        if (rule.write.usesData) extra.data = (await args.data(path)) ?? null;
        if (holds(rule.write, ctxFor(captures, args.auth, args.now, extra))) {
          record({ kind: "write", path, allowed: true, rule: rule.source, expression: rule.write.source });
          return;
        }
      }
      const mergeTree = isTree(merge) ? merge : undefined;
      const delTree = isTree(del) ? (del as Record<string, unknown>) : undefined;
      if (del === true || (merge !== undefined && !mergeTree)) {
        record({ kind: "write", path, allowed: false });
        throw new KoraError("FORBIDDEN", `writing ${showPath(path)} is not allowed by the rules (${ruleset.file}); no write rule at or above it grants it`, {
          path,
        });
      }
      const keys = new Set<string>([...(mergeTree ? Object.keys(mergeTree) : []), ...(delTree ? Object.keys(delTree) : [])]);
      for (const key of keys) {
        await walk(
          [...path, key],
          mergeTree && has(mergeTree, key) ? mergeTree[key] : undefined,
          delTree && has(delTree, key) ? delTree[key] : undefined,
        );
      }
    };
    await walk([], args.part.merge, args.part.delete);
  }

  const interceptor: Interceptor = {
    name: "rules",
    path: ["**"],
    beforeMutation,
    beforeRead,
  };

  return {
    interceptor,
    get ruleset() {
      return ruleset;
    },
    reload() {
      ruleset = loadRules(file);
      return ruleset;
    },
    close() {
      watcher?.close();
    },
  };
}

function canMatchBelow(p: CompiledPattern, path: Path): boolean {
  let cursor = START;
  for (const key of path) {
    const next = step(p, cursor, key);
    if (!next) return false;
    cursor = next;
  }
  return deeper(p, cursor);
}

/**
 * The target path of a denormalize entry on one side (before or after), or undefined when a
 * segment's expression fails or computes null (the value has no such field: nothing to keep in
 * step). With `strict`, a segment that computes something that cannot be a key (an empty string,
 * a control character, a non-string) is BAD_USER_INPUT naming the rule, as the same logic in an
 * interceptor would be refused by the core; without it, such a side is simply skipped.
 */
function render(
  entry: DenormalizeEntry,
  captures: Readonly<Record<string, string>>,
  ctx: Record<string, unknown>,
  strict?: { rule: string; at: readonly string[] },
): string[] | undefined {
  const out: string[] = [];
  for (const seg of entry.path) {
    if (seg.kind === "literal") out.push(seg.key);
    else if (seg.kind === "capture") out.push(captures[seg.name] as string);
    else {
      let v: unknown;
      try {
        v = toJsonValue(seg.expr.run(ctx));
      } catch {
        return undefined;
      }
      if (v === null || v === undefined) return undefined;
      if (typeof v === "number") v = String(v);
      const bad =
        typeof v !== "string"
          ? `computes ${JSON.stringify(v)?.slice(0, 60) ?? typeof v}, not a string`
          : v === ""
            ? "computes an empty string"
            : /[\u0000-\u001f\u007f]/.test(v)
              ? `computes ${JSON.stringify(v.slice(0, 60))}, which holds a control character (U+0000-U+001F, U+007F)`
              : undefined;
      if (bad !== undefined) {
        if (!strict) return undefined;
        throw new KoraError(
          "BAD_USER_INPUT",
          `denormalize target of rule ${JSON.stringify(strict.rule)} for the value at ${showPath(strict.at)}: the segment ${seg.expr.source} ${bad}; a key is a non-empty string without control characters`,
          { path: strict.at },
        );
      }
      out.push(v as string);
    }
  }
  return out;
}

function put(tree: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = tree;
  for (let i = 0; i < path.length - 1; i++) {
    const key = path[i] as string;
    let next = has(node, key) ? node[key] : undefined;
    if (!isTree(next as Node)) {
      next = Object.create(null);
      node[key] = next;
    }
    node = next as Record<string, unknown>;
  }
  node[path[path.length - 1] as string] = value;
}
