/**
 * The real clients users have, each wrapped to push `watch` events into an EventQueue:
 * graphql-ws `createClient`, Apollo Client (GraphQLWsLink), urql (subscriptionExchange), and SSE
 * read with plain `fetch`.
 */
import { ApolloClient, InMemoryCache, gql } from "@apollo/client";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { createClient as createUrqlClient, subscriptionExchange } from "@urql/core";
import { type Client, createClient } from "graphql-ws";
import WebSocket from "ws";
import { EventQueue } from "./events.ts";

export interface WireEvent {
  version: string;
  snapshot: boolean;
  merge: Record<string, unknown>;
  delete: Record<string, unknown>;
  value?: unknown;
}

export interface Subscription {
  events: EventQueue<WireEvent>;
  close(): Promise<void> | void;
}

export type Subscriber = (query: string, variables: Record<string, unknown>) => Subscription;

export interface ClientKind {
  name: string;
  connect(urls: { url: string; wsUrl: string }): { subscribe: Subscriber; dispose(): Promise<void> | void };
}

export function wsClient(wsUrl: string): Client {
  return createClient({ url: wsUrl, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
}

const graphqlWs: ClientKind = {
  name: "graphql-ws",
  connect({ wsUrl }) {
    const client = wsClient(wsUrl);
    return {
      subscribe(query, variables) {
        const events = new EventQueue<WireEvent>();
        const stop = client.subscribe<{ watch: WireEvent }>(
          { query, variables },
          {
            next: (r) => (r.errors ? events.fail(r.errors) : events.push(r.data?.watch as WireEvent)),
            error: (e) => events.fail(e),
            complete: () => events.end(),
          },
        );
        return { events, close: stop };
      },
      dispose: () => client.dispose(),
    };
  },
};

const apollo: ClientKind = {
  name: "Apollo Client",
  connect({ wsUrl }) {
    // GraphQLWsLink tells error events apart through the global WebSocket, which browsers have
    // and Node 20 does not: without it, the link throws on a subscription's error.
    (globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket;
    const ws = wsClient(wsUrl);
    const client = new ApolloClient({ link: new GraphQLWsLink(ws), cache: new InMemoryCache() });
    return {
      subscribe(query, variables) {
        const events = new EventQueue<WireEvent>();
        const sub = client.subscribe<{ watch: WireEvent }>({ query: gql(query), variables }).subscribe({
          next: (r) => {
            if (r.error) return events.fail(r.error);
            // Apollo adds __typename to every object it normalizes; the event itself is the same.
            const { __typename: _t, ...event } = r.data!.watch as WireEvent & { __typename?: string };
            events.push(event);
          },
          error: (e) => events.fail(e),
          complete: () => events.end(),
        });
        return { events, close: () => sub.unsubscribe() };
      },
      async dispose() {
        client.stop();
        await ws.dispose();
      },
    };
  },
};

const urql: ClientKind = {
  name: "urql",
  connect({ url, wsUrl }) {
    const ws = wsClient(wsUrl);
    const client = createUrqlClient({
      url,
      exchanges: [
        subscriptionExchange({
          forwardSubscription: (request) => ({
            subscribe: (sink) => ({ unsubscribe: ws.subscribe({ ...request, query: request.query ?? "" }, sink) }),
          }),
        }),
      ],
    });
    return {
      subscribe(query, variables) {
        const events = new EventQueue<WireEvent>();
        const sub = client.subscription<{ watch: WireEvent }>(query, variables).subscribe((r) => {
          if (r.error) events.fail(r.error);
          else events.push(r.data?.watch as WireEvent);
        });
        return { events, close: () => sub.unsubscribe() };
      },
      dispose: () => ws.dispose(),
    };
  },
};

/** One GraphQL result of a stream, as it came: data, errors, or both. */
export interface StreamResult {
  data?: Record<string, unknown> | null;
  errors?: { message: string; path?: (string | number)[]; extensions?: Record<string, unknown> }[];
}

/**
 * Server-Sent Events with plain fetch: POST with `Accept: text/event-stream`, parse the stream,
 * hand each result to `onResult`. An answer that is not a stream (a request refused before it
 * started: 401, 403, 429) is handed over as its one JSON result. Resolves when the stream ends;
 * `abort` stops it.
 */
async function sseStream(
  url: string,
  body: { query: string; variables: Record<string, unknown> },
  headers: Record<string, string>,
  abort: AbortController,
  onResult: (result: StreamResult) => void,
): Promise<void> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "text/event-stream", ...headers },
    body: JSON.stringify(body),
    signal: abort.signal,
  });
  if (!res.body) throw new Error(`no body, status ${res.status}`);
  if (!res.headers.get("content-type")?.includes("text/event-stream")) {
    onResult((await res.json()) as StreamResult);
    return;
  }
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let cut = buffer.indexOf("\n\n");
    while (cut >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      cut = buffer.indexOf("\n\n");
      const type = /^event: (.*)$/m.exec(block)?.[1];
      const data = block
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart())
        .join("\n");
      if (type === "complete") return;
      if (data) onResult(JSON.parse(data) as StreamResult);
    }
  }
}

/** A watch over SSE whose events are `watch` payloads; an error result fails the queue. */
export function sseSubscribe(
  url: string,
  query: string,
  variables: Record<string, unknown>,
  headers: Record<string, string> = {},
): Subscription {
  const events = new EventQueue<WireEvent>();
  const abort = new AbortController();
  sseStream(url, { query, variables }, headers, abort, (payload) => {
    if (payload.errors) events.fail(payload.errors);
    else if (payload.data) events.push(payload.data.watch as WireEvent);
  }).then(
    () => events.end(),
    (error) => {
      if (!abort.signal.aborted) events.fail(error);
    },
  );
  return { events, close: () => abort.abort() };
}

/** Every result of a subscription over SSE, errors included, in order. */
export function sseResults(
  url: string,
  query: string,
  variables: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): { results: EventQueue<StreamResult>; close(): void } {
  const results = new EventQueue<StreamResult>();
  const abort = new AbortController();
  sseStream(url, { query, variables }, headers, abort, (r) => results.push(r)).then(
    () => results.end(),
    (error) => {
      if (!abort.signal.aborted) results.fail(error);
    },
  );
  return { results, close: () => abort.abort() };
}

const sse: ClientKind = {
  name: "SSE (fetch)",
  connect({ url }) {
    return { subscribe: (query, variables) => sseSubscribe(url, query, variables), dispose() {} };
  },
};

export const CLIENT_KINDS: ClientKind[] = [graphqlWs, apollo, urql, sse];
