/**
 * The closed set of error codes from the contract (section 5). Every error Kora raises on purpose
 * is a `KoraError` carrying one of them; anything else is unexpected and gets masked to
 * `INTERNAL_SERVER_ERROR` at the edge with a logged id.
 */
export const ERROR_CODES = [
  "BAD_USER_INPUT",
  "UNAUTHENTICATED",
  "FORBIDDEN",
  "NOT_FOUND",
  "CONFLICT",
  "PAYLOAD_TOO_LARGE",
  "RATE_LIMITED",
  "UNAVAILABLE",
  "INTERNAL_SERVER_ERROR",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class KoraError extends Error {
  readonly code: ErrorCode;
  /**
   * The offending tree path, when there is one; exposed in GraphQL `extensions.path`. Not named
   * `path`: graphql-js takes any error with an array `path` for an already located GraphQL error
   * and would drop its locations.
   */
  readonly treePath: readonly string[] | undefined;

  constructor(code: ErrorCode, message: string, options?: { path?: readonly string[]; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "KoraError";
    this.code = code;
    this.treePath = options?.path;
  }
}

export function isKoraError(error: unknown): error is KoraError {
  return error instanceof KoraError;
}

export function badInput(message: string, path?: readonly string[]): KoraError {
  return new KoraError("BAD_USER_INPUT", message, path === undefined ? undefined : { path });
}

/** Formats a path for messages: `["user:info","dax"]`, exact and unambiguous for any key. */
export function showPath(path: readonly string[]): string {
  return JSON.stringify(path);
}

/**
 * The store could not be reached or did not answer in time (contract section 5): nothing was
 * written, or, when `outcomeUnknown`, a commit may have landed and a retry with the same write id
 * is safe. Always retryable; HTTP answers it with 503 and Retry-After.
 */
export function unavailable(message: string, options?: { cause?: unknown; path?: readonly string[] }): KoraError {
  return new KoraError("UNAVAILABLE", message, options);
}
