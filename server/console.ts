/**
 * The data console at /console (docs/console.md), as one yoga plugin: the page and its bundle
 * (built by Vite into dist/console at `npm run build`, served from Kora itself, so it works
 * offline), and a small JSON API behind an admin check for what GraphQL does not offer: the
 * rules simulator (server/simulate.ts) and the effects outbox. Tree reads, watches and edits go
 * through /graphql like any client's, so the rules apply to the console's user.
 */
import { moduleFile } from "../core/module-file.ts";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { Plugin } from "graphql-yoga";
import type { Gateway, Logger } from "../core/gateway.ts";
import { KoraError } from "../core/errors.ts";
import type { OutboxState } from "../core/store.ts";
import { type SimulationRequest, simulate } from "./simulate.ts";

export interface ConsoleOptions {
  /**
   * Serve the console. Default: on, unless NODE_ENV is "production", where it is off until set
   * to true (config `console.enabled`, or KORA_CONSOLE=on).
   */
  enabled?: boolean;
  /**
   * The admin credential: sent as `Authorization: Bearer <token>` to the console's admin API
   * (rules simulator, effects outbox). Without one, that API is open in development and closed
   * in production. Keep it secret; it is not a JWT and grants nothing over GraphQL.
   */
  adminToken?: string;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".map": "application/json",
};

/** dist/console beside dist/server when compiled; from the sources, the built copy in dist/. */
function assetsDir(): string {
  const self = moduleFile(import.meta.url);
  const here = fileURLToPath(new URL(".", self));
  return self.endsWith(".ts") ? join(here, "..", "dist", "console") : join(here, "..", "console");
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" } });
}

function errorResponse(status: number, code: string, message: string): Response {
  return json(status, { error: { code, message } });
}

export function consoleEnabled(options: ConsoleOptions | undefined): boolean {
  return options?.enabled ?? process.env.NODE_ENV !== "production";
}

export function useConsole(options: { gateway: Gateway; console?: ConsoleOptions | undefined; log: Logger }): Plugin {
  const { gateway, log } = options;
  const enabled = consoleEnabled(options.console);
  const adminToken = options.console?.adminToken;
  const production = process.env.NODE_ENV === "production";
  const dir = assetsDir();

  /** Null when the request may use the admin API, else the refusal. */
  const refuseAdmin = (request: Request): Response | null => {
    if (adminToken === undefined) {
      if (!production) return null;
      return errorResponse(403, "FORBIDDEN", "the console's admin API needs an admin credential in production: set console.adminToken in the config (or KORA_CONSOLE_TOKEN)");
    }
    const header = request.headers.get("authorization") ?? "";
    if (header === `Bearer ${adminToken}`) return null;
    return errorResponse(header ? 403 : 401, header ? "FORBIDDEN" : "UNAUTHENTICATED", "this needs the admin credential: sign in with it in the console (Authorization: Bearer <admin token>)");
  };

  async function api(request: Request, url: URL): Promise<Response> {
    const refused = refuseAdmin(request);
    const route = url.pathname.slice("/console/api/".length);
    if (route === "info" && request.method === "GET") {
      return json(200, {
        store: gateway.store.kind,
        description: gateway.store.description,
        version: String(gateway.hub.cursor),
        admin: refused === null,
        effects: gateway.store.outbox !== undefined,
      });
    }
    if (refused) return refused;
    if (route === "simulate" && request.method === "POST") {
      let body: Record<string, unknown>;
      try {
        body = (await request.json()) as Record<string, unknown>;
      } catch {
        return errorResponse(400, "BAD_USER_INPUT", "the body must be JSON: { as, read | write + value | delete }");
      }
      const auth = body.as === null || body.as === undefined ? null : body.as;
      if (auth !== null && (typeof auth !== "object" || Array.isArray(auth))) {
        return errorResponse(400, "BAD_USER_INPUT", '"as" must be an object of token claims, or null for an anonymous caller');
      }
      const base = { auth: auth as Record<string, unknown> | null };
      let req: SimulationRequest;
      if (body.read !== undefined) req = { ...base, read: body.read as string[], ...(typeof body.limit === "number" ? { limit: body.limit } : {}) };
      else if (body.write !== undefined) req = { ...base, write: body.write as string[], value: body.value };
      else if (body.delete !== undefined) req = { ...base, delete: body.delete as string[] };
      else if (body.mutate !== null && typeof body.mutate === "object") req = { ...base, mutate: body.mutate as { merge?: unknown; delete?: unknown } };
      else return errorResponse(400, "BAD_USER_INPUT", "give one of read, write (with value), delete (each a path as a list of keys) or mutate ({ merge, delete })");
      return json(200, await simulate(gateway, req));
    }
    const outbox = gateway.store.outbox;
    if (route === "effects" && request.method === "GET") {
      if (!outbox) return json(200, { tasks: [] });
      const state = url.searchParams.get("state");
      if (state !== null && !["pending", "running", "done", "failed"].includes(state)) {
        return errorResponse(400, "BAD_USER_INPUT", "state is one of pending, running, done, failed");
      }
      const tasks = await outbox.list({ ...(state ? { state: state as OutboxState } : {}), limit: 200 });
      return json(200, { tasks });
    }
    if (route === "effects/retry" && request.method === "POST") {
      const body = (await request.json().catch(() => ({}))) as { id?: unknown };
      if (typeof body.id !== "number" || !outbox?.retry) return errorResponse(400, "BAD_USER_INPUT", "the body must be { id: <task id> }");
      if (!(await outbox.retry(body.id))) return errorResponse(404, "NOT_FOUND", `task ${body.id} is not a failed task`);
      return json(200, { ok: true });
    }
    return errorResponse(404, "NOT_FOUND", `no console API at ${url.pathname}`);
  }

  async function asset(url: URL): Promise<Response> {
    const rel = url.pathname === "/console" || url.pathname === "/console/" ? "index.html" : url.pathname.slice("/console/".length);
    const file = normalize(join(dir, decodeURIComponent(rel)));
    if (!file.startsWith(dir + sep)) return new Response("not found", { status: 404 });
    if (!existsSync(file)) {
      if (!existsSync(join(dir, "index.html"))) {
        return new Response("The console is not built: run `npm run build` (it bundles the console into dist/console).", { status: 503 });
      }
      return new Response("not found", { status: 404 });
    }
    const body = await readFile(file);
    return new Response(body, {
      headers: {
        "content-type": TYPES[extname(file)] ?? "application/octet-stream",
        // Hashed bundle names change with their content; the page itself is always fresh.
        "cache-control": rel.startsWith("assets/") ? "public, max-age=31536000, immutable" : "no-store",
      },
    });
  }

  return {
    async onRequest({ request, url, endResponse }) {
      if (url.pathname !== "/console" && !url.pathname.startsWith("/console/")) return;
      if (!enabled) {
        endResponse(new Response("The console is off (NODE_ENV=production): turn it on with console.enabled in the config or KORA_CONSOLE=on (docs/console.md).", { status: 404 }));
        return;
      }
      try {
        endResponse(url.pathname.startsWith("/console/api/") ? await api(request, url) : await asset(url));
      } catch (error) {
        if (error instanceof KoraError) endResponse(errorResponse(400, error.code, error.message));
        else {
          log.error({ err: error }, "console request failed");
          endResponse(errorResponse(500, "INTERNAL_SERVER_ERROR", "the console request failed; see the server log"));
        }
      }
    },
  };
}
