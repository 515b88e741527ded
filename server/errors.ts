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

export interface MaskOptions {
  /** The HTTP body limit, named in the message of yoga's 413 (server/http.ts `maxMessageBytes`). */
  maxBodyBytes?: number;
}

export function createMaskError(log: Logger, options: MaskOptions = {}) {
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
      const http = error.extensions.http as { status?: number; headers?: Record<string, string> } | undefined;
      if (http?.status === 413) {
        // yoga's body limit (maxRequestBodySize), hit by Content-Length or while streaming a
        // chunked body: the connection closes so the rest of the body is never read.
        const limit = options.maxBodyBytes === undefined ? "" : `; at most ${options.maxBodyBytes} bytes are accepted`;
        return new GraphQLError(`request body is too large${limit} (pass large values in several mutations)`, {
          extensions: { code: "PAYLOAD_TOO_LARGE", http: { status: 413, headers: { ...http.headers, connection: "close" } } },
        });
      }
      // A request error from parsing, validation or variable coercion: the client's input. Codes
      // outside the contract's closed set (yoga's GRAPHQL_VALIDATION_FAILED…) become BAD_USER_INPUT.
      // yoga's `http` extension is kept: it carries the status the GraphQL over HTTP spec asks
      // for (400, 405 with Allow, 413) and yoga strips it from the body it sends.
      return new GraphQLError(error.message, { ...where, extensions: { ...error.extensions, code: contractCodeOf(error) } });
    }
    const errorId = randomUUID();
    log.error({ err: original, errorId }, "unexpected error");
    return new GraphQLError(`Unexpected error; it was logged with id ${errorId}`, {
      ...where,
      extensions: { code: "INTERNAL_SERVER_ERROR", errorId },
    });
  };
}

/** The contract code for a request error yoga or graphql-js raised with a code of its own. */
function contractCodeOf(error: GraphQLError): string {
  const http = error.extensions.http as { status?: number } | undefined;
  if (http?.status === 413) return "PAYLOAD_TOO_LARGE"; // yoga's REQUEST_ENTITY_TOO_LARGE
  return "BAD_USER_INPUT";
}

function contractCode(error: GraphQLError): void {
  const ext = error.extensions as Record<string, unknown>;
  if (typeof ext.code !== "string" || !(ERROR_CODES as readonly string[]).includes(ext.code)) {
    // Request errors (yoga's GRAPHQL_VALIDATION_FAILED, GRAPHQL_PARSE_FAILED, …) are the client's input.
    (error as { extensions: Record<string, unknown> }).extensions = { ...ext, code: contractCodeOf(error) };
  }
}

/**
 * An error as sent over WebSocket: yoga's `http` extension (status and headers for HTTP
 * responses, which yoga strips from HTTP bodies itself) has no meaning there.
 */
export function forSocket(error: GraphQLError): GraphQLError {
  if (!("http" in error.extensions)) return error;
  const { http: _http, ...extensions } = error.extensions as Record<string, unknown>;
  return new GraphQLError(error.message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    path: error.path,
    extensions,
  });
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
