/**
 * Summarizes `.cpuprofile` files (from `npm run bench -- --profile`, or any `node --cpu-prof`):
 * the top functions by self time and the share of each package or Kora folder.
 *
 *   npx tsx bench/profile.ts bench/results/profiles/merges-ws [more dirs or files] [--top 25]
 *
 * A folder stands for its largest profile (tsx's loader thread writes a small one of its own beside
 * the main thread's). When the folder holds `window.json` ({fromMs, toMs} since the process
 * started, written by the bench), only samples inside that window count: start-up is left out.
 */
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { join } from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const args = process.argv.slice(2);
const topAt = args.indexOf("--top");
const top = topAt >= 0 ? Number(args[topAt + 1]) : 25;
const targets = args.filter((a, i) => !a.startsWith("--") && (topAt < 0 || i !== topAt + 1));

function fileOf(target: string): string {
  if (!statSync(target).isDirectory()) return target;
  const files = readdirSync(target)
    .filter((f) => f.endsWith(".cpuprofile"))
    .map((f) => join(target, f))
    .sort((a, b) => statSync(b).size - statSync(a).size);
  if (!files[0]) throw new Error(`no .cpuprofile in ${target}`);
  return files[0];
}

/** Where a function lives: a package, a Kora folder, Node's internals, or V8's pseudo-frames. */
function ownerOf(url: string, name: string): string {
  if (!url) return name.startsWith("(") ? name : "(native)";
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) {
    const rest = url.slice(nm + 13).split("/");
    return rest[0]?.startsWith("@") ? `${rest[0]}/${rest[1]}` : (rest[0] as string);
  }
  if (url.startsWith("node:")) return "node:internal";
  const m = /\/(core|server|resolvers|schema|interceptors|client|bench)\//.exec(url);
  return m ? `kora ${m[1]}/` : url;
}

/** The layer an owner belongs to, for the one-line summary docs/bench.md quotes. */
function layerOf(owner: string, functionName: string): string {
  if (owner === "(garbage collector)") return "GC";
  if (functionName === "writev" || functionName === "writeBuffer" || functionName === "writeUtf8String") return "socket writes (syscalls)";
  if (/^(graphql|graphql-yoga|@graphql-tools\/.*|@envelop\/.*|@whatwg-node\/.*|@pothos\/core|graphql-scalars|dataloader)$/.test(owner)) return "GraphQL layer (graphql-js, yoga, envelop, whatwg-node)";
  if (owner === "graphql-ws" || owner === "ws") return "graphql-ws + ws";
  if (owner.startsWith("pg")) return "pg driver";
  if (owner.startsWith("kora ")) return "Kora's own code";
  if (owner === "node:internal") return "Node internals (http, net, streams, timers)";
  return "other";
}

function shortUrl(url: string): string {
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) return url.slice(nm + 13);
  const m = /\/(core|server|resolvers|schema|interceptors|client|bench)\/.*/.exec(url);
  return m ? m[0].slice(1) : url.replace(/^file:\/\//, "");
}

for (const target of targets) {
  const file = fileOf(target);
  const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const windowFile = join(dirname(file), "window.json");
  const window = existsSync(windowFile) ? (JSON.parse(readFileSync(windowFile, "utf8")) as { fromMs: number; toMs: number }) : undefined;
  const self = new Map<number, number>();
  let at = profile.startTime;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    const sinceStartMs = (at - profile.startTime) / 1000;
    if (window && (sinceStartMs < window.fromMs || sinceStartMs > window.toMs)) return;
    self.set(id, (self.get(id) ?? 0) + delta);
  });
  const fns = new Map<string, number>();
  const owners = new Map<string, number>();
  const layers = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of self) {
    const n = byId.get(id) as ProfileNode;
    const { functionName, url, lineNumber } = n.callFrame;
    total += us;
    if (functionName === "(idle)") {
      idle += us;
      continue;
    }
    const key = `${functionName || "(anonymous)"}  ${url ? `${shortUrl(url)}:${lineNumber + 1}` : ""}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
    const owner = ownerOf(url, functionName);
    owners.set(owner, (owners.get(owner) ?? 0) + us);
    const layer = layerOf(owner, functionName);
    layers.set(layer, (layers.get(layer) ?? 0) + us);
  }
  const busy = total - idle;
  const pct = (us: number) => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
  console.log(`\n## ${target} (${file})${window ? `, window ${(window.fromMs / 1000).toFixed(1)}-${(window.toMs / 1000).toFixed(1)} s after start` : ""}`);
  console.log(`wall ${(total / 1e6).toFixed(1)} s, busy ${(busy / 1e6).toFixed(1)} s (${((100 * busy) / total).toFixed(0)}%), idle ${(idle / 1e6).toFixed(1)} s`);
  console.log("\nself time by layer (% of busy):");
  for (const [layer, us] of [...layers].sort((a, b) => b[1] - a[1])) console.log(`  ${pct(us)}  ${layer}`);
  console.log("\nself time by owner (% of busy):");
  for (const [owner, us] of [...owners].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`  ${pct(us)}  ${owner}`);
  console.log(`\ntop ${top} functions by self time (% of busy):`);
  for (const [key, us] of [...fns].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(us)}  ${key}`);
}
