/**
 * The plain-operation fast path of GraphQL over HTTP (docs/bench.md, "Reads" and "Writes over
 * HTTP").
 *
 * Most HTTP traffic is one shape: a POST of `{"query": …, "variables": …}` as JSON, a query or a
 * mutation, and a JSON result. For that shape, yoga's HTTP layer (the Fetch API request and
 * response objects, body streams, abort signals, request-parser and result-processor hooks) cost
 * about as much CPU as reading a 1,000-leaf subtree, and more than half of an HTTP merge. Here
 * such a request runs through the SAME envelop pipeline yoga builds (`yoga.getEnveloped`: parse
 * and validation caches, document limits, the context factory with authentication, rate limits,
 * masking, every envelop plugin), and only the HTTP wrapping is done directly on Node's request
 * and response.
 *
 * Anything else is handed to yoga unchanged, with the body already read: other methods, paths,
 * content types or accept headers, CORS requests (an Origin header), large or chunked bodies,
 * extra parameters, documents that do not parse or validate, subscriptions. A result with errors
 * (or extensions) is handed to yoga too, to be answered in yoga's own status codes and error
 * format, but it is not run again: `usePrecomputedResult` (first of Kora's plugins) gives yoga's
 * pipeline the result already computed, so a mutation commits once. Servers with extra yoga
 * plugins never take the fast path: their HTTP hooks must run.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  type DocumentNode,
  type ExecutionResult,
  type GraphQLError,
  getOperationAST,
} from "graphql";
import type { Plugin, YogaServerInstance } from "graphql-yoga";
import type { KoraContext } from "../resolvers/context.ts";
import { inThisRequest } from "./requests.ts";

/** Largest body the fast path reads (bigger ones go to yoga, which streams them). */
export const FAST_PATH_MAX_BYTES = 64 * 1024;

type Yoga = YogaServerInstance<Record<string, unknown>, KoraContext>;

const JSON_TYPE = /^application\/json\s*(;\s*charset=utf-8\s*)?$/i;
const ACCEPTS = new Set(["*/*", "application/json", "application/json; charset=utf-8"]);

/**
 * Whether the request has the one shape the fast path serves (checked before reading the body).
 * The shape is chosen so that every HTTP-level check of yoga's pipeline is a no-op for it (and
 * the envelop-level ones, document and read limits, rate limits, masking, run here as there):
 * no Origin header (the origin check and CORS: server/crosssite.ts), a JSON content type (the
 * 415 check), and a Content-Length within both this path's bound and the body limit `maxBytes`.
 */
export function fastPathEligible(req: IncomingMessage, maxBytes: number): boolean {
  if (req.method !== "POST" || req.url !== "/graphql") return false;
  const h = req.headers;
  if (h.origin !== undefined || h["transfer-encoding"] !== undefined) return false;
  if (!JSON_TYPE.test(h["content-type"] ?? "")) return false;
  if (h.accept !== undefined && !ACCEPTS.has(h.accept.toLowerCase())) return false;
  const length = Number(h["content-length"]);
  return (
    Number.isInteger(length) && length > 0 && length <= Math.min(FAST_PATH_MAX_BYTES, maxBytes)
  );
}

interface Params {
  query: string;
  variables?: Record<string, unknown> | null;
  operationName?: string | null;
}

function plainParams(body: unknown): body is Params {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return false;
  for (const key in body)
    if (key !== "query" && key !== "variables" && key !== "operationName") return false;
  const { query, variables, operationName } = body as Record<string, unknown>;
  if (typeof query !== "string") return false;
  if (variables != null && (typeof variables !== "object" || Array.isArray(variables)))
    return false;
  return operationName == null || typeof operationName === "string";
}

/**
 * Serves `req` (eligible, see above) on the fast path when it can, else passes it to yoga with
 * its body. Never throws: failures reach yoga, which reports them as usual.
 */
