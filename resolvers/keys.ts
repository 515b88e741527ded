/** The `keys` query: a node's children, keys only (docs/decisions.md, "A keys-only listing"). */
import type { KeysPage } from "../core/gateway.ts";
import { badInput } from "../core/errors.ts";
import { validateKey } from "../core/tree.ts";
import { pathArg } from "./args.ts";
import type { KoraContext } from "./context.ts";

/** Children per page when `limit` is not given, and the most one page may ask for. */
export const DEFAULT_KEYS_LIMIT = 100;
export const MAX_KEYS_LIMIT = 1000;

export interface KeysArgs {
  path: readonly string[];
  after?: string | null;
  limit?: number | null;
}

export async function resolveKeys(args: KeysArgs, ctx: KoraContext): Promise<KeysPage | null> {
  const limits = ctx.gateway.limits;
  const path = pathArg(args.path, limits);
  // A cursor compares against keys, so it obeys the key rules (it need not exist).
  const after = args.after == null ? undefined : validateKey(args.after, path, limits);
  const limit = args.limit ?? DEFAULT_KEYS_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_KEYS_LIMIT) {
    throw badInput(`limit ${limit} at path ${JSON.stringify(path)} must be an integer from 1 to ${MAX_KEYS_LIMIT}; page on with \`after\``, path);
  }
  return (await ctx.gateway.keys(path, { after, limit }, ctx.caller)) ?? null;
}
