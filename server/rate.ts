/**
 * Rate and resource limits (docs/security.md, "Rate limits"): token buckets per authenticated
 * subject and per client address, one of each for writes, reads and new subscriptions; a cap on
 * WebSocket connections per address and on subscriptions per connection.
 *
 * Buckets are hand-written (about 40 lines) because the kept libraries count fixed windows, which
 * let a client spend two windows' budget around a boundary; a token bucket refills continuously,
 * so `burst` is the most ever spent at once and `perSecond` the sustained rate. State is per
 * process: several gateways behind a balancer each apply the budget.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { GraphQLError, Kind, type OperationDefinitionNode, getOperationAST } from "graphql";
import type { Plugin } from "graphql-yoga";
import proxyAddr from "proxy-addr";
import type { KoraContext } from "../resolvers/context.ts";

export interface Budget {
  /** Tokens added back per second: the sustained rate. */
  perSecond: number;
  /** The bucket's size: the most spent in a burst. */
  burst: number;
}

export interface RateBudgets {
  /** Mutation fields (`merge`, `delete`, `mutate`) executed. */
  writes: Budget;
  /** Query fields (each `path`, each alias) executed. */
  reads: Budget;
  /** Subscriptions started. */
  subscriptions: Budget;
}

export interface RateLimits {
  /** Per authenticated subject (the caller's `sub` claim). */
  subject: RateBudgets;
  /** Per client address (see `trustedProxies`). */
  address: RateBudgets;
  /** Most WebSocket connections open at once from one client address. */
  maxConnectionsPerAddress: number;
  /** Most operations (subscriptions, mostly) active at once on one WebSocket connection. */
  maxSubscriptionsPerConnection: number;
}

export const DEFAULT_RATE_LIMITS: RateLimits = {
  subject: {
    writes: { perSecond: 100, burst: 500 },
    reads: { perSecond: 500, burst: 2000 },
    subscriptions: { perSecond: 20, burst: 200 },
  },
  address: {
    writes: { perSecond: 500, burst: 2000 },
    reads: { perSecond: 2000, burst: 10_000 },
    subscriptions: { perSecond: 50, burst: 500 },
  },
  maxConnectionsPerAddress: 100,
  maxSubscriptionsPerConnection: 200,
};

/** Partial settings (the config's `rateLimits`) over the defaults. */
export function rateLimitsWithDefaults(partial: DeepPartial<RateLimits> | undefined): RateLimits {
  const d = DEFAULT_RATE_LIMITS;
  const budgets = (base: RateBudgets, p: DeepPartial<RateBudgets> | undefined): RateBudgets => ({
    writes: { ...base.writes, ...p?.writes },
    reads: { ...base.reads, ...p?.reads },
    subscriptions: { ...base.subscriptions, ...p?.subscriptions },
  });
  return {
    subject: budgets(d.subject, partial?.subject),
    address: budgets(d.address, partial?.address),
    maxConnectionsPerAddress: partial?.maxConnectionsPerAddress ?? d.maxConnectionsPerAddress,
    maxSubscriptionsPerConnection:
      partial?.maxSubscriptionsPerConnection ?? d.maxSubscriptionsPerConnection,
  };
}

export type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] };

/** Most keys a bucket set remembers; past it the least recently inserted are forgotten. */
const MAX_KEYS = 100_000;

/** Token buckets of one budget, by key. */
export class Buckets {
  private readonly state = new Map<string, { tokens: number; at: number }>();
  constructor(private readonly budget: Budget) {}

