/**
 * Limits on GraphQL documents, applied before any resolver runs: size in bytes, nesting of
 * brackets (selection sets and literal values: graphql-js parses recursively, so unbounded
 * nesting would exhaust the stack), and, from graphql-armor, tokens, selection depth (through
 * fragment spreads), aliases, directives and an estimated cost. What an operation may READ is
 * bounded separately (server/readbound.ts): a few aliases of a large subtree pass every
 * document limit. docs/security.md has the reasoning.
 */
import { costLimitRule } from "@escape.tech/graphql-armor-cost-limit";
import { maxAliasesRule } from "@escape.tech/graphql-armor-max-aliases";
import { maxDepthRule } from "@escape.tech/graphql-armor-max-depth";
import { maxDirectivesRule } from "@escape.tech/graphql-armor-max-directives";
import { MaxTokensParserWLexer } from "@escape.tech/graphql-armor-max-tokens";
import {
  type DocumentNode,
  GraphQLError,
  type GraphQLSchema,
  type ValidationContext,
  type ValidationRule,
  validate,
} from "graphql";
import type { Plugin } from "graphql-yoga";

export interface DocumentLimits {
  /** Largest document, in bytes of UTF-8. Default 100 KiB. */
  maxBytes: number;
  /** Deepest nesting of `{`/`[` in the document text. Default 64. */
  maxNesting: number;
  /** Most tokens the parser reads. Default 20,000. */
  maxTokens: number;
  /**
   * Deepest selection, counted through fragment spreads and introspection alike. Default 16
   * (Kora's own operations need 2, GraphiQL's introspection query 13).
   */
  maxDepth: number;
  /** Most aliases in an operation, fragments included. Default 100. */
  maxAliases: number;
  /** Most directives in an operation. Default 50. */
  maxDirectives: number;
  /** Highest estimated cost (graphql-armor's: 1 per scalar field, 2 per object, x1.5 per level). Default 5000. */
  maxCost: number;
}

export const DEFAULT_DOCUMENT_LIMITS: DocumentLimits = {
  maxBytes: 100 * 1024,
  maxNesting: 64,
  maxTokens: 20_000,
  maxDepth: 16,
  maxAliases: 100,
  maxDirectives: 50,
  maxCost: 5000,
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

/** graphql-armor reports "Syntax Error: …" for every limit; these are limits, so say so. */
function limitError(limit: string) {
  return (context: ValidationContext | null, error: GraphQLError) => {
    const message = `${error.message.replace(/^Syntax Error: /, "")} (documentLimits.${limit})`;
    const refusal = new GraphQLError(message, { extensions: { code: "BAD_USER_INPUT" } });
    if (context === null) throw refusal; // the token count, while parsing
    context.reportError(refusal);
  };
}

function armorRules(limits: DocumentLimits): ValidationRule[] {
  const common = { propagateOnRejection: false, exposeLimits: true } as const;
  return [
    // Introspection is counted too: the depth attack through fragments uses `__schema { … ofType }`.
    maxDepthRule({
      ...common,
      n: limits.maxDepth,
      flattenFragments: true,
      ignoreIntrospection: false,
      onReject: [limitError("maxDepth")],
    }),
    maxAliasesRule({ ...common, n: limits.maxAliases, onReject: [limitError("maxAliases")] }),
    maxDirectivesRule({
      ...common,
      n: limits.maxDirectives,
      onReject: [limitError("maxDirectives")],
    }),
    costLimitRule({ ...common, maxCost: limits.maxCost, onReject: [limitError("maxCost")] }),
  ] as unknown as ValidationRule[];
}

export function useDocumentLimits(limits: DocumentLimits): Plugin {
  const rules = armorRules(limits);
  const verdicts = new WeakMap<GraphQLSchema, WeakMap<DocumentNode, readonly GraphQLError[]>>();
  return {
    onParse({ setParseFn }) {
      setParseFn((source, options) => {
        const text = typeof source === "string" ? source : source.body;
        const bytes = Buffer.byteLength(text);
        if (bytes > limits.maxBytes) {
          throw new GraphQLError(
            `document is ${bytes} bytes; at most ${limits.maxBytes} are accepted (pass large values as variables)`,
            {
              extensions: { code: "PAYLOAD_TOO_LARGE" },
            },
          );
        }
        const n = nesting(text);
        if (n > limits.maxNesting) {
          throw new GraphQLError(
            `document nests brackets ${n} levels deep; at most ${limits.maxNesting} are accepted`,
            {
              extensions: { code: "BAD_USER_INPUT" },
            },
          );
        }
        const parser = new MaxTokensParserWLexer(source, {
          ...options,
          n: limits.maxTokens,
          onReject: [limitError("maxTokens") as never],
        });
        return parser.parseDocument() as DocumentNode;
      });
    },
    // The limits run alone, before graphql-js' own rules: those are what an oversized document
    // makes expensive (OverlappingFieldsCanBeMerged compares every pair of 1,900 aliases).
    // The verdict is kept per document: yoga's parse cache hands out one DocumentNode per
    // distinct text, and its validation cache skips graphql-js' rules for a known document but
    // not this hook, which ran graphql-armor's four visitors on every request (~7% of an HTTP
    // merge's CPU, docs/bench.md). The rules depend only on the limits and the schema.
    onValidate({ params, setResult }) {
      let bySchema = verdicts.get(params.schema);
      if (!bySchema) {
        bySchema = new WeakMap();
        verdicts.set(params.schema, bySchema);
      }
      let errors = bySchema.get(params.documentAST);
      if (!errors) {
        errors = validate(params.schema, params.documentAST, rules);
        bySchema.set(params.documentAST, errors);
      }
      if (errors.length > 0) setResult([...errors]);
    },
  };
}
