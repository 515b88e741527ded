/**
 * `npm run codegen`: typed documents for the `.graphql` operations used by the tests, the client
 * and the examples, generated from the committed schema.graphql (itself printed from Pothos).
 */
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: "schema.graphql",
  documents: ["test/operations/**/*.graphql", "client/**/*.graphql", "examples/**/*.graphql", "!**/node_modules/**"],
  ignoreNoDocuments: true,
  // ESM with NodeNext needs explicit extensions in the generated imports.
  emitLegacyCommonJSImports: false,
  generates: {
    "generated/": {
      preset: "client",
      config: {
        scalars: { JSON: "unknown", JSONObject: "Record<string, unknown>" },
        useTypeImports: true,
        enumsAsTypes: true,
      },
      presetConfig: { fragmentMasking: false },
    },
  },
};

export default config;
