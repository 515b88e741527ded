/**
 * Typed Apollo Client and urql against Kora, with the documents `npm run codegen` generates from
 * examples/typed-clients/operations.graphql: variables and results are checked by TypeScript.
 */
import { ApolloClient, HttpLink, InMemoryCache } from "@apollo/client";
import { cacheExchange, createClient as createUrql, fetchExchange, subscriptionExchange } from "@urql/core";
import { createClient as createWsClient } from "graphql-ws";
import WebSocket from "ws";
import { TypedMergeDocument, TypedPathDocument, TypedWatchDocument } from "../../generated/graphql.ts";

/** Apollo Client: a typed merge with an HLC stamp and write id, then a typed read. */
export async function apolloExample(url: string): Promise<unknown> {
  const client = new ApolloClient({ link: new HttpLink({ uri: url }), cache: new InMemoryCache() });
  const merged = await client.mutate({
    mutation: TypedMergeDocument,
    variables: { path: ["typed", "apollo"], value: { hello: "world" }, writeId: `apollo-${Date.now()}` },
  });
  const version: string | undefined = merged.data?.merge.version; // typed: string
  const read = await client.query({ query: TypedPathDocument, variables: { path: ["typed", "apollo"] }, fetchPolicy: "no-cache" });
  client.stop();
  return { version, value: read.data?.path };
}

/** urql: a typed merge, and a typed watch over graphql-ws until it sees `value`. */
export async function urqlExample(url: string, wsUrl: string): Promise<unknown> {
  const ws = createWsClient({ url: wsUrl, webSocketImpl: WebSocket });
  const client = createUrql({
    url,
    exchanges: [
      cacheExchange,
      subscriptionExchange({
        forwardSubscription: (request) => ({
          subscribe: (sink) => ({ unsubscribe: ws.subscribe({ ...request, query: request.query ?? "" }, sink) }),
        }),
      }),
      fetchExchange,
    ],
  });
  const seen = new Promise<unknown>((resolve) => {
    const sub = client.subscription(TypedWatchDocument, { path: ["typed", "urql"] }).subscribe((r) => {
      const value = r.data?.watch.value; // typed: unknown (JSON)
      if (value !== null && value !== undefined) {
        sub.unsubscribe();
        resolve(value);
      }
    });
  });
  await new Promise((r) => setTimeout(r, 100));
  await client.mutation(TypedMergeDocument, { path: ["typed", "urql"], value: 42 }).toPromise();
  const value = await seen;
  await ws.dispose();
  return value;
}
