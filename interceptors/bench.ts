/**
 * A measurement the bench (bench/run.ts) can call: merges per second through the gateway with no
 * interceptors, and with the rules engine holding 10 rules. Same store kind, same workload (client
 * merges with a token's claims, as the rules would see them), `concurrency` writers at a time.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { type Caller, createGateway, silentLogger } from "../core/gateway.ts";
import type { Store } from "../core/store.ts";
import { DEFAULT_LIMITS } from "../core/types.ts";
import { mergeAt } from "../core/tree.ts";
import { createInterceptorChain } from "./chain.ts";
import { createRulesEngine } from "./rules.ts";

/** Ten rules of the kinds apps use: per-user read/write, schemas, CEL validation, a denormalization. */
export const BENCH_RULES = `rules:
  "bench/$uid":
    read: auth != null && auth.sub == uid
    write: auth != null && auth.sub == uid
  "bench/$uid/$item":
    schema: { type: object, properties: { n: { type: integer } } }
  "bench/$uid/$item/n":
    validate: newData >= 0
  "profile/$uid":
    read: auth != null
    write: auth != null && auth.sub == uid
  "profile/$uid/name":
    validate: size(newData) < 100
  "public":
    read: "true"
    write: auth != null
  "admin":
    read: auth != null && has(auth.roles) && "admin" in auth.roles
  "rooms/$room/members/$uid":
    write: auth != null && auth.sub == uid
  "user:info/$uid/company":
    denormalize:
      - path: "company:employees/{value}/$uid"
  "logs/$day/$id":
    write: auth != null
`;

export interface RulesOverhead {
  /** Merges per second with no interceptor. */
  none: number;
  /** Merges per second with the rules engine and `BENCH_RULES` (10 rules). */
  rules: number;
}

/**
 * Runs the same merge workload for `seconds` on a fresh store from `createStore` twice. The
 * stores are closed afterwards (drop their schemas yourself).
 */
export async function measureRulesOverhead(options: {
  createStore: () => Promise<Store>;
  seconds?: number;
  concurrency?: number;
}): Promise<RulesOverhead> {
  const seconds = options.seconds ?? 3;
  const concurrency = options.concurrency ?? 32;
  const dir = mkdtempSync(join(tmpdir(), "kora-bench-rules-"));
  const file = join(dir, "kora.rules.yaml");
  writeFileSync(file, BENCH_RULES);
  const caller: Caller = { auth: { sub: "u1" }, internal: false };

  async function run(withRules: boolean): Promise<number> {
    const store = await options.createStore();
    const engine = withRules ? createRulesEngine({ file, watch: false }) : undefined;
    const gateway = await createGateway({
      store,
      retention: { intervalMs: 0 },
      ...(engine
        ? {
            pipeline: createInterceptorChain({
              interceptors: [engine.interceptor],
              limits: DEFAULT_LIMITS,
              log: silentLogger,
            }),
          }
        : {}),
    });
    let done = 0;
    const end = performance.now() + seconds * 1000;
    const start = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async (_x, w) => {
        for (let i = 0; performance.now() < end; i++) {
          await gateway.commit(mergeAt(["bench", "u1", `w${w}-${i % 100}`], { n: i }), caller);
          done++;
        }
      }),
    );
    const rate = done / ((performance.now() - start) / 1000);
    await gateway.close();
    return rate;
  }

  return { none: await run(false), rules: await run(true) };
}
