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

/**
 * What GraphiQL's first tab holds on a first visit: the README's example operations, named so
 * each can be run on its own (GraphiQL asks which one, or runs the one under the cursor).
 */
export const GRAPHIQL_DEFAULT_QUERY = `# Kora: one JSON tree, live. Run these one at a time (▶ offers the list).
# Open a second tab for WatchUsers: it shows the snapshot, then each change live.
# The console (tree browser, rules simulator, effects): /console

mutation MergeDax {
  merge(path: ["user:info", "dax"], value: { name: "Dax", company: "ironbay" }) { version }
}

subscription WatchUsers {
  watch(path: ["user:info"]) { version snapshot merge delete }
}

mutation RenameDax {
  merge(path: ["user:info", "dax", "name"], value: "Dax R.") { version }
}

query ReadUsers {
  path(path: ["user:info"], limit: 10)
}

mutation DeleteDax {
  delete(path: ["user:info", "dax"]) { version }
}
`;