  /** Takes `n` tokens for `key`: 0 when granted, else the milliseconds until they would be. */
  take(key: string, n: number, now = Date.now()): number {
    const { perSecond, burst } = this.budget;
    const cost = Math.min(n, burst); // an operation larger than the burst waits for a full bucket
    let entry = this.state.get(key);
    if (entry === undefined) {
      if (this.state.size >= MAX_KEYS) this.state.delete(this.state.keys().next().value as string);
      entry = { tokens: burst, at: now };
      this.state.set(key, entry);
    } else {
      entry.tokens = Math.min(burst, entry.tokens + ((now - entry.at) * perSecond) / 1000);
      entry.at = now;
    }
    if (entry.tokens >= cost) {
      entry.tokens -= cost;
      return 0;
    }
    return Math.max(1, Math.ceil(((cost - entry.tokens) * 1000) / perSecond));
  }
}

/** How many tokens an operation costs: one per root field (aliases count, `__typename` does not). */
function rootFields(operation: OperationDefinitionNode): number {
  let n = 0;
  for (const s of operation.selectionSet.selections)
    if (s.kind !== Kind.FIELD || s.name.value !== "__typename") n++;
  return n;
}

/** The `RATE_LIMITED` error: HTTP 429 with Retry-After; `retryAfterMs` for every transport. */
export function rateLimited(message: string, retryAfterMs: number): GraphQLError {
  return new GraphQLError(`${message}; retry in ${(retryAfterMs / 1000).toFixed(1)} s`, {
    extensions: {
      code: "RATE_LIMITED",
      retryAfterMs,
      http: { status: 429, headers: { "retry-after": String(Math.ceil(retryAfterMs / 1000)) } },
    },
  });
}

/** The client's address: the socket's peer, or the nearest untrusted hop of X-Forwarded-For. */
export type AddressOf = (req: IncomingMessage) => string;

/**
 * `trustedProxies` are proxy-addr trust values: addresses, CIDR ranges and the names `loopback`,
 * `linklocal`, `uniquelocal`. X-Forwarded-For is read only through hops that are trusted, from
 * the socket's peer outwards; without trusted proxies it is ignored. Throws on a bad entry.
 */
export function createAddressOf(trustedProxies: readonly string[] = []): AddressOf {
  if (trustedProxies.length === 0) return (req) => req.socket.remoteAddress ?? "unknown";
  let trust: ReturnType<typeof proxyAddr.compile>;
  try {
    trust = proxyAddr.compile([...trustedProxies]);
  } catch (error) {
    throw new Error(
      `trustedProxies: ${(error as Error).message} (write addresses, CIDR ranges, or loopback/linklocal/uniquelocal)`,
    );
  }
  return (req) => proxyAddr(req, trust);
}

type Spend = keyof RateBudgets;

export interface RateLimiter {
  readonly limits: RateLimits;
  readonly addressOf: AddressOf;
  /** 0 when the caller may spend `n` of `kind`, else the milliseconds to wait, with why. */
  take(
    kind: Spend,
    n: number,
    subject: string | undefined,
    address: string,
  ): { retryAfterMs: number; message: string } | undefined;
}

export function createRateLimiter(limits: RateLimits, addressOf: AddressOf): RateLimiter {
  const sets = {
    subject: {
      writes: new Buckets(limits.subject.writes),
      reads: new Buckets(limits.subject.reads),
      subscriptions: new Buckets(limits.subject.subscriptions),
    },
    address: {
      writes: new Buckets(limits.address.writes),
      reads: new Buckets(limits.address.reads),
      subscriptions: new Buckets(limits.address.subscriptions),
    },
  };
  const describe = (b: Budget) => `${b.perSecond}/s, bursts of ${b.burst}`;
  return {
    limits,
    addressOf,
    take(kind, n, subject, address) {
      // The subject's own budget first: a caller over it does not spend its address' budget.
      if (subject !== undefined) {
        const wait = sets.subject[kind].take(subject, n);
        if (wait > 0) {
          return {
            retryAfterMs: wait,
            message: `too many ${kind} for subject ${JSON.stringify(subject.slice(0, 100))} (rateLimits.subject.${kind}: ${describe(limits.subject[kind])})`,
          };
        }
      }
      const wait = sets.address[kind].take(address, n);
      if (wait > 0) {
        return {
          retryAfterMs: wait,
          message: `too many ${kind} from address ${address} (rateLimits.address.${kind}: ${describe(limits.address[kind])})`,
        };
      }
      return undefined;
    },
  };
}