export function serveFast(
  yoga: Yoga,
  req: IncomingMessage,
  res: ServerResponse,
  maskError: (error: unknown) => GraphQLError,
): void {
  const chunks: Buffer[] = [];
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  req.on("error", () => {}); // the socket is gone; nothing to answer
  // Bound: listeners run in the socket's async context, and the request's (its id, server/requests.ts) must carry on.
  req.on(
    "end",
    inThisRequest(() => {
      const text = Buffer.concat(chunks).toString("utf8");
      const fallback = (result?: ExecutionResult) => {
        // whatwg-node uses an already-read body as is (as it does behind Express' body parser).
        (req as IncomingMessage & { body?: string }).body = text;
        if (result) (req as Computed)[COMPUTED] = result;
        void yoga(req, res);
      };
      answer(yoga, req, res, text, maskError).then(
        (outcome) => {
          if (outcome !== true) fallback(outcome === false ? undefined : outcome);
        },
        () => fallback(),
      );
    }),
  );
}

/** How many requests the fast path answered, and handed to yoga with their result (tests check it engages). */
export const httpFastPathStats = { answered: 0, handedOver: 0 };

/** Where a result computed here waits for yoga's pipeline (see `usePrecomputedResult`). */
const COMPUTED = Symbol("kora.fastpath.result");
type Computed = IncomingMessage & { [COMPUTED]?: ExecutionResult };

/**
 * Answers a request the fast path handed over with a result it already computed: yoga formats
 * and sends it (status codes, error format, `extensions.http` stripped) without executing the
 * operation again. Must come before every other plugin with an `onExecute` hook: it ends that
 * hook chain, so rate limits, metrics and masking, which ran in the fast path's execution, do not
 * run a second time.
 */
export function usePrecomputedResult(): Plugin {
  return {
    onExecute({ args, setResultAndStopExecution }) {
      const req = (args.contextValue as { req?: Computed }).req;
      const result = req?.[COMPUTED];
      if (!req || !result) return;
      delete req[COMPUTED];
      setResultAndStopExecution(result);
    },
  };
}

/**
 * true when answered; false when yoga should serve the request from the start (nothing was
 * executed); a result when yoga should answer with that result (the operation ran here).
 */
async function answer(
  yoga: Yoga,
  req: IncomingMessage,
  res: ServerResponse,
  text: string,
  maskError: (error: unknown) => GraphQLError,
): Promise<boolean | ExecutionResult> {
  let params: unknown;
  try {
    params = JSON.parse(text);
  } catch {
    return false;
  }
  if (!plainParams(params)) return false;
  const request = new yoga.fetchAPI.Request(`http://${req.headers.host ?? "localhost"}${req.url}`, {
    method: "POST",
    headers: req.headers as Record<string, string>,
  });
  const enveloped = yoga.getEnveloped({ request, params, req, res });
  let document: DocumentNode;
  try {
    document = enveloped.parse(params.query);
  } catch {
    return false;
  }
  if (enveloped.validate(enveloped.schema, document).length > 0) return false;
  const operation = getOperationAST(document, params.operationName ?? undefined)?.operation;
  if (operation !== "query" && operation !== "mutation") return false;
  let result: ExecutionResult;
  try {
    result = (await enveloped.execute({
      schema: enveloped.schema,
      document,
      contextValue: await enveloped.contextFactory(),
      variableValues: params.variables ?? undefined,
      operationName: params.operationName ?? undefined,
    })) as ExecutionResult;
  } catch (error) {
    // The pipeline threw (not a resolver: those become errors in the result). A mutation may
    // have committed: it must not run again, so yoga answers with the error.
    result = { errors: [maskError(error)] };
  }
  if (res.destroyed) return true;
  if (result.errors?.length || result.extensions !== undefined || !result.data) {
    httpFastPathStats.handedOver++;
    return result;
  }
  httpFastPathStats.answered++;
  const body = JSON.stringify({ data: result.data });
  res.writeHead(200, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
  return true;
}
