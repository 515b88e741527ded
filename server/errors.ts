/**
 * The one place where errors become GraphQL errors: Kora's own errors keep their code, request
 * errors (syntax, validation, variable coercion) get `BAD_USER_INPUT`, and everything else is
 * masked to `INTERNAL_SERVER_ERROR` with an id that is also logged.
 */
import { randomUUID } from "node:crypto";
import { GraphQLError } from "graphql";
import type { Logger } from "../core/gateway.ts";
import { KoraError } from "../core/errors.ts";

export function createMaskError(log: Logger) {
  return (error: unknown): GraphQLError => {
    const original = error instanceof GraphQLError ? (error.originalError ?? undefined) : error;
    const where =
      error instanceof GraphQLError
        ? { nodes: error.nodes, source: error.source, positions: error.positions, path: error.path }
        : {};
    if (original instanceof KoraError) {
      const extensions: Record<string, unknown> = { code: original.code };
      if (original.path) extensions.path = original.path;
      return new GraphQLError(original.message, { ...where, extensions });
    }
    if (error instanceof GraphQLError && (original === undefined || original instanceof GraphQLError)) {
      if (typeof error.extensions.code === "string") return error;
      // A request error from parsing, validation or variable coercion: the client's input.
      return new GraphQLError(error.message, { ...where, extensions: { ...error.extensions, code: "BAD_USER_INPUT" } });
    }
    const errorId = randomUUID();
    log.error({ err: original, errorId }, "unexpected error");
    return new GraphQLError(`Unexpected error; it was logged with id ${errorId}`, {
      ...where,
      extensions: { code: "INTERNAL_SERVER_ERROR", errorId },
    });
  };
}
