/**
 * What the bench reads from /proc (Linux): CPU time and RSS of a process and its descendants,
 * the machine's CPU counters and load average. CPU is in milliseconds, RSS in bytes.
 */
import { readFileSync, readdirSync } from "node:fs";
import { cpus, loadavg } from "node:os";

// Linux reports CPU times in clock ticks: 100 per second on every common kernel configuration.
const TICK_MS = 10;

interface Stat {
  pid: number;
  ppid: number;
  /** user + system CPU, ms */
  cpuMs: number;
  rssBytes: number;
}

function readStat(pid: number): Stat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is in parentheses and may hold spaces: split after its end.
    const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
    const ppid = Number(rest[1]);
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    const rssPages = Number(rest[21]);
    return { pid, ppid, cpuMs: (utime + stime) * TICK_MS, rssBytes: rssPages * 4096 };
  } catch {
    return undefined; // gone
  }
}

/** `pid` and every descendant alive now. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (!s) continue;
    const list = children.get(s.ppid) ?? [];
    list.push(s.pid);
    children.set(s.ppid, list);
  }
  const out: number[] = [];
  const todo = [pid];
  while (todo.length > 0) {
    const p = todo.pop() as number;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/** Total CPU ms and RSS bytes of these processes (those still alive). */
export function usage(pids: readonly number[]): { cpuMs: number; rssBytes: number; byPid: Map<number, number> } {
  let cpuMs = 0;
  let rssBytes = 0;
  const byPid = new Map<number, number>();
  for (const pid of pids) {
    const s = readStat(pid);
    if (!s) continue;
    cpuMs += s.cpuMs;
    rssBytes += s.rssBytes;
    byPid.set(pid, s.cpuMs);
  }
  return { cpuMs, rssBytes, byPid };
}

/** Peak RSS (VmHWM) of one process, bytes. */
export function peakRss(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** The whole machine's busy CPU ms (all cores, everything but idle and iowait). */
export function machineBusyMs(): number {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0] as string;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return (total - idle) * TICK_MS;
}

export function machine(): { cpu: string; cores: number; load: string } {
  const list = cpus();
  return {
    cpu: list[0]?.model.trim() ?? "unknown CPU",
    cores: list.length,
    load: loadavg()
      .map((l) => l.toFixed(2))
      .join(" "),
  };
}

/**
 * CPU used by a changing set of processes between start and `stop`: processes that appear
 * meanwhile count from 0, those that end meanwhile lose what they used after the first sample.
 */
export function cpuMeter(pids: readonly number[]): { stop(pids: readonly number[]): number } {
  const before = usage(pids).byPid;
  return {
    stop(later) {
      const after = usage(later).byPid;
      let ms = 0;
      for (const [pid, cpu] of after) ms += cpu - (before.get(pid) ?? 0);
      return ms;
    },
  };
}

/** The first two words of a process's command line, shortened (for the report). */
export function commandOf(pid: number): string {
  try {
    const words = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
    return words
      .slice(0, 3)
      .map((w) => (w.includes("/") ? (w.split("/").at(-1) as string) : w))
      .join(" ");
  } catch {
    return String(pid);
  }
}
