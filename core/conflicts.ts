/**
 * The server side of conflict resolution (docs/conflicts.md): stamps every commit with a hybrid
 * logical clock timestamp (the client's, bounded, or the server's own), resolves writes that may
 * lose with core/lww.ts inside the write transaction, and answers replays of a write id with
 * the result committed before. The gateway wraps every builder with `ConflictClock.wrap`.
 */
import { KoraError } from "./errors.ts";
import { Hlc, type Stamp, formatStamp, isStamp, parseStamp, randomNodeId } from "./hlc.ts";
import { type LostPart, type Resolution, resolveWrite, stampQuery, winnerOf, winningResolution } from "./lww.ts";
import type { BuildMutation, WriteStamps } from "./store.ts";
import { lostOps } from "./tree.ts";
import type { Change, Mutation } from "./types.ts";

export interface ConflictOptions {
  /**
   * How far ahead of the server's clock a client's timestamp may be. A later one is replaced by
   * the server's own stamp (the write counts as made when it arrived). Default 60 s.
   */
  maxDriftMs?: number;
  /**
   * How long tombstones are kept. A write stamped earlier than now minus the horizon is rejected
   * with CONFLICT: a delete it should lose to may have been forgotten. Default 30 days.
   */
  horizonMs?: number;
  /** The server clock's node id. Default: random per process. */
  node?: string;
  /** The wall clock (tests). */
  now?: () => number;
}

/** Per-commit options a client passes along with a write. */
export interface CommitOptions {
  /** The write's HLC timestamp (core/hlc.ts); absent: stamped by the server. */
  ts?: string | undefined;
  /** An id unique to this write: a retry with the same id returns the first result. */
  writeId?: string | undefined;
}

const WRITE_ID = /^[A-Za-z0-9_:.-]{1,128}$/;

export function checkCommitOptions(options: CommitOptions): void {
  if (options.ts !== undefined && !isStamp(options.ts)) {
    throw new KoraError(
      "BAD_USER_INPUT",
      `ts ${JSON.stringify(String(options.ts).slice(0, 60))} is not a timestamp; expected 15 digits of milliseconds, ':', 5 base-36 digits, ':', a node id (e.g. 001700000000000:00000:abc)`,
    );
  }
  if (options.writeId !== undefined && !WRITE_ID.test(options.writeId)) {
    throw new KoraError("BAD_USER_INPUT", "writeId must be 1-128 characters of A-Z a-z 0-9 _ : . -");
  }
}

export class ConflictClock {
  readonly hlc: Hlc;
  readonly maxDriftMs: number;
  readonly horizonMs: number;
  private readonly now: () => number;

  constructor(options: ConflictOptions = {}) {
    this.now = options.now ?? Date.now;
    this.hlc = new Hlc(options.node ?? `srv-${randomNodeId()}`, { clock: this.now });
    this.maxDriftMs = options.maxDriftMs ?? 60_000;
    this.horizonMs = options.horizonMs ?? 30 * 24 * 60 * 60 * 1000;
  }

  /** Stamps older than this are past the horizon (their tombstones may be gone). */
  horizon(): Stamp {
    return formatStamp(this.now() - this.horizonMs, 0, "");
  }

  /**
   * The builder to commit: `mutation` is a normalized mutation (resolved, then handed to
   * `toBuild`, which runs interceptors) or a server-side builder (stamped by the server as is).
   */
  wrap(mutation: Mutation | BuildMutation, toBuild: (m: Mutation) => BuildMutation, options: CommitOptions = {}): BuildMutation {
    checkCommitOptions(options);
    return async (tx) => {
      const stamps = tx.stamps;
      if (!stamps) return typeof mutation === "function" ? mutation(tx) : toBuild(mutation)(tx);
      const { writeId } = options;
      if (writeId !== undefined) {
        const prior = await stamps.prior(writeId);
        if (prior) {
          const lost = typeof mutation === "function" ? [] : await replayLost(mutation, prior, stamps);
          stamps.record({ ts: prior.ts ?? "", tombstones: new Map(), covered: new Set(), replay: prior, lost });
          return prior.mutation;
        }
      }
      if (stamps.clock !== undefined) this.hlc.receive(stamps.clock);
      const ts = this.stamp(options.ts);
      if (typeof mutation === "function") {
        const built = await mutation(tx);
        stamps.record({ ts, tombstones: new Map(), covered: new Set(), writeId });
        return built;
      }
      const resolution: Resolution =
        stamps.clock === undefined || ts > stamps.clock
          ? winningResolution(mutation)
          : resolveWrite(mutation, ts, await stamps.read(stampQuery(mutation)));
      const built = await toBuild(resolution.mutation)(tx);
      stamps.record({ ts, tombstones: resolution.tombstones, covered: resolution.covered, writeId, lost: resolution.lost });
      return built;
    };
  }

  /** The stamp a write gets: the client's when within bounds, else the server's. */
  private stamp(ts: string | undefined): Stamp {
    if (ts === undefined) return this.hlc.now();
    const parsed = parseStamp(ts);
    const now = this.now();
    if (!parsed || parsed.wall > now + this.maxDriftMs) return this.hlc.now();
    if (parsed.wall < now - this.horizonMs) {
      throw new KoraError(
        "CONFLICT",
        `the write's timestamp ${ts} is older than the tombstone horizon (${Math.round(this.horizonMs / 86_400_000)} days): it may have lost to a delete the server no longer remembers; read the current data and write again`,
      );
    }
    this.hlc.receive(ts);
    return ts;
  }
}

/**
 * The lost parts of a write answered by its earlier result: which parts lost is not stored, so
 * they are the ops missing from the committed mutation that a later stored entry beats now (an op
 * an interceptor rewrote has none). Usually the same winners as the first reply; a write that came
 * since and beats the part too is named instead, as the newer winner (its value is the one shown).
 * A part whose winner is no longer known (its tombstone trimmed) is left out. Only a replay of a
 * write that lost in part reads anything.
 */
async function replayLost(write: Mutation, prior: Change & { ts?: string | undefined }, stamps: WriteStamps): Promise<LostPart[]> {
  const ts = prior.ts;
  const missing = lostOps(write, prior.mutation);
  if (ts === undefined || missing.length === 0) return [];
  const entries = await stamps.read(stampQuery(write));
  const lost: LostPart[] = [];
  for (const { op, path } of missing) {
    const winnerTs = winnerOf(op, path, ts, entries);
    if (winnerTs !== undefined) lost.push({ path, winnerTs });
  }
  return lost;
}
