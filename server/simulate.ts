/**
 * The rules simulator ("as these claims, may I read / write here?"), shared by `kora rules test`
 * and the console. It runs a request's own code: a read is `gateway.query` as the caller, a write
 * is the gateway pipeline's build inside a real write transaction that is then abandoned (the
 * builder throws once it has built, so nothing commits). The rules engine reports which rule
 * decided (interceptors/rules.ts, `traceRuleDecisions`).
 */
import type { Caller, Gateway } from "../core/gateway.ts";
import { type ErrorCode, KoraError } from "../core/errors.ts";
import { deleteAt, mergeAt, mutationFromInput, validatePath } from "../core/tree.ts";
import type { Mutation, Node, Path } from "../core/types.ts";
import { type RuleDecision, traceRuleDecisions } from "../interceptors/rules.ts";

export type SimulationRequest =
  | { auth: Record<string, unknown> | null; read: Path; limit?: number }
  | { auth: Record<string, unknown> | null; write: Path; value: unknown }
  | { auth: Record<string, unknown> | null; delete: Path }
  /** A whole mutation rooted at [], as the `mutate` field takes it. */
  | { auth: Record<string, unknown> | null; mutate: { merge?: unknown; delete?: unknown } };

export interface Verdict {
  allowed: boolean;
  /** Why not: the code and message a real request would get. */
  code?: ErrorCode;
  message?: string;
  /** Every rule decision taken, in order; `decidedBy` is the one that settled the target path. */
  decisions: RuleDecision[];
  decidedBy?: RuleDecision | undefined;
  /** A read: the value the caller would see (children it may not read left out). */
  value?: Node | null;
  /** A write: the mutation as it would commit, interceptor additions included. */
  mutation?: Mutation;
}

/** Thrown by the dry-run builder once the mutation is built: aborts the transaction. */
class DryRun extends Error {
  constructor(readonly mutation: Mutation) {
    super("dry run: nothing is committed");
  }
}

function failed(error: unknown, decisions: RuleDecision[], target: Path): Verdict {
  if (!(error instanceof KoraError)) throw error;
  const denied = decisions.find((d) => !d.allowed) ?? decisions.find((d) => samePath(d.path, target));
  return { allowed: false, code: error.code, message: error.message, decisions, decidedBy: denied };
}

function samePath(a: Path, b: Path): boolean {
  return a.length === b.length && a.every((k, i) => k === b[i]);
}

/** Answers one simulation against `gateway`'s pipeline, as a caller with `auth` as its claims. */
export async function simulate(gateway: Gateway, request: SimulationRequest): Promise<Verdict> {
  try {
    return await run(gateway, request);
  } catch (error) {
    // Bad input (a path with a control character, a null value) fails as the request would.
    return failed(error, [], []);
  }
}

async function run(gateway: Gateway, request: SimulationRequest): Promise<Verdict> {
  const caller: Caller = { auth: request.auth, internal: false };
  const decisions: RuleDecision[] = [];
  if ("read" in request) {
    const path = validatePath(request.read, gateway.limits);
    const options = request.limit !== undefined ? { limit: request.limit } : undefined;
    const { result } = await traceRuleDecisions(() => gateway.query([{ path, options }], caller), decisions);
    const value = result.values[0];
    if (value instanceof KoraError) return failed(value, decisions, path);
    // The decision at the path itself, else the nearest one above it that granted.
    const decidedBy =
      decisions.find((d) => samePath(d.path, path)) ?? decisions.find((d) => d.allowed && path.length > d.path.length && samePath(d.path, path.slice(0, d.path.length)));
    return { allowed: true, decisions, decidedBy, value: value ?? null };
  }
  const target = "write" in request ? request.write : "delete" in request ? request.delete : [];
  const mutation =
    "write" in request
      ? mergeAt(validatePath(target, gateway.limits), request.value, gateway.limits)
      : "delete" in request
        ? deleteAt(validatePath(target, gateway.limits), gateway.limits)
        : mutationFromInput(request.mutate, gateway.limits);
  const pipeline = gateway.pipeline;
  try {
    await gateway.store.commit(async (tx) => {
      // The builder runs in the store's batch, maybe started by another request: trace it here.
      const { result } = await traceRuleDecisions(async () => (pipeline ? pipeline.build(mutation, caller)(tx) : mutation), decisions);
      throw new DryRun(result);
    });
  } catch (error) {
    if (error instanceof DryRun) {
      const decidedBy = decisions.find((d) => d.kind === "write" && d.allowed);
      return { allowed: true, decisions, decidedBy, mutation: error.mutation };
    }
    return failed(error, decisions, target);
  }
  throw new Error("the dry-run build committed"); // unreachable: the builder always throws
}

/** One line for people: the verdict and the rule that decided. */
export function describeVerdict(request: SimulationRequest, verdict: Verdict): string {
  const what =
    "read" in request
      ? `read ${JSON.stringify(request.read)}`
      : "write" in request
        ? `write ${JSON.stringify(request.write)}`
        : "delete" in request
          ? `delete ${JSON.stringify(request.delete)}`
          : `mutate ${JSON.stringify(request.mutate).slice(0, 200)}`;
  const by = verdict.decidedBy?.rule ? ` by rule ${JSON.stringify(verdict.decidedBy.rule)} (${verdict.decidedBy.kind}: ${verdict.decidedBy.expression})` : "";
  if (verdict.allowed) return `ALLOWED ${what}${by}`;
  return `DENIED ${what} (${verdict.code}): ${verdict.message}`;
}
