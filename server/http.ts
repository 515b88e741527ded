/**
 * The transport edge: one Node HTTP server carrying GraphQL over HTTP and SSE (graphql-yoga),
 * graphql-ws on the same port and path, GraphiQL served from Kora itself, and `/healthz`.
 * Every transport runs the same envelop pipeline (`yoga.getEnveloped`), so limits, masking and
 * (later) interceptors behave the same whichever way a request arrives.
 */
import { type IncomingMessage, type ServerResponse, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { GraphQLError, type ExecutionArgs } from "graphql";
import { useServer } from "graphql-ws/use/ws";
import { type Plugin, createYoga } from "graphql-yoga";
import { WebSocketServer } from "ws";
import type { Caller, Gateway, Logger } from "../core/gateway.ts";
import { KoraError } from "../core/errors.ts";
import { type KoraContext, createContext } from "../resolvers/context.ts";
import { koraSchema } from "../schema/index.ts";
import { type Authenticator, createAuthenticator } from "./auth.ts";
import { type ConsoleOptions, useConsole } from "./console.ts";
import { createMaskError, useContractErrorCodes } from "./errors.ts";
import { fastPathEligible, serveFast } from "./fastpath.ts";
import { GRAPHIQL_DEFAULT_QUERY } from "./graphiql.ts";
import { DEFAULT_DOCUMENT_LIMITS, type DocumentLimits, useDocumentLimits } from "./limits.ts";

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
  /** Extra envelop/yoga plugins, run for every transport. */
  plugins?: Plugin[];
  /**
   * Turns a request's credentials into the caller every hook and rule sees (server/auth.ts).
   * Default: no token verification; requests without a token are anonymous (`auth = null`).
   */
  authenticate?: Authenticator;
  /** The data console at /console (server/console.ts, docs/console.md). */
  console?: ConsoleOptions;
  log: Logger;
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
  const maskError = createMaskError(log);
  const authenticate = options.authenticate ?? createAuthenticator();

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
    // GraphiQL's page, scripts and styles come from Kora itself: it works offline. Its bundle
    // loads on the first visit rather than at every start (a start pays for what it serves).
    renderGraphiQL: async (opts) => (await import("@graphql-yoga/render-graphiql")).renderGraphiQL(opts),
    graphiql: { title: "Kora", subscriptionsProtocol: "SSE", defaultQuery: GRAPHIQL_DEFAULT_QUERY },
    landingPage: false,
    logging: {
      debug: () => {},
      info: (...args) => log.info(args.map(String).join(" ")),
      warn: (...args) => log.warn(args.map(String).join(" ")),
      // Errors reaching clients are logged by the mask (unexpected ones, with their id).
      error: (...args) => log.warn(args.map(String).join(" ")),
    },
    plugins: [useContractErrorCodes(), useDocumentLimits(documentLimits), useConsole({ gateway, console: options.console, log }), ...(options.plugins ?? [])],
  });

  // Plain queries skip yoga's HTTP layer (server/fastpath.ts), unless extra plugins may hook it.
  const fastPath = (options.plugins ?? []).length === 0;

  const httpServer = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.url === "/healthz" && (req.method === "GET" || req.method === "HEAD")) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ ok: true, store: gateway.store.kind, version: String(gateway.hub.cursor) }));
      return;
    }
    const length = Number(req.headers["content-length"] ?? 0);
    if (length > maxMessageBytes) {
      res.writeHead(413, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          errors: [
            {
              message: `request body is ${length} bytes; at most ${maxMessageBytes} are accepted`,
              extensions: { code: "PAYLOAD_TOO_LARGE" },
            },
          ],
        }),
      );
      req.resume();
      return;
    }
    if (fastPath && fastPathEligible(req)) serveFast(yoga, req, res);
    else void yoga(req, res);
  });

  const wsServer = new WebSocketServer({ server: httpServer, path: "/graphql", maxPayload: maxMessageBytes });
  const wsHandle = useServer<Record<string, unknown>>(
    {
      execute: (args) => (args.rootValue as Enveloped).execute(args),
      subscribe: (args) => (args.rootValue as Enveloped).subscribe(args),
      // Authenticated once per connection, from connectionParams or the upgrade request's header.
      // A refused token does not close the socket: every operation on it fails UNAUTHENTICATED.
      onConnect: async (ctx) => {
        const extra = ctx.extra as { koraCaller?: Caller; koraAuthError?: KoraError };
        try {
          const headers = ctx.extra.request.headers;
          extra.koraCaller = await authenticate({
            authorization: typeof headers.authorization === "string" ? headers.authorization : undefined,
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
      onError: (_ctx, _id, _payload, errors) => errors.map((e) => maskError(e)),
      onSubscribe: async (ctx, _id, params) => {
        const extra = ctx.extra as { koraCaller?: Caller; koraAuthError?: KoraError };
        if (extra.koraAuthError) return [maskError(extra.koraAuthError)];
        const enveloped = yoga.getEnveloped({
          ...ctx,
          req: ctx.extra.request,
          socket: ctx.extra.socket,
          params,
          koraCaller: extra.koraCaller,
        });
        let document: ReturnType<typeof enveloped.parse>;
        try {
          document = enveloped.parse(params.query);
        } catch (error) {
          return [maskError(error instanceof GraphQLError ? error : new GraphQLError(String(error)))];
        }
        const errors = enveloped.validate(enveloped.schema, document);
        if (errors.length > 0) return errors.map((e: GraphQLError) => maskError(e));
        const args: ExecutionArgs = {
          schema: enveloped.schema,
          operationName: params.operationName ?? null,
          document,
          variableValues: params.variables ?? null,
          contextValue: await enveloped.contextFactory(),
          rootValue: { execute: enveloped.execute, subscribe: enveloped.subscribe },
        };
        return args;
      },
    },
    wsServer,
  );

  await new Promise<void>((resolve, reject) => {
    httpServer.once("error", reject);
    httpServer.listen(options.port ?? 4000, options.host, () => {
      httpServer.off("error", reject);
      resolve();
    });
  });
  const address = httpServer.address() as AddressInfo;
  const host = options.host && options.host !== "0.0.0.0" && options.host !== "::" ? options.host : "localhost";
  const url = `http://${host}:${address.port}/graphql`;

  let closing: Promise<void> | undefined;
  return {
    url,
    port: address.port,
    close() {
      closing ??= (async () => {
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

type OperationResult = ReturnType<NonNullable<Parameters<typeof useServer>[0]["execute"]>>;

interface Enveloped {
  execute: (args: ExecutionArgs) => OperationResult;
  subscribe: (args: ExecutionArgs) => OperationResult;
}
