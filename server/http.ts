/**
 * The transport edge: one Node HTTP server carrying GraphQL over HTTP and SSE (graphql-yoga),
 * graphql-ws on the same port and path, GraphiQL served from Kora itself, `/healthz` (liveness,
 * yoga's own) and `/readyz` (readiness, server/health.ts).
 * Every transport runs the same envelop pipeline (`yoga.getEnveloped`), so limits, masking and
 * (later) interceptors behave the same whichever way a request arrives.
 */
import { type IncomingMessage, type ServerResponse, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { GraphQLError, type ExecutionArgs } from "graphql";
import type { Context, ServerOptions, SubscribePayload } from "graphql-ws";
import type { Extra } from "graphql-ws/use/ws";
import { type Plugin, createYoga } from "graphql-yoga";
import { type WebSocket as WsSocket, WebSocketServer } from "ws";
import type { Caller, Gateway, Logger } from "../core/gateway.ts";
import { KoraError } from "../core/errors.ts";
import { type KoraContext, createContext } from "../resolvers/context.ts";
import { koraSchema } from "../schema/index.ts";
import { type Authenticator, createAuthenticator } from "./auth.ts";
import {
  type CorsOptions,
  createOriginPolicy,
  upgradeRefusal,
  useJsonBodiesOnly,
  useOriginCheck,
} from "./crosssite.ts";
import { createMaskError, forSocket, useContractErrorCodes } from "./errors.ts";
import { directFrames, framed, serveGraphqlWs } from "./wsserver.ts";
import { fastPathEligible, serveFast, usePrecomputedResult } from "./fastpath.ts";
import { useReadiness } from "./health.ts";
import { type KeepAliveOptions, applyKeepAlive, guardSockets } from "./keepalive.ts";
import { GRAPHIQL_DEFAULT_QUERY, renderGraphiQLOnDemand } from "./graphiql.ts";
import { type DirectSocket, isSharedResult, useWatchFastPath } from "./watchpath.ts";
import { type ConsoleOptions, useConsole } from "./console.ts";
import { DEFAULT_DOCUMENT_LIMITS, type DocumentLimits, useDocumentLimits } from "./limits.ts";
import {
  type DeepPartial,
  type RateLimits,
  createAddressOf,
  createConnectionCounter,
  createRateLimiter,
  rateLimited,
  rateLimitsWithDefaults,
  useRateLimits,
} from "./rate.ts";
import { DEFAULT_READ_LIMITS, type ReadLimits, eventRefusal, useReadBound } from "./readbound.ts";
import { type Metrics, useMetrics } from "./metrics.ts";
import { requestIdOf, runAsRequest, withRequestId } from "./requests.ts";

export interface KoraServerOptions {
  gateway: Gateway;
  /** TCP port; 0 picks a free one. Default 4000. */
  port?: number;
  /** Interface to bind. Default all interfaces. */
  host?: string;
  /** Limits on GraphQL documents (size, nesting, tokens, selection depth). */
  documentLimits?: Partial<DocumentLimits>;
  /** Largest HTTP body or WebSocket message, in bytes. Default: the mutation limit plus 64 KiB. */
  maxMessageBytes?: number;
  /** Bounds on what one operation may read (server/readbound.ts). */
  operationLimits?: Partial<ReadLimits>;
  /**
   * Browser pages of other origins allowed to call Kora (server/crosssite.ts, docs/security.md).
   * Default none: same origin only; requests without an Origin header are always served.
   */
  cors?: CorsOptions;
  /**
   * Rate and resource limits (server/rate.ts); `false` turns the buckets and caps off (for
   * benchmarks and trusted networks). Default: DEFAULT_RATE_LIMITS.
   */
  rateLimits?: DeepPartial<RateLimits> | false;
  /**
   * Proxies whose X-Forwarded-For is believed for the client address (addresses, CIDR ranges,
   * `loopback`, `linklocal`, `uniquelocal`). Default none: the socket's peer is the client.
   */
  trustedProxies?: string[];
  /**
   * How long an idle keep-alive HTTP socket stays open, ms; the headers timeout is 1 s more.
   * Default 65,000: longer than the idle time of the proxies and clients in front (server/keepalive.ts).
   */
  keepAliveTimeoutMs?: number;
  /** Extra envelop/yoga plugins, run for every transport. */
  plugins?: Plugin[];
  /**
   * Turns a request's credentials into the caller every hook and rule sees (server/auth.ts).
   * Default: no token verification; requests without a token are anonymous (`auth = null`).
   */
  authenticate?: Authenticator;
  /** WebSocket keep-alive and the bound on a socket's unsent bytes (server/keepalive.ts). */
  keepAlive?: KeepAliveOptions;
  /** The data console at /console (server/console.ts, docs/console.md). */
  console?: ConsoleOptions;
  log: Logger;
  /** Prometheus metrics served at their path (server/metrics.ts); none when absent. */
  metrics?: Metrics | undefined;
}

export interface KoraServer {
  readonly url: string;
  readonly port: number;
  /** Stops accepting, finishes in-flight writes, closes sockets and the gateway's store. */
  close(): Promise<void>;
}

export async function createKoraServer(options: KoraServerOptions): Promise<KoraServer> {
  const { gateway, log } = options;
  const documentLimits = { ...DEFAULT_DOCUMENT_LIMITS, ...options.documentLimits };
  const maxMessageBytes = options.maxMessageBytes ?? gateway.limits.maxMutationBytes + 64 * 1024;
  const maskError = createMaskError(log, { maxBodyBytes: maxMessageBytes });
  const authenticate = options.authenticate ?? createAuthenticator();
  const originPolicy = createOriginPolicy(options.cors);
  const addressOf = createAddressOf(options.trustedProxies);
  const rateLimiter =
    options.rateLimits === false
      ? undefined
      : createRateLimiter(rateLimitsWithDefaults(options.rateLimits), addressOf);
  const connections = rateLimiter ? createConnectionCounter(rateLimiter) : undefined;
  let shuttingDown = false;

  // Plain queries skip yoga's HTTP layer (server/fastpath.ts) and plain watches skip per-event
  // execution (server/watchpath.ts), unless extra plugins may hook what they skip.
  const fastPath = (options.plugins ?? []).length === 0;

  const readLimits = { ...DEFAULT_READ_LIMITS, ...options.operationLimits };
  const refusal = eventRefusal(readLimits);
  const yoga = createYoga<Record<string, unknown>, KoraContext>({
    schema: koraSchema(),
    graphqlEndpoint: "/graphql",
    // WebSocket operations arrive with the caller of their connection (see onConnect below);
    // HTTP and SSE requests are authenticated here, once per request.
    context: async (initial) => {
      const fromSocket = (initial as { koraCaller?: Caller }).koraCaller;
      if (fromSocket) return createContext(gateway, fromSocket);
      const request = (initial as { request: Request }).request;
      const caller = await authenticate({
        authorization: request.headers.get("authorization") ?? undefined,
        headers: Object.fromEntries(request.headers),
      });
      return createContext(gateway, caller);
    },
    maskedErrors: { maskError: (error) => maskError(error) },
    // GraphiQL's page, scripts and styles come from Kora itself: it works offline.
    renderGraphiQL: renderGraphiQLOnDemand,
    graphiql: { title: "Kora", subscriptionsProtocol: "SSE", defaultQuery: GRAPHIQL_DEFAULT_QUERY },
    landingPage: false,
    // Cross-site protection (server/crosssite.ts): CORS headers for allowlisted origins only,
    // JSON bodies only (multipart off), bodies counted while they stream in.
    cors: (request) => originPolicy.cors(request),
    multipart: false,
    maxRequestBodySize: maxMessageBytes,
    // Liveness: the process serves (whatever the store does); readiness is /readyz.
    healthCheckEndpoint: "/healthz",
    logging: {
      debug: () => {},
      info: (...args) => log.info(args.map(String).join(" ")),
      warn: (...args) => log.warn(args.map(String).join(" ")),
      // Errors reaching clients are logged by the mask (unexpected ones, with their id).
      error: (...args) => log.warn(args.map(String).join(" ")),
    },
    plugins: [
      // First: it ends the onExecute chain for results the fast path computed (server/fastpath.ts).
      ...(fastPath ? [usePrecomputedResult()] : []),
      useReadiness({ gateway, shuttingDown: () => shuttingDown }),
      useOriginCheck(originPolicy),
      useJsonBodiesOnly("/graphql"),
      useConsole({ gateway, console: options.console, log }),
      useContractErrorCodes(),
      useDocumentLimits(documentLimits),
      ...(rateLimiter && connections ? [useRateLimits(rateLimiter, connections)] : []),
      useReadBound(readLimits),
      ...(options.metrics ? [useMetrics(options.metrics)] : []),
      ...(options.plugins ?? []),
      ...(fastPath ? [useWatchFastPath()] : []),
    ],
  });

  const httpServer = createServer(
    withRequestId((req: IncomingMessage, res: ServerResponse) => {
      if (fastPath && fastPathEligible(req, maxMessageBytes)) serveFast(yoga, req, res, maskError);
      else void yoga(req, res);
    }),
  );
  options.metrics?.observeServer(httpServer);

  applyKeepAlive(httpServer, options.keepAliveTimeoutMs);

  const wsServer = new WebSocketServer({
    server: httpServer,
    path: "/graphql",
    maxPayload: maxMessageBytes,
    // The upgrade is the one request yoga never sees: the same origin allowlist, and the cap on
    // connections per address, are checked here.
    verifyClient: ({ req }, done) => {
      const refusal = upgradeRefusal(originPolicy, req);
      // ws sends the message as the body, text/html unless told: it may quote the Origin.
      const plain = { "content-type": "text/plain; charset=utf-8" };
      if (refusal !== undefined) return done(false, 403, refusal, plain);
      const full = connections?.admit(req, req.socket);
      if (full !== undefined) return done(false, 429, full, { ...plain, "retry-after": "1" });
      done(true);
    },
  });
  // Before graphql-ws's own listener: a socket is guarded from its first message on.
  const stopKeepAlive = guardSockets(wsServer, { ...options.keepAlive, log });
  // graphql-ws's protocol on Kora's own binding (server/wsserver.ts: frames of one turn in one
  // syscall); its keep-alive is server/keepalive.ts, which closes with a reason.
  const wsHandle = serveGraphqlWs<Record<string, unknown>>({
    wss: wsServer,
    log,
    isProd: process.env.NODE_ENV === "production",
    options: {
      // Each operation runs as a request of its own (its connection's id / the operation's id), so
      // its log lines carry a request id as HTTP requests' do (server/requests.ts).
      execute: (args) =>
        runAsRequest((args.rootValue as Enveloped).requestId, () =>
          (args.rootValue as Enveloped).execute(args),
        ),
      subscribe: (args) =>
        runAsRequest((args.rootValue as Enveloped).requestId, () =>
          (args.rootValue as Enveloped).subscribe(args),
        ),
      // Authenticated once per connection, from connectionParams or the upgrade request's header.
      // A refused token does not close the socket: every operation on it fails UNAUTHENTICATED.
      onConnect: async (ctx) => {
        const extra = ctx.extra as {
          koraCaller?: Caller;
          koraAuthError?: KoraError;
          koraRequestId?: string;
        };
        extra.koraRequestId = requestIdOf(ctx.extra.request);
        try {
          const headers = ctx.extra.request.headers;
          extra.koraCaller = await authenticate({
            authorization:
              typeof headers.authorization === "string" ? headers.authorization : undefined,
            connectionParams: ctx.connectionParams,
            headers,
          });
        } catch (error) {
          if (!(error instanceof KoraError)) throw error;
          extra.koraAuthError = error;
        }
        return true;
      },
      // Errors that end a subscription (an expired token) get the same codes as everywhere else.
      onError: (_ctx, _id, _payload, errors) => errors.map((e) => forSocket(maskError(e))),
      // Results carry yoga's HTTP status hints in `extensions.http`, meaningless on a socket.
      // A result shared by many watchers goes out serialized once (server/wsserver.ts, `framed`).
      onNext: (_ctx, _id, _payload, _args, result) =>
        result.errors?.length
          ? { ...result, errors: result.errors.map((e) => forSocket(e as GraphQLError)) }
          : isSharedResult(result)
            ? (framed(result) as typeof result)
            : result,
      onSubscribe: (ctx, id, params) => {
        const extra = ctx.extra as {
          koraCaller?: Caller;
          koraAuthError?: KoraError;
          koraRequestId?: string;
        };
        const requestId = `${extra.koraRequestId ?? requestIdOf(ctx.extra.request)}/${id}`;
        return runAsRequest(requestId, () => subscribeOperation(ctx, id, params, extra, requestId));
      },
    },
  });

  const watchMetrics = options.metrics?.watch;
  /** What a plain watch over graphql-ws delivers through, frame by frame (server/watchpath.ts). */
  function directSocket(socket: WsSocket, id: string): DirectSocket | undefined {
    const frames = directFrames(socket, id);
    if (!frames) return undefined;
    return {
      next: (result) => frames.next(result, isSharedResult(result)),
      ready: frames.ready,
      delivered: (resync) => {
        watchMetrics?.deliveries.inc();
        if (resync) watchMetrics?.resyncs.inc();
      },
      refusal,
    };
  }

  async function subscribeOperation(
    ctx: Context<Record<string, unknown>, Extra>,
    id: string,
    params: SubscribePayload,
    extra: { koraCaller?: Caller; koraAuthError?: KoraError },
    requestId: string,
  ) {
    if (extra.koraAuthError) return [maskError(extra.koraAuthError)];
    // The operation being subscribed already holds its slot in ctx.subscriptions.
    const max = rateLimiter?.limits.maxSubscriptionsPerConnection;
    if (max !== undefined && Object.keys(ctx.subscriptions).length > max) {
      const message = `this connection already has ${max} operations active; at most ${max} are accepted (rateLimits.maxSubscriptionsPerConnection): end one, or open another connection`;
      return [forSocket(rateLimited(message, 1000))];
    }
    const enveloped = yoga.getEnveloped({
      ...ctx,
      req: ctx.extra.request,
      socket: ctx.extra.socket,
      params,
      koraCaller: extra.koraCaller,
      koraDirect: directSocket(ctx.extra.socket, id),
    });
    let document: ReturnType<typeof enveloped.parse>;
    try {
      document = enveloped.parse(params.query);
    } catch (error) {
      return [
        forSocket(
          maskError(error instanceof GraphQLError ? error : new GraphQLError(String(error))),
        ),
      ];
    }
    const errors = enveloped.validate(enveloped.schema, document);
    if (errors.length > 0) return errors.map((e: GraphQLError) => forSocket(maskError(e)));
    const args: ExecutionArgs = {
      schema: enveloped.schema,
      operationName: params.operationName ?? null,
      document,
      variableValues: params.variables ?? null,
      contextValue: await enveloped.contextFactory(),
      rootValue: { execute: enveloped.execute, subscribe: enveloped.subscribe, requestId },
    };
    return args;
  }

  await new Promise<void>((resolve, reject) => {
    httpServer.once("error", reject);
    httpServer.listen(options.port ?? 4000, options.host, () => {
      httpServer.off("error", reject);
      resolve();
    });
  });
  const address = httpServer.address() as AddressInfo;
  const host =
    options.host && options.host !== "0.0.0.0" && options.host !== "::"
      ? options.host
      : "localhost";
  const url = `http://${host}:${address.port}/graphql`;

  let closing: Promise<void> | undefined;
  return {
    url,
    port: address.port,
    close() {
      closing ??= (async () => {
        shuttingDown = true; // /readyz answers 503 from now on
        stopKeepAlive();
        httpServer.close(); // stop accepting; existing connections are ended below
        await gateway.close(); // finishes in-flight writes, ends every watch, closes the store
        await wsHandle.dispose();
        for (const socket of wsServer.clients) socket.terminate();
        await new Promise<void>((resolve) => wsServer.close(() => resolve()));
        httpServer.closeAllConnections();
      })();
      return closing;
    },
  };
}

type OperationResult = ReturnType<
  NonNullable<ServerOptions<Record<string, unknown>, Extra>["execute"]>
>;

interface Enveloped {
  execute: (args: ExecutionArgs) => OperationResult;
  subscribe: (args: ExecutionArgs) => OperationResult;
  requestId: string;
}
