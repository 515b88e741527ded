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
