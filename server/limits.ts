/**
 * Limits on GraphQL documents, applied before any resolver runs: size in bytes, nesting of
 * brackets (selection sets and literal values: graphql-js parses recursively, so unbounded
 * nesting would exhaust the stack), token count, and selection depth.
 */
import { GraphQLError, type ValidationRule } from "graphql";
import type { Plugin } from "graphql-yoga";

export interface DocumentLimits {
  /** Largest document, in bytes of UTF-8. Default 100 KiB. */
  maxBytes: number;
  /** Deepest nesting of `{`/`[` in the document text. Default 64. */
  maxNesting: number;
  /** Most tokens the parser reads. Default 20,000. */
  maxTokens: number;
  /** Deepest selection set. Default 16 (Kora's own operations need 2). */
  maxDepth: number;
}

export const DEFAULT_DOCUMENT_LIMITS: DocumentLimits = {
  maxBytes: 100 * 1024,
  maxNesting: 64,
  maxTokens: 20_000,
  maxDepth: 16,
};

function nesting(source: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "#") {
      while (i < source.length && source[i] !== "\n") i++;
    } else if (c === "{" || c === "[") {
      depth++;
      if (depth > max) max = depth;
    } else if (c === "}" || c === "]") depth--;
  }
  return max;
}

function depthRule(maxDepth: number): ValidationRule {
  return (context) => {
    let depth = 0;
    return {
      SelectionSet: {
        enter(node) {
          depth++;
          if (depth > maxDepth) {
            context.reportError(
              new GraphQLError(`document selections nest ${depth} levels deep; at most ${maxDepth} are accepted`, {
                nodes: [node],
                extensions: { code: "BAD_USER_INPUT" },
              }),
            );
          }
        },
        leave() {
          depth--;
        },
      },
    };
  };
}

export function useDocumentLimits(limits: DocumentLimits): Plugin {
  return {
    onParse({ setParseFn, parseFn }) {
      setParseFn((source, options) => {
        const text = typeof source === "string" ? source : source.body;
        const bytes = Buffer.byteLength(text);
        if (bytes > limits.maxBytes) {
          throw new GraphQLError(`document is ${bytes} bytes; at most ${limits.maxBytes} are accepted (pass large values as variables)`, {
            extensions: { code: "PAYLOAD_TOO_LARGE" },
          });
        }
        const n = nesting(text);
        if (n > limits.maxNesting) {
          throw new GraphQLError(`document nests brackets ${n} levels deep; at most ${limits.maxNesting} are accepted`, {
            extensions: { code: "BAD_USER_INPUT" },
          });
        }
        return parseFn(source, { ...options, maxTokens: limits.maxTokens });
      });
    },
    onValidate({ addValidationRule }) {
      addValidationRule(depthRule(limits.maxDepth));
    },
  };
}
