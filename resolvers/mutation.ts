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
 * A request that has held the event loop this long (ms) yields before its next step, so the work
 * of one big mutation (a 100,000-leaf merge: validation, size check, commit) comes in slices that
 * other requests run between (docs/storage.md, "PGlite"). Small mutations never reach it.
 */
const SLICE_MS = 20;

/**
 * Lets waiting I/O (other requests) run once `since` is more than SLICE_MS ago. One setImmediate
 * from I/O work runs in the same loop iteration's check phase, before any new I/O is polled; the
 * second runs after the next poll.
 */
async function yieldIfLong(since: number): Promise<number> {
  if (performance.now() - since < SLICE_MS) return since;
  for (let i = 0; i < 2; i++) await new Promise<void>((resolve) => setImmediate(resolve));
  return performance.now();
}

function commitOptions(args: StampArgs): CommitOptions {
  return { ts: args.ts ?? undefined, writeId: args.writeId ?? undefined };
}

export async function resolveMerge(
  args: { path: readonly string[]; value: unknown } & StampArgs,
  ctx: KoraContext,
): Promise<MutationOutcome> {
  const { limits } = ctx.gateway;
  // Normalize first: it fails fast on hostile nesting, which would overflow JSON.stringify.
  let slice = performance.now();
  const mutation = mergeAt(pathArg(args.path, limits), args.value, limits);
  slice = await yieldIfLong(slice);
  checkMutationSize(args.value, limits);
  await yieldIfLong(slice);
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
  let slice = performance.now();
  const mutation = mutationFromInput({ merge: args.merge ?? undefined, delete: args.delete ?? undefined }, limits);
  slice = await yieldIfLong(slice);
  checkMutationSize({ merge: args.merge ?? null, delete: args.delete ?? null }, limits);
  await yieldIfLong(slice);
  return ctx.gateway.commit(mutation, ctx.caller, commitOptions(args));
}