interface RateContext extends KoraContext {
  req?: IncomingMessage;
  res?: object;
}

/** The caller's subject (`sub`), when authenticated. */
function subjectOf(ctx: RateContext): string | undefined {
  const sub = ctx.caller?.auth?.sub;
  return typeof sub === "string" && sub !== "" ? sub : undefined;
}

/**
 * Charges every operation to its caller's buckets before it executes. An HTTP request is charged
 * once even when it runs twice (the fast path hands a query with errors to yoga, which runs it
 * again): the decision is kept per response object.
 */
export function useRateLimits(limiter: RateLimiter, connections: ConnectionCounter): Plugin {
  const decided = new WeakMap<object, ReturnType<RateLimiter["take"]>>();
  const decide = (
    kind: Spend,
    args: { document: unknown; operationName?: string | null; contextValue: unknown },
  ) => {
    const ctx = args.contextValue as RateContext;
    const operation = getOperationAST(args.document as never, args.operationName ?? undefined);
    if (!operation || !ctx.req) return undefined;
    if (ctx.res && decided.has(ctx.res)) return decided.get(ctx.res);
    const refusal = limiter.take(
      kind,
      rootFields(operation),
      subjectOf(ctx),
      limiter.addressOf(ctx.req),
    );
    if (ctx.res) decided.set(ctx.res, refusal);
    return refusal;
  };
  return {
    onExecute({ args, setResultAndStopExecution }) {
      const operation = getOperationAST(args.document, args.operationName ?? undefined);
      const kind: Spend = operation?.operation === "mutation" ? "writes" : "reads";
      const refusal = decide(kind, args);
      if (refusal)
        setResultAndStopExecution({ errors: [rateLimited(refusal.message, refusal.retryAfterMs)] });
    },
    onSubscribe({ args, setResultAndStopExecution }) {
      const refusal = decide("subscriptions", args);
      if (refusal) {
        setResultAndStopExecution({ errors: [rateLimited(refusal.message, refusal.retryAfterMs)] });
        return;
      }
      // Over HTTP a subscription is an SSE stream: a connection held open, counted until the
      // response closes. (A WebSocket was counted once, at its upgrade.)
      const ctx = args.contextValue as unknown as RateContext;
      if (ctx.req && ctx.res && "once" in ctx.res) {
        const full = connections.admit(ctx.req, ctx.res as ServerResponse);
        if (full !== undefined) setResultAndStopExecution({ errors: [rateLimited(full, 1000)] });
      }
    },
  };
}

/**
 * Counts long-lived connections per client address: WebSocket connections (checked at the
 * upgrade, `ws`' verifyClient) and SSE streams (checked when the subscription starts) share the
 * cap. `admit` says why not when the address is full; else it counts one until `closer` emits
 * `close` (the upgrade's TCP socket, the SSE response).
 */
export interface ConnectionCounter {
  admit(
    req: IncomingMessage,
    closer: { once(event: "close", listener: () => void): unknown },
  ): string | undefined;
}

export function createConnectionCounter(limiter: RateLimiter): ConnectionCounter {
  const open = new Map<string, number>();
  return {
    admit(req, closer) {
      const address = limiter.addressOf(req);
      const n = open.get(address) ?? 0;
      const max = limiter.limits.maxConnectionsPerAddress;
      if (n >= max) {
        return `address ${address} already has ${n} connections open (WebSockets and SSE streams); at most ${max} are accepted (rateLimits.maxConnectionsPerAddress): close one first`;
      }
      open.set(address, n + 1);
      closer.once("close", () => {
        const left = (open.get(address) ?? 1) - 1;
        if (left <= 0) open.delete(address);
        else open.set(address, left);
      });
      return undefined;
    },
  };
}
