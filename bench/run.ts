/**
 * `npm run bench`: the black-box benchmark (bench/blackbox/main.ts: Kora as its own process,
 * separate client processes, real sockets, the raw side in the same run), then the in-process
 * figures (bench/inprocess.ts) as a second section. Writes bench/results/latest.md on a full run.
 * Never asserted in tests. See docs/bench.md.
 *
 *   --quick          short phases, 200 watchers; prints, leaves latest.md alone
 *   --only a,b       black-box phases: merges, seq, reads, fanout (implies no in-process section)
 *   --no-inprocess   skip the in-process section
 *   --profile        one server per Kora phase with `--cpu-prof` into bench/results/profiles/<phase>/
 *                    (raw side and in-process section skipped); summarize with bench/profile.ts
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runBlackBox } from "./blackbox/main.ts";
import { measureColdStart } from "./coldstart.ts";

const argv = process.argv.slice(2);
const quick = argv.includes("--quick");
const profile = argv.includes("--profile");
const onlyAt = argv.indexOf("--only");
const only = onlyAt >= 0 ? (argv[onlyAt + 1] ?? "").split(",").filter(Boolean) : undefined;
const inProcess = !argv.includes("--no-inprocess") && !only && !profile;
const db = process.env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/test";

async function inProcessSection(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "kora-bench-"));
  const file = join(dir, "inprocess.md");
  try {
    // Its own process too, so its heap and its server do not weigh on the black-box figures.
    const child = spawn(process.execPath, ["--import", "tsx", "bench/inprocess.ts", "--out", file, ...(quick ? ["--quick"] : [])], {
      stdio: ["ignore", "inherit", "inherit"],
    });
    const [code] = (await once(child, "exit")) as [number | null];
    if (code !== 0) return `(the in-process bench failed with exit code ${code})\n`;
    return readFileSync(file, "utf8");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  const blackBox = await runBlackBox({ quick, profile, only, db });
  let text = `# Latest benchmark\n\n## Black box: Kora as users run it\n\n${blackBox.markdown}\nRatio = Kora / raw; for rates higher is better, for latencies, CPU and memory lower is better. What each figure measures: docs/bench.md.\n`;
  console.log(`\n${text}`);
  if (!profile && !only) {
    console.log("cold starts");
    process.env.DATABASE_URL = db;
    const c = await measureColdStart(quick ? 1 : 3);
    const ms = (n: number | undefined) => (n === undefined ? "not measured" : `${Math.round(n).toLocaleString("en-US")} ms`);
    const cold = [
      "| cold start of `kora serve` (compiled CLI, median of runs) | Kora | target |",
      "|---|---|---|",
      `| first query answered, existing embedded data folder | ${ms(c.embeddedMs)} | < 2,000 ms |`,
      `| first query answered, server PostgreSQL | ${ms(c.postgresMs)} | < 1,000 ms |`,
      `| exit on a broken rules file | ${ms(c.configErrorMs)} | < 1,000 ms |`,
    ].join("\n");
    console.log(cold);
    text += `\n## Cold starts\n\n${cold}\n`;
  }
  if (inProcess) {
    console.log("in-process section");
    const section = await inProcessSection();
    text += `\n## In-process figures (server and clients in one process; not how users run Kora)\n\n${section}`;
  }
  if (!quick && !profile && !only) {
    mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
    writeFileSync(new URL("./results/latest.md", import.meta.url), text);
    console.log("wrote bench/results/latest.md");
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
