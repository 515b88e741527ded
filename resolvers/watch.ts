import type { GraphQLResolveInfo, SelectionSetNode } from "graphql";
import type { Watch, WatchEvent } from "../core/watch.ts";
import { pathArg, versionArg } from "./args.ts";
import type { KoraContext } from "./context.ts";

export async function subscribeWatch(
  args: { path: readonly string[]; since?: string | null },
  ctx: KoraContext,
  info: GraphQLResolveInfo,
): Promise<AsyncIterable<WatchEvent>> {
  // Keeping a copy of the subtree costs memory per watch: only when a client asks for `value`.
  const trackValue = info.fieldNodes.some((node) => selects(node.selectionSet, "value", info));
  return openWatch(args, ctx, trackValue);
}

/** The watch behind a `watch` subscription: arguments checked, authorized as the caller. */
export function openWatch(args: { path: readonly string[]; since?: string | null }, ctx: KoraContext, trackValue: boolean): Promise<Watch> {
  const path = pathArg(args.path, ctx.gateway.limits);
  const since = versionArg(args.since, path);
  return ctx.gateway.watch(path, { since, trackValue }, ctx.caller);
}

/** Whether a selection set asks for `field`, looking through fragments. */
function selects(set: SelectionSetNode | undefined, field: string, info: GraphQLResolveInfo, depth = 0): boolean {
  if (!set || depth > 16) return false;
  for (const s of set.selections) {
    if (s.kind === "Field" && s.name.value === field) return true;
    if (s.kind === "InlineFragment" && selects(s.selectionSet, field, info, depth + 1)) return true;
    if (s.kind === "FragmentSpread") {
      const fragment = info.fragments[s.name.value];
      if (fragment && selects(fragment.selectionSet, field, info, depth + 1)) return true;
    }
  }
  return false;
}
