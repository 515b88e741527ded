/**
 * The plain-query fast path of GraphQL over HTTP (docs/bench.md, "Reads").
 *
 * Most HTTP traffic is one shape: a POST of `{"query": …, "variables": …}` as JSON, a read, and a
 * JSON result without errors. For that shape, yoga's HTTP layer (the Fetch API request and
 * response objects, body streams, abort signals, request-parser and result-processor hooks) cost
 * about as much CPU as reading a 1,000-leaf subtree. Here such a request runs through the SAME
 * envelop pipeline yoga builds (`yoga.getEnveloped`: parse and validation caches, document limits,
 * the context factory with authentication, masking, every envelop plugin), and only the HTTP
 * wrapping is done directly on Node's request and response.
 *
 * Anything else is handed to yoga unchanged, with the body already read: other methods, paths,
 * content types or accept headers, CORS requests (an Origin header), large or chunked bodies,
 * extra parameters, documents that do not parse or validate, mutations and subscriptions, and
 * queries whose result holds errors (a query has no side effects, so yoga simply runs it again and
 * answers with its own status codes and error format). Servers with extra yoga plugins never take
 * the fast path: their HTTP hooks must run.
 */
import { AsyncResource } from "node:async_hooks";
import type { IncomingMessage, ServerResponse } from "node:http";
import { type DocumentNode, type ExecutionResult, getOperationAST } from "graphql";
import type { YogaServerInstance } from "graphql-yoga";
import type { KoraContext } from "../resolvers/context.ts";
import { UNAVAILABLE_RETRY_AFTER_S } from "./errors.ts";

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
  return Number.isInteger(length) && length > 0 && length <= Math.min(FAST_PATH_MAX_BYTES, maxBytes);
}

interface Params {
  query: string;
  variables?: Record<string, unknown> | null;
  operationName?: string | null;
}

function plainParams(body: unknown): body is Params {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return false;
  for (const key in body) if (key !== "query" && key !== "variables" && key !== "operationName") return false;
  const { query, variables, operationName } = body as Record<string, unknown>;
  if (typeof query !== "string") return false;
  if (variables != null && (typeof variables !== "object" || Array.isArray(variables))) return false;
  return operationName == null || typeof operationName === "string";
}

/**
 * Serves `req` (eligible, see above) on the fast path when it can, else passes it to yoga with
 * its body. Never throws: failures reach yoga, which reports them as usual.
 */
export function serveFast(yoga: Yoga, req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  req.on("error", () => {}); // the socket is gone; nothing to answer
  // Bound: listeners run in the socket's async context, and the request's (its id, server/requests.ts) must carry on.
  req.on("end", AsyncResource.bind(() => {
    const text = Buffer.concat(chunks).toString("utf8");
    const fallback = () => {
      // whatwg-node uses an already-read body as is (as it does behind Express' body parser).
      (req as IncomingMessage & { body?: string }).body = text;
      void yoga(req, res);
    };
    answer(yoga, req, res, text).then(
      (done) => {
        if (!done) fallback();
      },
      () => fallback(),
    );
  }));
}

async function answer(yoga: Yoga, req: IncomingMessage, res: ServerResponse, text: string): Promise<boolean> {
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
  if (getOperationAST(document, params.operationName ?? undefined)?.operation !== "query") return false;
  const result = (await enveloped.execute({
    schema: enveloped.schema,
    document,
    contextValue: await enveloped.contextFactory(),
    variableValues: params.variables ?? undefined,
    operationName: params.operationName ?? undefined,
  })) as ExecutionResult;
  if (result.errors?.some((e) => e.extensions?.code === "UNAVAILABLE") && !res.destroyed) {
    // The store is down or slow: running the query again through yoga would wait for it twice.
    const errors = result.errors.map((e) => {
      const { http: _http, ...extensions } = e.extensions as Record<string, unknown>;
      return { ...e.toJSON(), extensions };
    });
    const body = JSON.stringify({ errors, data: result.data ?? null });
    res.writeHead(503, {
      "content-type": "application/json; charset=utf-8",
      "content-length": Buffer.byteLength(body),
      "retry-after": String(UNAVAILABLE_RETRY_AFTER_S),
    });
    res.end(body);
    return true;
  }
  if (result.errors?.length || result.extensions !== undefined || !result.data) return false;
  if (res.destroyed) return true;
  const body = JSON.stringify({ data: result.data });
  res.writeHead(200, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(body) });
  res.end(body);
  return true;
}
