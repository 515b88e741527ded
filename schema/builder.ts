import SchemaBuilder from "@pothos/core";
import { JSONObjectResolver, JSONResolver } from "graphql-scalars";
import type { KoraContext } from "../resolvers/context.ts";

export const builder = new SchemaBuilder<{
  Context: KoraContext;
  DefaultFieldNullability: false;
  Scalars: {
    JSON: { Input: unknown; Output: unknown };
    JSONObject: { Input: Record<string, unknown>; Output: object };
  };
}>({ defaultFieldNullability: false });

builder.addScalarType("JSON", JSONResolver);
builder.addScalarType("JSONObject", JSONObjectResolver);
