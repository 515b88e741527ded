/**
 * Hybrid logical clocks (Kulkarni et al.): a physical clock in milliseconds paired with a
 * counter, so stamps follow wall time closely yet always increase and respect causality (a clock
 * that receives a stamp moves past it). Pure: the wall clock is a parameter.
 *
 * A stamp is a string whose string order is its time order, so PostgreSQL compares stamps with
 * plain text comparison under `COLLATE "C"`:
 *
 *     WWWWWWWWWWWWWWW:CCCCC:node
 *
 * 15 decimal digits of milliseconds since the epoch, 5 base-36 digits of counter, and the node id
 * of the clock that made it. Two stamps of different nodes never tie, which breaks ties between
 * writers deterministically (docs/conflicts.md).
 */

export type Stamp = string;

export interface HlcState {
  /** Largest physical time seen (ms since the epoch). */
  wall: number;
  /** Counter within `wall`. */
  counter: number;
}

export interface ParsedStamp extends HlcState {
  node: string;
}

const MAX_COUNTER = 36 ** 5 - 1;
const NODE = /^[A-Za-z0-9_-]{1,32}$/;
const STAMP = /^(\d{15}):([0-9a-z]{5}):([A-Za-z0-9_-]{1,32})$/;

export function isStamp(value: unknown): value is Stamp {
  return typeof value === "string" && STAMP.test(value);
}

export function validNodeId(node: string): boolean {
  return NODE.test(node);
}

export function formatStamp(wall: number, counter: number, node: string): Stamp {
  return `${String(Math.max(0, Math.floor(wall))).padStart(15, "0")}:${counter.toString(36).padStart(5, "0")}:${node}`;
}

export function parseStamp(stamp: Stamp): ParsedStamp | undefined {
  const m = STAMP.exec(stamp);
  if (!m) return undefined;
  return { wall: Number(m[1]), counter: Number.parseInt(m[2] as string, 36), node: m[3] as string };
}

/** Compares two stamps: negative, zero or positive (string order is time order). */
export function compareStamps(a: Stamp, b: Stamp): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function maxStamp(a: Stamp | undefined, b: Stamp | undefined): Stamp | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return a > b ? a : b;
}

/** A random node id (12 characters of base 36). */
export function randomNodeId(): string {
  let out = "";
  const bytes = new Uint8Array(12);
  globalThis.crypto.getRandomValues(bytes);
  for (const b of bytes) out += (b % 36).toString(36);
  return out;
}

/**
 * A hybrid logical clock. `now()` stamps a local event; `receive(stamp)` merges a stamp seen from
 * elsewhere, so every later `now()` is greater than it.
 */
export class Hlc {
  readonly node: string;
  private state: HlcState;
  private readonly clock: () => number;

  constructor(node: string, options: { clock?: () => number; state?: HlcState } = {}) {
    if (!validNodeId(node)) throw new Error(`HLC node id ${JSON.stringify(node)} must match [A-Za-z0-9_-]{1,32}`);
    this.node = node;
    this.clock = options.clock ?? Date.now;
    this.state = options.state ? { ...options.state } : { wall: 0, counter: 0 };
  }

  /** The state to persist (a restarted clock resumes from it, never going backwards). */
  get current(): HlcState {
    return { ...this.state };
  }

  now(): Stamp {
    const physical = this.clock();
    if (physical > this.state.wall) this.state = { wall: physical, counter: 0 };
    else this.bump();
    return formatStamp(this.state.wall, this.state.counter, this.node);
  }

  /** Merges a received stamp; ignores malformed ones. */
  receive(stamp: Stamp): void {
    const p = parseStamp(stamp);
    if (!p) return;
    const physical = this.clock();
    const wall = Math.max(physical, this.state.wall, p.wall);
    if (wall === this.state.wall && wall === p.wall) this.state = { wall, counter: Math.max(this.state.counter, p.counter) };
    else if (wall === this.state.wall) this.state = { wall, counter: this.state.counter };
    else if (wall === p.wall) this.state = { wall, counter: p.counter };
    else this.state = { wall, counter: 0 };
  }

  private bump(): void {
    if (this.state.counter >= MAX_COUNTER) this.state = { wall: this.state.wall + 1, counter: 0 };
    else this.state = { wall: this.state.wall, counter: this.state.counter + 1 };
  }
}
