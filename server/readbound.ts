/**
 * The bound on what one operation may read (docs/security.md, "Cost"). Document limits cannot
 * see it: `a1: path(path: ["big"]) … a100: path(path: ["big"])` is a small document whose answer
 * repeats one large subtree a hundred times. After execution and before the response is
 * serialized, the leaves and (estimated) JSON bytes of the result are counted; over either bound,
 * the whole result is replaced by one `PAYLOAD_TOO_LARGE` error naming the limit, so the large
 * response is never built. Counting stops at the bound, and a subtree repeated by aliases (the
 * store's read is shared by the operation's loader) is counted once and added per occurrence.
 */
import { GraphQLError, getOperationAST } from "graphql";
import type { Plugin } from "graphql-yoga";
import { isSharedResult } from "./watchpath.ts";

export interface ReadLimits {
  /** Most leaves (non-object values, an array counting as one) in one operation's result. Default 100,000. */
  maxReadLeaves: number;
  /** Most bytes of JSON (estimated from string lengths) in one operation's result. Default 16 MiB. */
  maxReadBytes: number;
}

export const DEFAULT_READ_LIMITS: ReadLimits = {
  maxReadLeaves: 100_000,
  maxReadBytes: 16 * 1024 * 1024,
};

interface Size {
  leaves: number;
  bytes: number;
}

/** Counts `value` into `total`, stopping once a bound is passed; objects are memoized. */
function measure(
  value: unknown,
  total: Size,
  limits: ReadLimits,
  seen: WeakMap<object, Size>,
): void {
  if (total.leaves > limits.maxReadLeaves || total.bytes > limits.maxReadBytes) return;
  if (value === null || typeof value !== "object") {
    total.leaves++;
    total.bytes += typeof value === "string" ? value.length + 2 : 8;
    return;
  }
  const known = seen.get(value);
  if (known) {
    total.leaves += known.leaves;
    total.bytes += known.bytes;
    return;
  }
  const own: Size = { leaves: 0, bytes: 2 };
  if (Array.isArray(value)) {
    // An array is one leaf of the tree, but its size counts like any other.
    const inner: Size = { leaves: 0, bytes: 0 };
    for (const item of value) {
      measure(item, inner, limits, seen);
      if (inner.bytes > limits.maxReadBytes) break;
    }
    own.leaves = 1;
    own.bytes += inner.bytes + value.length;
  } else {
    for (const key in value) {
      own.bytes += key.length + 4;
      measure((value as Record<string, unknown>)[key], own, limits, seen);
      if (own.leaves > limits.maxReadLeaves || own.bytes > limits.maxReadBytes) break;
    }
  }
  seen.set(value, own);
  total.leaves += own.leaves;
  total.bytes += own.bytes;
}

/** The refusal, or undefined when `data` is within the bounds. */
export function readBoundError(data: unknown, limits: ReadLimits): GraphQLError | undefined {
  const total: Size = { leaves: 0, bytes: 0 };
  measure(data, total, limits, new WeakMap());
  if (total.leaves > limits.maxReadLeaves) {
    return new GraphQLError(
      `this operation reads more than ${limits.maxReadLeaves} leaves (operationLimits.maxReadLeaves); read smaller subtrees, page with limit/min/max, or split it into several operations`,
      { extensions: { code: "PAYLOAD_TOO_LARGE" } },
    );
  }
  if (total.bytes > limits.maxReadBytes) {
    return new GraphQLError(
      `this operation reads more than ${limits.maxReadBytes} bytes (operationLimits.maxReadBytes); read smaller subtrees, page with limit/min/max, or split it into several operations`,
      { extensions: { code: "PAYLOAD_TOO_LARGE" } },
    );
  }
  return undefined;
}

/**
 * Applies the bound to every query result and every subscription event. Mutation results echo
 * the mutation, which the mutation size limit already bounds.
 */
/**
 * The bound's refusal of one subscription event's result, if over it; counted once for a result
 * shared by many subscribers (server/watchpath.ts, `isSharedResult`).
 */
export function eventRefusal(limits: ReadLimits): (result: unknown) => GraphQLError | undefined {
  const verdicts = new WeakMap<object, GraphQLError | null>();
  return (result) => {
    const data = (result as { data?: unknown } | null | undefined)?.data;
    if (data === undefined || data === null) return undefined;
    if (!isSharedResult(result)) return readBoundError(data, limits);
    let verdict = verdicts.get(result as object);
    if (verdict === undefined) {
      verdict = readBoundError(data, limits) ?? null;
      verdicts.set(result as object, verdict);
    }
    return verdict ?? undefined;
  };
}

export function useReadBound(limits: ReadLimits): Plugin {
  const check = ({ result, setResult }: { result: unknown; setResult: (r: never) => void }) => {
    const data = (result as { data?: unknown }).data;
    if (data === undefined || data === null) return;
    const error = readBoundError(data, limits);
    if (error) setResult({ data: null, errors: [error] } as never);
  };
  const refusal = eventRefusal(limits);
  return {
    onExecute({ args }) {
      if (getOperationAST(args.document, args.operationName ?? undefined)?.operation !== "query")
        return;
      return { onExecuteDone: (payload) => void check(payload as never) };
    },
    onSubscribe() {
      return {
        onSubscribeResult() {
          return {
            onNext: (payload) => {
              const { result, setResult } = payload as {
                result: unknown;
                setResult: (r: never) => void;
              };
              const error = refusal(result);
              if (error) setResult({ data: null, errors: [error] } as never);
            },
          };
        },
      };
    },
  };
}
