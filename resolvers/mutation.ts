import type { CommitOptions } from "../core/conflicts.ts";
import type { CommitResult } from "../core/store.ts";
import { checkMutationSize, deleteAt, mergeAt, mutationFromInput } from "../core/tree.ts";
import { pathArg } from "./args.ts";
import type { KoraContext } from "./context.ts";

/** What `MutationResult` fields read. */
export type MutationOutcome = CommitResult;

/** The optional `ts` and `writeId` arguments of merge, delete and mutate (docs/conflicts.md). */
export interface StampArgs {
  ts?: string | null | undefined;
  writeId?: string | null | undefined;
}

/**
 * Mutations larger than this yield to the event loop between validating and committing, so one
 * big mutation's work comes in pieces that other requests run between (docs/storage.md,
 * "PGlite"). A yield costs a few microseconds; below this size the work takes well under 10 ms.
 */
const YIELD_BYTES = 256 * 1024;

/**
 * Lets waiting I/O (other requests) run. One setImmediate from I/O work runs in the same loop
 * iteration's check phase, before any new I/O is polled; the second runs after the next poll.
 */
const yieldToEventLoop = async () => {
  for (let i = 0; i < 2; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

function commitOptions(args: StampArgs): CommitOptions {
  return { ts: args.ts ?? undefined, writeId: args.writeId ?? undefined };
}

export async function resolveMerge(
  args: { path: readonly string[]; value: unknown } & StampArgs,
  ctx: KoraContext,
): Promise<MutationOutcome> {
  const { limits } = ctx.gateway;
  // Normalize first: it fails fast on hostile nesting, which would overflow JSON.stringify.
  const mutation = mergeAt(pathArg(args.path, limits), args.value, limits);
  if (checkMutationSize(args.value, limits) > YIELD_BYTES) await yieldToEventLoop();
  return ctx.gateway.commit(mutation, ctx.caller, commitOptions(args));
}

export async function resolveDelete(args: { path: readonly string[] } & StampArgs, ctx: KoraContext): Promise<MutationOutcome> {
  const { limits } = ctx.gateway;
  return ctx.gateway.commit(deleteAt(pathArg(args.path, limits), limits), ctx.caller, commitOptions(args));
}

export async function resolveMutate(
  args: { merge?: unknown; delete?: unknown } & StampArgs,
  ctx: KoraContext,
): Promise<MutationOutcome> {
  const { limits } = ctx.gateway;
  const mutation = mutationFromInput({ merge: args.merge ?? undefined, delete: args.delete ?? undefined }, limits);
  if (
    checkMutationSize({ merge: args.merge ?? null, delete: args.delete ?? null }, limits) >
    YIELD_BYTES
  )
    await yieldToEventLoop();
  return ctx.gateway.commit(mutation, ctx.caller, commitOptions(args));
}
