/**
 * Cross-site protection (docs/security.md): which browser pages may talk to Kora, and what a
 * request body must be to execute an operation.
 *
 * - A request with an `Origin` header is served when that origin is this server's own (same
 *   host) or on the configured allowlist (`cors.origins`); any other is refused with 403 before
 *   anything is parsed, over HTTP, SSE and the WebSocket upgrade alike. A request without
 *   `Origin` (native apps, servers, curl) is allowed: only browsers send it, and they always do
 *   for cross-origin requests, WebSocket upgrades included.
 * - CORS response headers are sent only to allowlisted origins, never by reflecting whatever
 *   origin asks, and `Access-Control-Allow-Credentials` only when `cors.credentials` is set.
 * - A POST executes only with a JSON body (`application/json` or
 *   `application/graphql-response+json`); every other content type is 415 before the body is
 *   read. Form, multipart and text/plain bodies are what a foreign page can send without a CORS
 *   preflight, so this alone stops cross-site writes even where credentials are ambient.
 */
import type { IncomingMessage } from "node:http";
import { GraphQLError } from "graphql";
import type { Plugin } from "graphql-yoga";

export interface CorsOptions {
  /**
   * Origins whose browser pages may call Kora from another origin, exactly as browsers send them
   * (`https://app.example.com`, `http://localhost:5173`: scheme, host and port if not the
   * default). Default none: only pages served by Kora's own host (GraphiQL) may call it.
   */
  origins: string[];
  /** Let those pages send cookies and HTTP authentication (`Access-Control-Allow-Credentials`). Default false. */
  credentials?: boolean;
  /** How long browsers may cache a preflight answer, in seconds. Default 600. */
  maxAgeSec?: number;
}

/** The CORS settings yoga applies to one request (its `cors` option as a function), or false. */
type YogaCors =
  | { origin: string[]; credentials: boolean; methods: string[]; maxAge: number }
  | false;

export interface OriginPolicy {
  /** Undefined when a request with this `Origin` (and `Host`) may be served, else why not. */
  refusal(origin: string | null | undefined, host: string | null | undefined): string | undefined;
  /** yoga's `cors` option: headers only for allowlisted origins. */
  cors(request: Request): YogaCors;
}

function normalizeOrigin(origin: string): string | undefined {
  try {
    const url = new URL(origin);
    if (url.protocol !== "http:" && url.protocol !== "https:") return undefined;
    return url.origin;
  } catch {
    return undefined;
  }
}

/** Throws naming the entry when an allowlisted origin is not one a browser could send. */
export function createOriginPolicy(options: CorsOptions | undefined): OriginPolicy {
  const allowed = new Set<string>();
  for (const entry of options?.origins ?? []) {
    const normalized = normalizeOrigin(entry);
    if (normalized === undefined || normalized !== entry.replace(/\/$/, "")) {
      throw new Error(
        `cors.origins entry ${JSON.stringify(entry)} is not an origin; write scheme://host[:port] with no path, e.g. "https://app.example.com" ("*" is not accepted: list the origins)`,
      );
    }
    allowed.add(normalized);
  }
  const credentials = options?.credentials ?? false;
  const maxAge = options?.maxAgeSec ?? 600;
  return {
    refusal(origin, host) {
      if (origin === undefined || origin === null) return undefined;
      if (allowed.has(origin)) return undefined;
      const normalized = normalizeOrigin(origin);
      if (normalized !== undefined && host && new URL(normalized).host === host.toLowerCase())
        return undefined;
      return `origin ${JSON.stringify(origin.slice(0, 200))} may not call this server; add it to cors.origins in the config (docs/security.md)`;
    },
    cors(request) {
      const origin = request.headers.get("origin");
      if (origin === null || !allowed.has(origin)) return false;
      return { origin: [origin], credentials, methods: ["GET", "POST"], maxAge };
    },
  };
}

function refusedResponse(
  fetchAPI: { Response: typeof Response },
  status: number,
  message: string,
  code: string,
): Response {
  return new fetchAPI.Response(JSON.stringify({ errors: [{ message, extensions: { code } }] }), {
    status,
    headers: { "content-type": "application/json; charset=utf-8" },
  });
}

/** Refuses requests from origins the policy does not allow, before anything else runs. */
export function useOriginCheck(policy: OriginPolicy): Plugin {
  return {
    onRequest({ request, fetchAPI, endResponse }) {
      const refusal = policy.refusal(request.headers.get("origin"), request.headers.get("host"));
      if (refusal !== undefined) endResponse(refusedResponse(fetchAPI, 403, refusal, "FORBIDDEN"));
    },
  };
}

/** The media types a POST body may have to execute an operation. */
const JSON_BODIES = new Set(["application/json", "application/graphql-response+json"]);

function mediaType(contentType: string | null): string {
  return (contentType ?? "").split(";")[0]!.trim().toLowerCase();
}

/**
 * POSTs to the GraphQL endpoint need a JSON body: 415 otherwise, before the body is read. yoga's
 * own parsers would also take form-urlencoded, multipart and `application/graphql` bodies, which
 * browsers send cross-site without a preflight.
 */
export function useJsonBodiesOnly(endpoint: string): Plugin {
  return {
    onRequest({ request, url, fetchAPI, endResponse }) {
      if (request.method !== "POST" || url.pathname !== endpoint) return;
      const type = mediaType(request.headers.get("content-type"));
      if (JSON_BODIES.has(type)) return;
      endResponse(
        refusedResponse(
          fetchAPI,
          415,
          `content-type ${JSON.stringify(type || "(none)")} is not accepted; POST the operation as JSON with content-type: application/json`,
          "BAD_USER_INPUT",
        ),
      );
    },
    // yoga parses application/json itself; the GraphQL over HTTP response type is JSON too.
    onRequestParse({ request, setRequestParser }) {
      if (mediaType(request.headers.get("content-type")) !== "application/graphql-response+json")
        return;
      setRequestParser(async (req) => {
        let body: unknown;
        try {
          body = await req.json();
        } catch (error) {
          if (error instanceof GraphQLError) throw error; // the body limit
          throw new GraphQLError("POST body sent invalid JSON.", {
            extensions: { http: { status: 400 }, code: "BAD_USER_INPUT" },
          });
        }
        if (typeof body !== "object" || body === null) {
          throw new GraphQLError(
            `POST body is expected to be an object, not ${body === null ? "null" : typeof body}`,
            {
              extensions: { http: { status: 400 }, code: "BAD_USER_INPUT" },
            },
          );
        }
        return body as never;
      });
    },
  };
}

/** The same origin check for a WebSocket upgrade (ws' `verifyClient`), which yoga never sees. */
export function upgradeRefusal(policy: OriginPolicy, req: IncomingMessage): string | undefined {
  return policy.refusal(req.headers.origin, req.headers.host);
}
