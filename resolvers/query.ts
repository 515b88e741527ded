import type { Json } from "../core/types.ts";
import { pathArg, readOptionsArg } from "./args.ts";
import type { KoraContext } from "./context.ts";

export interface PathArgs {
  path: readonly string[];
  min?: string | null;
  max?: string | null;
  limit?: number | null;
  reverse?: boolean | null;
}

export async function resolvePath(args: PathArgs, ctx: KoraContext): Promise<Json> {
  const limits = ctx.gateway.limits;
  const path = pathArg(args.path, limits);
  const options = readOptionsArg(args, path, limits);
  const value = await ctx.loaders.path.load({ path, options });
  return (value ?? null) as Json;
}
