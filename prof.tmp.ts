import { monitorEventLoopDelay } from "node:perf_hooks";
import { createPgliteStore } from "./core/store/index.ts";
import { startKora } from "./server/index.ts";
import { silentLogger } from "./core/gateway.ts";
const store = await createPgliteStore({ dataDir: undefined });
const kora = await startKora({ store, log: silentLogger, port: 0, host: "127.0.0.1", retention: { intervalMs: 0 } });
const url = kora.url;
const q = async (query: string, variables: unknown) => (await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query, variables }) })).json();
await q(`mutation($p:[String!]!,$v:JSON!){merge(path:$p,value:$v){version}}`, { p: ["other"], v: { key: 1 } });
const big: Record<string, number> = {};
for (let i = 0; i < 100000; i++) big[`k${String(i).padStart(6, "0")}`] = i;
// Log every event-loop block over 50 ms, with time since start.
const t0 = performance.now();
let last = performance.now();
const tick = setInterval(() => { const now = performance.now(); if (now - last > 60) console.log(`block ${Math.round(now - last)} ms ending at ${Math.round(now - t0)}`); last = now; }, 10);
let done = false;
const w = q(`mutation($p:[String!]!,$v:JSON!){merge(path:$p,value:$v){version}}`, { p: ["big"], v: big }).then((r) => { done = true; console.log("merge done", Math.round(performance.now() - t0), JSON.stringify(r).slice(0, 80)); });
while (!done) { const a = performance.now(); await q(`query{path(path:["other"])}`, {}); console.log("read", Math.round(performance.now() - a), "at", Math.round(performance.now() - t0)); }
await w;
clearInterval(tick);
await kora.close();
