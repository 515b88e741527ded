/**
 * GraphiQL's page, loaded on first use. `@graphql-yoga/render-graphiql` holds GraphiQL's whole
 * bundle (about 9 MB of JavaScript in strings); importing it at start-up cost about 68 MiB of RSS
 * in every server process, most of which never serves GraphiQL (docs/bench.md, "Memory").
 */
import type { GraphiQLOptions } from "graphql-yoga";

let renderer: Promise<(options: GraphiQLOptions) => string> | undefined;

export function renderGraphiQLOnDemand(options: GraphiQLOptions): Promise<string> {
  renderer ??= import("@graphql-yoga/render-graphiql").then((m) => m.renderGraphiQL);
  return renderer.then((render) => render(options));
}
