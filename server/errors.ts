/**
 * The one place where errors become GraphQL errors: Kora's own errors keep their code, request
 * errors (syntax, validation, variable coercion) get `BAD_USER_INPUT`, and everything else is
 * masked to `INTERNAL_SERVER_ERROR` with an id that is also logged.
 */
import { randomUUID } from "node:crypto";
import { GraphQLError } from "graphql";
import type { Plugin } from "graphql-yoga";
import type { Logger } from "../core/gateway.ts";
import { ERROR_CODES, KoraError } from "../core/errors.ts";

/** What `Retry-After` tells a client to wait after UNAVAILABLE, in seconds. */
export const UNAVAILABLE_RETRY_AFTER_S = 1;

export function createMaskError(log: Logger) {
  return (error: unknown): GraphQLError => {
    const original = error instanceof GraphQLError ? (error.originalError ?? undefined) : error;
    const where =
      error instanceof GraphQLError
        ? { nodes: error.nodes, source: error.source, positions: error.positions, path: error.path }
        : {};
    if (original instanceof KoraError) {
      const extensions: Record<string, unknown> = { code: original.code };
      if (original.treePath) extensions.path = original.treePath;
      if (original.code === "UNAVAILABLE") {
        // The store is down or slow: safe to retry. yoga takes `http` for the response's status and
        // headers (and leaves it out of the body); WebSocket and SSE clients read retryAfterMs.
        extensions.retryAfterMs = UNAVAILABLE_RETRY_AFTER_S * 1000;
        extensions.http = { status: 503, headers: { "retry-after": String(UNAVAILABLE_RETRY_AFTER_S) } };
        log.warn({ err: original.cause ?? original }, original.message);
      }
      return new GraphQLError(original.message, { ...where, extensions });
    }
    if (error instanceof GraphQLError && (original === undefined || original instanceof GraphQLError)) {
      const code = error.extensions.code;
      if (typeof code === "string" && (ERROR_CODES as readonly string[]).includes(code)) return error;
      // A request error from parsing, validation or variable coercion: the client's input. Codes
      // outside the contract's closed set (yoga's GRAPHQL_VALIDATION_FAILED…) become BAD_USER_INPUT.
      const { http: _http, ...rest } = error.extensions as Record<string, unknown>;
      return new GraphQLError(error.message, { ...where, extensions: { ...rest, code: "BAD_USER_INPUT" } });
    }
    const errorId = randomUUID();
    log.error({ err: original, errorId }, "unexpected error");
    return new GraphQLError(`Unexpected error; it was logged with id ${errorId}`, {
      ...where,
      extensions: { code: "INTERNAL_SERVER_ERROR", errorId },
    });
  };
}

function contractCode(error: GraphQLError): void {
  const ext = error.extensions as Record<string, unknown>;
  if (typeof ext.code !== "string" || !(ERROR_CODES as readonly string[]).includes(ext.code)) {
    // Request errors (yoga's GRAPHQL_VALIDATION_FAILED, GRAPHQL_PARSE_FAILED, …) are the client's input.
    (error as { extensions: Record<string, unknown> }).extensions = { ...ext, code: "BAD_USER_INPUT" };
  }
}

/** Keeps every error code inside the contract's closed set, whatever produced the error. */
export function useContractErrorCodes(): Plugin {
  return {
    onValidate() {
      return ({ valid, result }) => {
        if (!valid) for (const error of result) contractCode(error);
      };
    },
    onResultProcess({ result }) {
      const results = Array.isArray(result) ? result : [result];
      for (const r of results) {
        if (r && typeof r === "object" && "errors" in r && Array.isArray(r.errors)) {
          for (const error of r.errors) if (error instanceof GraphQLError) contractCode(error);
        }
      }
    },
  };
}
