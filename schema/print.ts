/** Writes schema.graphql from the Pothos schema: `npm run schema:print`. */
import { writeFileSync } from "node:fs";
import { printKoraSchema } from "./index.ts";

writeFileSync(new URL("../schema.graphql", import.meta.url), printKoraSchema());
console.log("wrote schema.graphql");
