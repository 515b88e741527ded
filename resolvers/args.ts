/** Checks GraphQL arguments that the schema's types cannot express. */
import { badInput } from "../core/errors.ts";
import { validateKey, validatePath } from "../core/tree.ts";
import type { Limits, Path, ReadOptions, Version } from "../core/types.ts";

export function pathArg(path: unknown, limits: Limits): Path {
  return validatePath(path, limits);
}

export function readOptionsArg(
  args: { min?: string | null; max?: string | null; limit?: number | null; reverse?: boolean | null },
  path: Path,
  limits: Limits,
): ReadOptions | undefined {
  const options: ReadOptions = {};
  // Bounds compare against keys, so they obey the key rules (an empty bound is allowed).
  if (args.min != null) options.min = args.min === "" ? "" : validateKey(args.min, path, limits);
  if (args.max != null) options.max = args.max === "" ? "" : validateKey(args.max, path, limits);
  if (args.limit != null) {
    if (!Number.isInteger(args.limit) || args.limit < 1) {
      throw badInput(`limit ${args.limit} at path ${JSON.stringify(path)} must be an integer >= 1`, path);
    }
    options.limit = args.limit;
  }
  if (args.reverse != null) options.reverse = args.reverse;
  return Object.keys(options).length === 0 ? undefined : options;
}

const VERSION = /^(0|[1-9][0-9]{0,15})$/;

export function versionArg(since: string | null | undefined, path: Path): Version | undefined {
  if (since == null) return undefined;
  if (!VERSION.test(since) || !Number.isSafeInteger(Number(since))) {
    throw badInput(
      `since ${JSON.stringify(since.slice(0, 40))} is not a version; pass the decimal string of an earlier event's version`,
      path,
    );
  }
  return Number(since);
}
