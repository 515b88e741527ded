/**
 * Request ids: every HTTP request (and WebSocket upgrade) gets one, from a sane incoming
 * `x-request-id` or a fresh UUID, returned in the `x-request-id` response header. While the
 * request is handled it is the current request (AsyncLocalStorage), and `requestLogger` adds its
 * id to every log line written meanwhile, wherever the line comes from (resolvers, the error mask,
 * interceptors, the gateway): one pino child logger per request.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "../core/gateway.ts";

export const REQUEST_ID_HEADER = "x-request-id";

/** Ids a proxy or client may set: short, printable, no spaces (they go into logs and headers). */
const SANE_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

interface RequestScope {
  requestId: string;
  /** The request's child logger, made on its first line. */
  log?: Logger;
}

const current = new AsyncLocalStorage<RequestScope>();

/** The id of the request being handled, if any. */
export function currentRequestId(): string | undefined {
  return current.getStore()?.requestId;
}

/** The incoming id when it is sane, else a fresh one. */
export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers[REQUEST_ID_HEADER];
  return typeof given === "string" && SANE_ID.test(given) ? given : randomUUID();
}

/** Runs `handler` as the current request, its id in the response header. */
export function withRequestId(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const requestId = requestIdOf(req);
    res.setHeader(REQUEST_ID_HEADER, requestId);
    current.run({ requestId }, () => handler(req, res));
  };
}

/** Runs `fn` as request `requestId` (a WebSocket operation, with its connection's id). */
export function runAsRequest<T>(requestId: string, fn: () => T): T {
  return current.run({ requestId }, fn);
}

/**
 * `fn`, to run later as the request current now (for listeners that run in another async
 * context, such as a request's `end` event, which runs in its socket's). Cheaper than
 * `AsyncResource.bind`, which on Node 20 builds a deprecation wrapper on every call (3% of an
 * HTTP merge's CPU in a profile).
 */
export function inThisRequest<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void {
  const scope = current.getStore();
  return scope ? (...args: A) => current.run(scope, () => fn(...args)) : fn;
}

type Child = Logger & { child?: (bindings: Record<string, unknown>) => Logger };

/**
 * A logger that writes through `base`, adding `reqId` to every line written while a request is
 * current (through a pino child logger when `base` has `child`).
 */
export function requestLogger(base: Child): Logger {
  const target = (): Logger => {
    const scope = current.getStore();
    if (!scope) return base;
    scope.log ??= base.child
      ? base.child({ reqId: scope.requestId })
      : withBinding(base, scope.requestId);
    return scope.log;
  };
  return {
    info: (obj, msg) => target().info(obj, msg),
    warn: (obj, msg) => target().warn(obj, msg),
    error: (obj, msg) => target().error(obj, msg),
  };
}

function withBinding(base: Logger, reqId: string): Logger {
  const bind = (obj: object | string): object =>
    typeof obj === "string" ? { reqId, msg: obj } : { ...obj, reqId };
  return {
    info: (obj, msg) => base.info(bind(obj), msg),
    warn: (obj, msg) => base.warn(bind(obj), msg),
    error: (obj, msg) => base.error(bind(obj), msg),
  };
}
