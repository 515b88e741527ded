/**
 * The contract's company example, in code: `company:employees/$company/$uid` follows
 * `user:info/$uid/company`. Setting a user's company to C writes `company:employees/C/$uid = now`
 * in the same mutation (so the same version); changing or deleting it removes the entry under the
 * old company. The same thing without code: examples/company/kora.rules.yaml.
 */
import { defineInterceptor } from "../../interceptors/types.ts";

export const companyEmployees = defineInterceptor({
  name: "company-employees",
  path: ["user:info", "$uid", "company"],
  async beforeMutation({ captures, data, newData, now }) {
    const uid = captures.uid as string;
    const before = await data();
    const after = await newData();
    const merge: Record<string, unknown> = {};
    const del: Record<string, unknown> = {};
    if (typeof before === "string" && before !== after) del["company:employees"] = { [before]: { [uid]: true } };
    if (typeof after === "string") merge["company:employees"] = { [after]: { [uid]: now } };
    return { merge, delete: del };
  },
});
