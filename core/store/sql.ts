/**
 * The Store over SQL, shared by server PostgreSQL and PGlite: same statements, same schema.
 * docs/storage.md explains the design; the comments here say why each step is the way it is.
 */
import { performance } from "node:perf_hooks";
import { KoraError } from "../errors.ts";
import type {
  BuildMutation,
  ChangeFeed,
  ChildSummary,
  KeysOptions,
  KeysResult,
  NodeType,
  CommitResult,
  Outbox,
  OutboxState,
  OutboxTask,
  OutboxTaskInput,
  ReadRequest,
  ReadResult,
  RestorePage,
  Snapshot,
  Store,
  StoreHealth,
  StoreStats,
  WriteContext,
  WriteRecord,
  WriteStamps,
} from "../store.ts";
import type { StampEntries, StampQuery } from "../lww.ts";
import { applyMutation, emptyTree, getNode, inflate, isEmptyMutation, isTree, restrict } from "../tree.ts";
import type { Change, DeleteTree, Leaf, Mutation, Node, Path, ReadOptions, Tree, Version } from "../types.ts";
import { CommitOutcomeUnknown, type Db, type Queryable, ident } from "./db.ts";
import { ROW_SEP, SEP, encodePath, keysBelow, parseJson, treeFromPacked, upperBound } from "./encoding.ts";
import { migrate } from "./migrations.ts";

/** Largest leaf (bytes of JSON) whose value a keys listing carries unless told otherwise. */
export const DEFAULT_VALUE_BYTES = 1024;

/** The NOTIFY channel of a schema: one per tree, at most 63 bytes. */
export function channelFor(schema: string): string {
  return `kora_changes_${schema}`.slice(0, 63);
}

export { parseJson };

/**
 * SQLSTATEs that mean the database is unreachable, restarting, overloaded or did not answer in
 * time: the operation did nothing and may be retried (UNAVAILABLE). Class 08 is "connection
 * exception"; 57P01-57P03 are shutdowns and "cannot connect now"; 57014 is a statement cancelled by
 * statement_timeout; 55P03 a lock_timeout (the version lock); 53300 too many connections; 25P03 an
 * idle-in-transaction timeout.
 */
const UNAVAILABLE_SQLSTATES = new Set(["57P01", "57P02", "57P03", "57014", "55P03", "53300", "25P03"]);

/** Node socket errors and the driver's own messages for a lost, refused or timed-out connection. */
const UNAVAILABLE_NODE_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"]);
const UNAVAILABLE_MESSAGES = [
  /Connection terminated/i,
  /timeout exceeded when trying to connect/i,
  /Query read timeout/i,
  /Connection ended/i,
  /Client has encountered a connection error/i,
  /Client was closed and is not queryable/i,
  /the database system is (starting up|shutting down|in recovery mode)/i,
  /terminating connection/i,
  /Cannot use a pool after calling end/i,
  /store worker (exited|failed)/i,
];

/** True when `error` says the store was down or slow rather than that the request was wrong. */
export function isUnavailable(error: unknown): boolean {
  if (error instanceof KoraError) return error.code === "UNAVAILABLE";
  if (error instanceof CommitOutcomeUnknown) return true;
  const e = error as { code?: unknown; message?: unknown; errors?: unknown } | undefined;
  if (!e || typeof e !== "object") return false;
  if (typeof e.code === "string") {
    if (e.code.startsWith("08") || UNAVAILABLE_SQLSTATES.has(e.code) || UNAVAILABLE_NODE_CODES.has(e.code)) return true;
  }
  // AggregateError (a refused connection tried on IPv4 and IPv6) carries its causes in `errors`.
  if (Array.isArray(e.errors) && e.errors.some(isUnavailable)) return true;
  return typeof e.message === "string" && UNAVAILABLE_MESSAGES.some((re) => re.test(e.message as string));
}

/** Maps driver errors to Kora's codes; the one place SQLSTATEs are interpreted. */
export function mapSqlError(error: unknown): unknown {
  if (error instanceof KoraError) return error;
  if (error instanceof CommitOutcomeUnknown) {
    return new KoraError(
      "UNAVAILABLE",
      "the connection to the store failed while the write was committing: it may or may not have been applied; retrying with the same writeId is safe",
      { cause: error },
    );
  }
  if (isUnavailable(error)) {
    const detail = (error as { message?: string }).message ?? String(error);
    return new KoraError("UNAVAILABLE", `the store could not be reached or did not answer in time (${detail}); nothing was written; retry later`, {
      cause: error,
    });
  }
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== "string") return error;
  if (code === "54000" || code === "54001") {
    return new KoraError("PAYLOAD_TOO_LARGE", "the mutation is too large for the database to process; split it", { cause: error });
  }
  if (code === "22P05" || code === "22021" || code === "22P02") {
    return new KoraError("BAD_USER_INPUT", "a value could not be stored (invalid text or JSON for PostgreSQL)", { cause: error });
  }
  return error; // anything else is unexpected: masked at the edge with a logged id
}

interface Item {
  build: BuildMutation;
  resolve: (r: CommitResult) => void;
  reject: (e: unknown) => void;
}

export interface SqlStoreOptions {
  db: Db;
  schema: string;
  kind: Store["kind"];
  description: string;
  /** Extra feed (e.g. LISTEN on another connection) merged with local commit notices. */
  remoteFeed?: ChangeFeed;
  /** Most mutations committed in one transaction. Default 256. */
  maxBatch?: number;
  /**
   * Start the next batch while the previous one commits (a driver with several connections).
   * Default false.
   */
  overlap?: boolean;
  /** Called after close() has drained commits, to release driver resources. */
  onClose?: () => Promise<void>;
  /** The driver's view of its connections; default: a local feed (one process). */
  health?: () => StoreHealth;
  /** The driver's connections now (Store.stats). */
  stats?: () => StoreStats;
  /**
   * Most leaves and deleted ranges per write statement; larger batches are written by several
   * statements in their transaction, with reads of untouched paths answered between them (a
   * single-connection driver: PGlite). Default: unbounded (one statement).
   */
  chunkLeaves?: number;
  /**
   * Apply batches of independent stamped merges with one set-based statement taking typed
   * array parameters (migration 8, `apply_merges_if`). Default false; both drivers turn it on
   * unless their option of the same name is false (test/store.batch.test.ts compares the two).
   */
  setBasedMerges?: boolean;
  /** Called after each batch is written in one statement: how, and how many mutations (tests, diagnostics). */
  onBatch?: (how: "set-based" | "items", mutations: number) => void;
}

/**
 * The value at `path`, given `value` read there while the database held `mutations[0..from)`,
 * once `mutations[from..to)` apply too: how a build sees its batch's earlier writes unflushed.
 */
export function overlay(value: Node | undefined, path: Path, mutations: readonly Mutation[], from: number, to: number): Node | undefined {
  let tree: Tree | undefined;
  for (let j = from; j < to; j++) {
    const part = restrict(mutations[j] as Mutation, path);
    if (!part) continue;
    tree ??= value === undefined ? emptyTree() : path.length === 0 ? (isTree(value) ? value : emptyTree()) : (inflate(path, value) as Tree);
    tree = applyMutation(tree, part);
  }
  return tree === undefined ? value : withoutEmpty(getNode(tree, path));
}

/** Objects have no rows: an empty object (a builder may merge one) reads as nothing. */
function withoutEmpty(node: Node | undefined): Node | undefined {
  if (!isTree(node)) return node;
  let out: Tree | undefined;
  let any = false;
  for (const key in node) {
    const child = node[key] as Node;
    const kept = withoutEmpty(child);
    if (kept !== child) {
      out ??= Object.assign(emptyTree(), node);
      if (kept === undefined) delete out[key];
      else out[key] = kept;
    }
    if (kept !== undefined) any = true;
  }
  return any ? (out ?? node) : undefined;
}

/** Whether any of `mutations[from..]` writes at, below or above `path`. */
function touchedSince(mutations: readonly Mutation[], from: number, path: Path): boolean {
  for (let j = from; j < mutations.length; j++) if (restrict(mutations[j] as Mutation, path)) return true;
  return false;
}

/** An optimistic batch being applied, as the next one starts from it. */
interface Chain {
  /** The counter and clock once it is committed. */
  version: Version;
  clock: string | undefined;
  /** Its mutations in order, and its write ids. */
  mutations: Mutation[];
  /** Whether its builds read the database (so the next batch's probably will too). */
  read: boolean;
  writeIds: Set<string>;
  /** Whether it was committed. */
  settled: Promise<boolean>;
}

/** Thrown inside an optimistic batch that must run again under the lock. */
const RETRY = new Error("the batch runs again under the lock");

/** Flattens a mutation into the statements' parameter arrays. */
function plan(m: Mutation) {
  const rangeLo: string[] = [];
  const rangeHi: string[] = [];
  const ancestors = new Set<string>();
  const leafPaths: string[] = [];
  const leafNodes: Node[] = [];

  // Paths are carried encoded (`enc` ends with SEP, so a child's is `enc + key + SEP`): encoding
  // each leaf's whole path, and each of its ancestors, cost a 100,000-leaf merge 100 ms.
  const walkDelete = (node: DeleteTree, enc: string) => {
    for (const key in node) {
      const mark = node[key] as true | DeleteTree;
      const child = `${enc}${key}${SEP}`;
      if (mark === true) {
        rangeLo.push(child);
        rangeHi.push(upperBound(child));
      } else walkDelete(mark, child);
    }
  };
  /** Returns whether `node` holds a leaf. */
  const walkMerge = (node: Tree, enc: string, depth: number): boolean => {
    let leaf = false;
    for (const key in node) {
      const value = node[key] as Node;
      const child = `${enc}${key}${SEP}`;
      if (isTree(value)) leaf = walkMerge(value, child, depth + 1) || leaf;
      else {
        leaf = true;
        // A leaf replaces whatever subtree was there: every row strictly below it goes. The
        // smallest child key starts at U+0020 (control characters are not keys).
        rangeLo.push(`${child} `);
        rangeHi.push(upperBound(child));
        leafPaths.push(child);
        leafNodes.push(value);
      }
    }
    // An object merged onto a leaf replaces the leaf: the rows at a leaf's proper ancestors go.
    if (leaf && depth > 0) ancestors.add(enc);
    return leaf;
  };
  const root = encodePath([]);
  walkDelete(m.delete, root);
  const deleteRanges = rangeLo.length;
  walkMerge(m.merge, root, 0);
  return { rangeLo, rangeHi, deleteRanges, ancestors: [...ancestors], leafPaths, leafNodes };
}

export async function createSqlStore(options: SqlStoreOptions): Promise<Store> {
  const { db } = options;
  const s = ident(options.schema);
  const maxBatch = options.maxBatch ?? 256;
  await migrate(db, options.schema);

  const listeners = new Set<(v: Version) => void>();
  const emit = (v: Version) => {
    for (const l of listeners) l(v);
  };
  const unsubscribeRemote = options.remoteFeed?.subscribe(emit);
  let unsubscribeKnown: (() => void) | undefined;
  const feed: ChangeFeed = {
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };

  // One statement answers every request of a read, with the version, from one snapshot. Each
  // request's rows come back packed into one row (two texts, see `treeFromPacked`): a protocol
  // row per leaf cost more, in PostgreSQL and in the driver, than the whole read otherwise.
  const READ_SQL = `
    WITH req AS (
      SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::int[], $6::bool[])
        AS r(i, exact, lo, hi, lim, rev)
    ), bounds AS (
      SELECT req.i, req.exact, cr.from_path, cr.to_path
      FROM req CROSS JOIN LATERAL ${s}.child_range(req.exact, req.lo, req.hi, req.lim, req.rev) cr
    )
    SELECT -1 AS i, version::text AS k, NULL AS v FROM ${s}.meta WHERE id = 1
    UNION ALL
    SELECT b.i, p.k, p.v FROM bounds b
      CROSS JOIN LATERAL (
        SELECT string_agg(n.path, chr(2)) AS k, string_agg(n.value::text, ',') AS v
        FROM (
          SELECT path, value FROM ${s}.nodes WHERE path = b.exact
          UNION ALL
          SELECT path, value FROM ${s}.nodes
            WHERE path >= b.from_path AND path < b.to_path AND path <> b.exact
        ) n
      ) p`;

  // The common case, one request without `limit` (no child_range walk), as a plain range scan:
  // the general statement's CTE and LATERAL joins cost PostgreSQL as much as the scan itself.
  const READ_ONE_SQL = `
    SELECT (SELECT version::text FROM ${s}.meta WHERE id = 1) AS version,
      string_agg(n.path, chr(2)) AS k, string_agg(n.value::text, ',') AS v
    FROM (
      SELECT path, value FROM ${s}.nodes WHERE path = $1
      UNION ALL
      SELECT path, value FROM ${s}.nodes WHERE path >= $2 AND path < $3 AND path <> $1
    ) n`;

  // Prepared once per connection (server PostgreSQL): planning these statements cost about a
  // third of running them.
  const READ_NAME = `kora_read_${options.schema}`;
  const READ_ONE_NAME = `kora_read1_${options.schema}`;

  function readParams(requests: readonly ReadRequest[]) {
    const ids: number[] = [];
    const exact: string[] = [];
    const lo: string[] = [];
    const hi: string[] = [];
    const lim: (number | null)[] = [];
    const rev: boolean[] = [];
    requests.forEach((r, i) => {
      const enc = encodePath(r.path);
      const o: ReadOptions = r.options ?? {};
      ids.push(i);
      exact.push(enc);
      lo.push(enc + (o.min ?? ""));
      hi.push(o.max !== undefined ? enc + o.max : upperBound(enc));
      lim.push(o.limit ?? null);
      rev.push(o.reverse ?? false);
    });
    return [ids, exact, lo, hi, lim, rev];
  }

  function assemble(requests: readonly ReadRequest[], rows: { i: number; k: string | null; v: string | null }[]): ReadResult {
    let version = 0;
    const values: (Node | undefined)[] = requests.map(() => undefined);
    for (const row of rows) {
      const i = Number(row.i);
      if (i < 0) version = Number(row.k);
      else if (row.k !== null && row.v !== null) {
        values[i] = treeFromPacked(row.k, row.v, encodePath((requests[i] as ReadRequest).path).length);
      }
    }
    return { version, values };
  }

  async function readWith(q: Queryable, requests: readonly ReadRequest[]): Promise<ReadResult> {
    if (requests.length === 0) {
      const rows = await q.query<{ version: string }>(`SELECT version::text FROM ${s}.meta WHERE id = 1`);
      return { version: Number(rows[0]?.version ?? 0), values: [] };
    }
    const only = requests.length === 1 ? (requests[0] as ReadRequest) : undefined;
    if (only && only.options?.limit === undefined) {
      const [, exact, lo, hi] = readParams(requests) as string[][];
      const enc = exact?.[0] as string;
      const rows = await q.query<{ version: string; k: string | null; v: string | null }>(
        READ_ONE_SQL,
        [enc, lo?.[0], hi?.[0]],
        READ_ONE_NAME,
      );
      const row = rows[0];
      const value = row?.k != null && row.v != null ? treeFromPacked(row.k, row.v, enc.length) : undefined;
      return { version: Number(row?.version ?? 0), values: [value] };
    }
    const rows = await q.query<{ i: number; k: string | null; v: string | null }>(READ_SQL, readParams(requests), READ_NAME);
    return assemble(requests, rows);
  }

  // The keys-only listing (migration 7's child_keys) with the version and what is at the path,
  // from one snapshot; the children come back packed in one row, as reads do.
  const KEYS_SQL = `
    SELECT (SELECT version::text FROM ${s}.meta WHERE id = 1) AS version,
      (SELECT jsonb_typeof(value) FROM ${s}.nodes WHERE path = $1) AS here,
      EXISTS (SELECT 1 FROM ${s}.nodes WHERE path > $1 AND path < $3) AS below,
      c.n, c.k, c.t, c.v, c.b
    FROM (
      SELECT count(*)::int AS n,
        string_agg(x.k, chr(2) ORDER BY x.o) AS k,
        string_agg(x.t, ',' ORDER BY x.o) AS t,
        string_agg(coalesce(x.v, 'null'), ',' ORDER BY x.o) AS v,
        string_agg(coalesce(x.b::text, ''), ',' ORDER BY x.o) AS b
      FROM ${s}.child_keys($1, $2, $3, $4, $5) WITH ORDINALITY AS x(k, t, v, b, o)
    ) c`;
  const KEYS_NAME = `kora_keys_${options.schema}`;

  function keysParams(path: Path, o: KeysOptions): unknown[] {
    const enc = encodePath(path);
    // Rows strictly below the path start at enc + " " (U+0020, the smallest character a key may
    // start with); after a key, past that key's whole subtree (see encoding.ts).
    const lo = o.after === undefined ? `${enc} ` : upperBound(`${enc}${o.after}${SEP}`);
    // One more than asked: whether more follow, without a second statement.
    return [enc, lo, upperBound(enc), o.limit + 1, o.valueBytes ?? DEFAULT_VALUE_BYTES];
  }

  async function keysWith(q: Queryable, path: Path, o: KeysOptions): Promise<KeysResult> {
    const rows = await q.query<{
      version: string;
      here: string | null;
      below: boolean;
      n: number;
      k: string | null;
      t: string | null;
      v: string | null;
      b: string | null;
    }>(KEYS_SQL, keysParams(path, o), KEYS_NAME);
    const row = rows[0];
    const version = Number(row?.version ?? 0);
    const node: NodeType | undefined = row?.here ? (row.here as NodeType) : row?.below ? "object" : undefined;
    const children: ChildSummary[] = [];
    if (row && node === "object" && Number(row.n) > 0 && row.k !== null && row.t !== null && row.v !== null && row.b !== null) {
      const keys = row.k.split(ROW_SEP);
      const types = row.t.split(",");
      const values = parseJson<(Leaf | null)[]>(`[${row.v}]`);
      const bytes = row.b.split(",");
      for (let i = 0; i < keys.length; i++) {
        const type = types[i] as NodeType;
        const child: ChildSummary = { key: keys[i] as string, type };
        if (type !== "object") {
          child.bytes = Number(bytes[i]);
          // null is never a leaf (outside arrays): here it marks a value left out for its size.
          const value = values[i];
          if (value !== null && value !== undefined) child.value = value;
        }
        children.push(child);
      }
    }
    const more = children.length > o.limit;
    if (more) children.length = o.limit;
    return { version, node, children, more };
  }

  async function keysNow(path: Path, o: KeysOptions): Promise<KeysResult> {
    if (!Number.isInteger(o.limit) || o.limit < 1) throw new RangeError(`keys: limit ${o.limit} must be an integer >= 1`);
    return gated([{ path }], (q) => keysWith(q, path, o));
  }

  /** One mutation, planned as the parameters `apply_batch` takes (migration 3). */
  interface Planned {
    lo: string[];
    hi: string[];
    p: string[];
    v: Node[];
    /** Absent for a stamped write that commits nothing but tombstones (migration 4). */
    version?: Version | undefined;
    m: Mutation;
    /** Stamped writes (migration 4): stamp, write id, tombstone inputs. */
    ts?: string;
    w?: string | undefined;
    td?: string[];
    th?: string[];
    ta?: string[];
    tp?: string[];
    tc?: string[];
    tw?: string[];
  }

  /**
   * Planned items that are server-stamped merges with no delete part and no resolution
   * tombstones: the only kind `apply_merges_if` takes. Their leaves and ancestors, for
   * `setBased`.
   */
  const simpleMerges = new WeakMap<Planned, { leaves: string[]; ancestors: string[] }>();

  function planned(m: Mutation, version: Version | undefined, rec?: WriteRecord): Planned {
    const p = plan(m);
    const stamped: Partial<Planned> = {};
    const simple = rec !== undefined && version !== undefined && p.deleteRanges === 0 && rec.tombstones.size === 0;
    if (rec) {
      // Tombstones are computed from the rows before this mutation's deletes (apply_batch).
      const td: string[] = [];
      const th: string[] = [];
      for (let i = 0; i < p.deleteRanges; i++) {
        const lo = p.rangeLo[i] as string;
        if (rec.covered.has(lo)) continue;
        td.push(lo);
        th.push(p.rangeHi[i] as string);
      }
      const tombs = [...rec.tombstones];
      Object.assign(stamped, {
        ts: rec.ts,
        w: rec.writeId,
        td,
        th,
        ta: [...p.ancestors],
        tp: tombs.map(([k]) => k),
        tc: tombs.map(([, t]) => t.cover),
        tw: tombs.map(([, t]) => t.shadow),
      });
    }
    for (const a of p.ancestors) {
      // [enc(A), enc(A) + U+0001) holds exactly the row at A: U+0001 is the smallest character
      // PostgreSQL text can hold.
      p.rangeLo.push(a);
      p.rangeHi.push(`${a}\u0001`);
    }
    const item: Planned = { lo: p.rangeLo, hi: p.rangeHi, p: p.leafPaths, v: p.leafNodes, version, m, ...stamped };
    if (simple) simpleMerges.set(item, { leaves: p.leafPaths, ancestors: p.ancestors });
    return item;
  }

  /**
   * The parameters of `apply_merges_if` for a batch it can take, or undefined. Applied one
   * after another (`apply_batch`), each item's tombstones are computed before its deletes and
   * its upserts come after them; set-based, every delete and tombstone sees the rows before the
   * batch and every upsert comes after every delete. The two differ only where one item's
   * rows meet another's: a leaf set twice; a leaf of item i inside a range item j deletes (the
   * subtree below j's leaf, or the row at one of j's ancestors); an ancestor of item j inside
   * the subtree below item i's leaf (item i would delete it untombstoned first). Each puts one
   * item's leaf at another's leaf or ancestor path: a leaf strictly below j's leaf has that
   * leaf among its own ancestors, and an ancestor of j strictly below i's leaf has i's leaf
   * among j's ancestors (every object on the way to a merged leaf is among its item's
   * ancestors). So a map of leaves and a look-up of every ancestor decide it. Items sharing
   * ancestors (the usual case) are fine: each deletes and tombstones the same rows.
   * test/store.batch.test.ts checks the equivalence on random batches.
   */
  function setBased(items: readonly Planned[], newVersion: Version | null): unknown[] | undefined {
    if (!options.setBasedMerges || newVersion === null) return undefined;
    const owner = new Map<string, number>();
    for (let i = 0; i < items.length; i++) {
      const simple = simpleMerges.get(items[i] as Planned);
      if (!simple) return undefined;
      for (const leaf of simple.leaves) {
        if (owner.has(leaf)) return undefined;
        owner.set(leaf, i);
      }
    }
    for (let i = 0; i < items.length; i++) {
      for (const a of (simpleMerges.get(items[i] as Planned) as { ancestors: string[] }).ancestors) {
        const o = owner.get(a);
        if (o !== undefined && o !== i) return undefined;
      }
    }
    const lo: string[] = [];
    const hi: string[] = [];
    const ta: string[] = [];
    const p: string[] = [];
    const v: string[] = [];
    const pts: string[] = [];
    const cv: Version[] = [];
    const cm: string[] = [];
    const cw: (string | null)[] = [];
    const cts: string[] = [];
    let newest = "";
    for (const it of items) {
      const ts = it.ts as string;
      for (let k = 0; k < it.lo.length; k++) {
        lo.push(it.lo[k] as string);
        hi.push(it.hi[k] as string);
      }
      for (const a of it.ta ?? []) ta.push(a);
      for (let k = 0; k < it.p.length; k++) {
        p.push(it.p[k] as string);
        v.push(JSON.stringify(it.v[k]));
        pts.push(ts);
      }
      cv.push(it.version as Version);
      cm.push(JSON.stringify(it.m));
      cw.push(it.w ?? null);
      cts.push(ts);
      if (ts > newest) newest = ts;
    }
    return [newVersion, newest, lo, hi, ta, p, v, pts, cv, cm, cw, cts];
  }

  /**
   * Writes planned mutations in order, with the counter bump and NOTIFY when `newVersion` is
   * given, in ONE round trip: deletes (the delete tree's ranges, the subtrees merged leaves
   * replace, leaves at ancestors of merged leaves), then upserts, then the change row, per
   * mutation.
   */
  async function flush(tx: Queryable, items: Planned[], newVersion: Version | null): Promise<void> {
    if (items.length === 0 && newVersion === null) return;
    await tx.query(`SELECT ${s}.apply_batch($1::jsonb, $2::bigint, $3::text)`, [
      JSON.stringify(items),
      newVersion,
      channel,
    ]);
  }

  /**
   * Splits planned items into the statements of a chunked write (`chunkLeaves`), each writing
   * at most about `budget` leaves and ranges, with the same effects in the same order as one
   * `apply_batch` of them all: per item, its tombstones (computed from the rows before its
   * deletes), its deletes, its upserts, then its change row. Parts other than the last carry no
   * version and no mutation, so they write no change row (and the mutation is sent once).
   */
  function chunked(items: Planned[], budget: number): Planned[][] {
    const out: Planned[][] = [];
    let current: Planned[] = [];
    let size = 0;
    const add = (part: Planned, cost: number) => {
      if (size > 0 && size + cost > budget) {
        out.push(current);
        current = [];
        size = 0;
      }
      current.push(part);
      size += cost;
    };
    const none = { lo: [], hi: [], p: [], v: [] };
    for (const it of items) {
      const cost = it.lo.length + it.p.length;
      if (cost <= budget) {
        add(it, cost);
        continue;
      }
      const { version: _v, m: _m, lo, hi, p, v, ...rest } = it;
      const bare = { ...rest, m: undefined as unknown as Mutation, version: undefined };
      if (it.ts !== undefined) add({ ...bare, ...none }, 1);
      // (Only the first part computes tombstones; the others write rows with the stamp.)
      const plain = { ...bare, td: [], th: [], ta: [], tp: [], tc: [], tw: [] };
      for (let i = 0; i < lo.length; i += budget) {
        add(
          {
            ...plain,
            ...none,
            ts: undefined,
            lo: lo.slice(i, i + budget),
            hi: hi.slice(i, i + budget),
          },
          Math.min(budget, lo.length - i),
        );
      }
      for (let i = 0; i < p.length; i += budget) {
        add(
          { ...plain, ...none, p: p.slice(i, i + budget), v: v.slice(i, i + budget) },
          Math.min(budget, p.length - i),
        );
      }
      add({ ...none, version: it.version, m: it.m, ts: it.ts, w: it.w }, 1);
    }
    if (current.length > 0) out.push(current);
    return out;
  }

  /**
   * A chunked write in progress: reads of paths none of its mutations touch are answered inside
   * its transaction between its statements. They see what is committed there (this write is
   * the only writer, and it does not touch them) and the version before it: the counter moves
   * only in its last statement, and no read is let in after that one is sent.
   */
  interface Window {
    mutations: readonly Mutation[];
    waiting: {
      /** The paths the read covers (their subtrees): what decides whether it may go between. */
      requests: readonly ReadRequest[];
      /** Runs the read on a connection: the transaction's or, once it ended, the database's. */
      run: (q: Queryable) => Promise<unknown>;
      resolve: (r: unknown) => void;
      reject: (e: unknown) => void;
    }[];
  }
  let window: Window | undefined;

  // A single-connection driver (PGlite, `chunkLeaves` set) runs statements outside a transaction
  // only once it ends: reads arriving meanwhile wait here rather than in the driver, so that a
  // chunked write can still take those it does not touch between its statements.
  const single = options.chunkLeaves !== undefined;
  let txOpen = false;
  let held: Window["waiting"] = [];
  const release = () => {
    for (const h of held.splice(0)) h.run(db).then(h.resolve, h.reject);
  };
  const disjoint = (w: Window, requests: readonly ReadRequest[]) =>
    requests.length > 0 && !requests.some((r) => touchedSince(w.mutations, 0, r.path));
  const transaction: Db["transaction"] = async (fn, first) => {
    if (!single) return db.transaction(fn, first);
    txOpen = true;
    try {
      return await db.transaction(fn, first);
    } finally {
      txOpen = false;
      release();
    }
  };

  /** Writes `items` as `flush` does, in statements of at most `chunkLeaves` when it is set. */
  async function write(
    tx: Queryable,
    items: Planned[],
    newVersion: Version | null,
    mutations: readonly Mutation[],
  ): Promise<void> {
    const budget = options.chunkLeaves;
    const parts = budget === undefined ? [items] : chunked(items, budget);
    if (parts.length <= 1) return flush(tx, items, newVersion);
    const w: Window = { mutations, waiting: [] };
    const drain = async () => {
      for (let next = w.waiting.shift(); next; next = w.waiting.shift()) {
        try {
          next.resolve(await next.run(tx));
        } catch (error) {
          next.reject(error);
        }
      }
    };
    window = w;
    const stay: Window["waiting"] = [];
    for (const h of held) (disjoint(w, h.requests) ? w.waiting : stay).push(h);
    held = stay;
    try {
      for (let i = 0; i < parts.length - 1; i++) {
        await flush(tx, parts[i] as Planned[], null);
        await drain();
      }
      window = undefined;
      await drain();
    } finally {
      if (window === w) window = undefined;
      // After a failure the transaction is over: reads still waiting go once it has ended.
      held.push(...w.waiting.splice(0));
      if (!txOpen) release();
    }
    await flush(tx, parts[parts.length - 1] as Planned[], newVersion);
  }

  /**
   * A read of the subtrees of `requests`: between a chunked write's statements when it touches
   * none of its paths, after its transaction when it does.
   */
  function gated<T>(requests: readonly ReadRequest[], run: (q: Queryable) => Promise<T>): Promise<T> {
    const w = window;
    const wait = (queue: Window["waiting"]) =>
      new Promise<T>((resolve, reject) => queue.push({ requests, run, resolve: resolve as (r: unknown) => void, reject }));
    if (w && disjoint(w, requests)) return wait(w.waiting);
    if (txOpen) return wait(held);
    return run(db);
  }

  function readNow(requests: readonly ReadRequest[]): Promise<ReadResult> {
    return gated(requests, (q) => readWith(q, requests));
  }

  /** Stamps and tombstones for conflict resolution (core/lww.ts `StampQuery`). */
  async function readStamps(q: Queryable, query: StampQuery): Promise<StampEntries> {
    const lo = query.subtrees.map(encodePath);
    const hi = lo.map(upperBound);
    const exact = query.exact.map(encodePath);
    const mlo = query.maxUnder.map(encodePath);
    const mhi = mlo.map(upperBound);
    const rows = await q.query<{ k: string; path: string; a: string; b: string | null }>(
      `SELECT 'l' AS k, n.path, coalesce(n.ts, '') AS a, NULL AS b
         FROM unnest($1::text[], $2::text[]) AS r(lo, hi) JOIN ${s}.nodes n ON n.path >= r.lo AND n.path < r.hi
       UNION ALL
       SELECT 't', t.path, t.cover, t.shadow
         FROM unnest($1::text[], $2::text[]) AS r(lo, hi) JOIN ${s}.tombstones t ON t.path >= r.lo AND t.path < r.hi
       UNION ALL
       SELECT 'l', n.path, coalesce(n.ts, ''), NULL FROM ${s}.nodes n WHERE n.path = ANY($3::text[])
       UNION ALL
       SELECT 't', t.path, t.cover, t.shadow FROM ${s}.tombstones t WHERE t.path = ANY($3::text[])
       UNION ALL
       SELECT 'm', r.lo, max(coalesce(n.ts, '') COLLATE "C"), NULL
         FROM unnest($4::text[], $5::text[]) AS r(lo, hi) JOIN ${s}.nodes n ON n.path >= r.lo AND n.path < r.hi
         GROUP BY r.lo`,
      [lo, hi, exact, mlo, mhi],
    );
    const out: StampEntries = { leaves: new Map(), tombstones: new Map(), maxUnder: new Map() };
    for (const r of rows) {
      if (r.k === "l") out.leaves.set(r.path, r.a);
      else if (r.k === "t") out.tombstones.set(r.path, { cover: r.a, shadow: r.b ?? "" });
      else out.maxUnder.set(r.path, r.a);
    }
    return out;
  }

  async function priorWrite(q: Queryable, writeId: string) {
    const rows = await q.query<{ v: string; m: string; ts: string | null }>(
      `SELECT version::text AS v, mutation::text AS m, ts FROM ${s}.changes WHERE write_id = $1`,
      [writeId],
    );
    const r = rows[0];
    return r ? { version: Number(r.v), mutation: parseJson<Mutation>(r.m), ts: r.ts ?? undefined } : undefined;
  }

  /** Earlier writes with these ids, and the counter of the same snapshot. */
  async function priorWrites(q: Queryable, writeIds: string[]) {
    const rows = await q.query<{ at: string; w: string | null; v: string; m: string; ts: string | null }>(
      `SELECT meta.version::text AS at, c.write_id AS w, c.version::text AS v, c.mutation::text AS m, c.ts
         FROM ${s}.meta LEFT JOIN ${s}.changes c ON c.write_id = ANY($1::text[]) WHERE meta.id = 1`,
      [writeIds],
    );
    const found = new Map<string, { version: Version; mutation: Mutation; ts: string | undefined }>();
    for (const r of rows) if (r.w !== null) found.set(r.w, { version: Number(r.v), mutation: parseJson<Mutation>(r.m), ts: r.ts ?? undefined });
    return { version: Number(rows[0]?.at ?? 0), values: writeIds.map((w) => found.get(w)) };
  }

  async function insertTasks(tx: Queryable, version: Version, tasks: OutboxTaskInput[]): Promise<void> {
    await tx.query(
      `INSERT INTO ${s}.effects (version, interceptor, payload, max_attempts)
         SELECT $1, r.i, r.p::jsonb, r.m FROM unnest($2::text[], $3::text[], $4::int[]) AS r(i, p, m)`,
      [version, tasks.map((t) => t.interceptor), tasks.map((t) => JSON.stringify(t.payload ?? null)), tasks.map((t) => t.maxAttempts)],
    );
  }

  type TaskRow = {
    id: string; version: string; interceptor: string; payload: string; state: OutboxState; attempts: number;
    max_attempts: number; next_at: string; last_error: string | null; created_at: string; done_at: string | null;
  };
  const TASK_COLUMNS = `id::text, version::text, interceptor, payload::text, state, attempts, max_attempts,
    next_at::text, last_error, created_at::text, done_at::text`;
  const toTask = (r: TaskRow): OutboxTask => ({
    id: Number(r.id),
    version: Number(r.version),
    interceptor: r.interceptor,
    payload: parseJson(r.payload),
    state: r.state,
    attempts: Number(r.attempts),
    maxAttempts: Number(r.max_attempts),
    nextAt: new Date(r.next_at),
    lastError: r.last_error,
    createdAt: new Date(r.created_at),
    doneAt: r.done_at === null ? null : new Date(r.done_at),
  });
  const outbox: Outbox = {
    async claim(limit, leaseMs) {
      const rows = await db.query<TaskRow>(
        `UPDATE ${s}.effects e SET state = 'running', attempts = e.attempts + 1,
             next_at = now() + make_interval(secs => $2::double precision / 1000)
           WHERE e.id IN (SELECT id FROM ${s}.effects WHERE state IN ('pending', 'running') AND next_at <= now()
                          ORDER BY next_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)
           RETURNING ${TASK_COLUMNS}`,
        [limit, leaseMs],
      );
      return rows.map(toTask);
    },
    async complete(id) {
      await db.query(`UPDATE ${s}.effects SET state = 'done', done_at = now(), last_error = NULL WHERE id = $1`, [id]);
    },
    async fail(id, error, retryAt) {
      await db.query(
        `UPDATE ${s}.effects SET state = CASE WHEN $3::timestamptz IS NULL THEN 'failed' ELSE 'pending' END,
           next_at = coalesce($3::timestamptz, next_at), last_error = $2 WHERE id = $1`,
        [id, error.slice(0, 2000), retryAt === null ? null : retryAt.toISOString()],
      );
    },
    async list(options = {}) {
      const rows = await db.query<TaskRow>(
        `SELECT ${TASK_COLUMNS} FROM ${s}.effects WHERE ($1::text IS NULL OR state = $1) ORDER BY id DESC LIMIT $2`,
        [options.state ?? null, options.limit ?? 100],
      );
      return rows.map(toTask);
    },
    async retry(id) {
      // One more attempt than it has had, due now; the runner's next poll takes it.
      const rows = await db.query<{ id: string }>(
        `UPDATE ${s}.effects SET state = 'pending', next_at = now(), max_attempts = attempts + 1
           WHERE id = $1 AND state = 'failed' RETURNING id::text`,
        [id],
      );
      return rows.length > 0;
    },
    async nextDue() {
      const rows = await db.query<{ t: string | null }>(
        `SELECT min(next_at)::text AS t FROM ${s}.effects WHERE state IN ('pending', 'running')`,
      );
      return rows[0]?.t == null ? undefined : new Date(rows[0].t);
    },
  };

  // Group commit: calls arriving while a transaction runs wait and go together in the next one.
  // With `overlap`, the next batch starts once the current one has sent its writes and waits for
  // its COMMIT: its BEGIN and lock request then wait in the database instead of behind a round
  // trip here, and it takes the lock the moment the COMMIT releases it. Versions stay in lock
  // order. At most two batches are in flight: one building, one committing.
  const queue: Item[] = [];
  const inFlight = new Set<Promise<void>>();
  let building = false;
  let closed = false;
  let closing: Promise<void> | undefined;
  const channel = channelFor(options.schema);
  const maxInFlight = options.overlap ? 2 : 1;
  // The counter and clock as this process last committed them, while it believes no other
  // process has committed since (a notice of a later version says otherwise). A batch starting
  // alone then runs optimistically: no transaction while it builds, reads outside one checking
  // the version, and one statement that applies it only if the counter and clock are unchanged
  // (else it runs again under the lock).
  let known: { version: Version; clock: string | undefined } | undefined;
  unsubscribeKnown = options.remoteFeed?.subscribe((v) => {
    if (known && v > known.version) known = undefined;
  });

  // After an optimistic batch had to run again, batches take the lock (overlapping) for a while.
  let lockedUntil = 0;

  // An optimistic batch that has been built and is being applied: the next batch may start from
  // the counter and clock it will leave, seeing its mutations in memory, and is applied after it.
  let tail: Chain | undefined;

  function kick(): void {
    if (building || queue.length === 0 || inFlight.size >= maxInFlight) return;
    const preferOptimistic = performance.now() >= lockedUntil;
    let chain: Chain | undefined;
    if (preferOptimistic && inFlight.size > 0) {
      // Optimistic batches follow one another: wait for one that is still building (or locked).
      // Only batches that read overlap: reads are what the overlap hides, and without them one
      // larger batch costs the database less than two smaller ones.
      if (!tail?.read) return;
      chain = tail;
    }
    const optimistic = preferOptimistic && (chain !== undefined || known !== undefined);
    building = true;
    let built = false;
    const onBuilt = () => {
      if (built) return;
      built = true;
      building = false;
      kick();
    };
    const batch = runBatch(queue.splice(0, maxBatch), onBuilt, optimistic, chain).finally(() => {
      inFlight.delete(batch);
      onBuilt();
      kick();
    });
    inFlight.add(batch);
  }

  async function runBatch(items: Item[], onBuilt: () => void = () => {}, optimistic = false, chain?: Chain): Promise<void> {
    const outcomes: ({ ok: true; result: CommitResult } | { ok: false; error: unknown })[] = [];
    let last: { version: Version; clock: string | undefined } = { version: 0, clock: undefined };
    // Once the transaction is over, a build still running (its batch failed) must not touch the
    // connection, which may already serve another transaction.
    let open = true;
    try {
      const from = chain ?? known;
      if (optimistic && from) {
        let settle: (applied: boolean) => void = () => {};
        const settled = new Promise<boolean>((resolve) => {
          settle = resolve;
        });
        try {
          last = await batchIn(undefined, { version: from.version, clock: from.clock }, items, outcomes, () => open, chain, (built) => {
            tail = { ...built, settled };
            onBuilt();
          });
          settle(true);
        } catch (error) {
          settle(false);
          throw error;
        } finally {
          open = false;
          if (tail?.settled === settled) tail = undefined;
          onBuilt();
        }
      } else {
        // Lock the counter first, in the BEGIN's round trip: writers everywhere serialize here,
        // so version N+1 can never become visible before version N (docs/storage.md).
        await transaction(async (tx, rows) => {
          const row = rows[0] as { version: string; clock: string | null } | undefined;
          try {
            last = await batchIn(tx, { version: Number(row?.version ?? 0), clock: row?.clock ?? undefined }, items, outcomes, () => open);
          } finally {
            open = false;
            onBuilt();
          }
        }, `SELECT version::text, clock FROM ${s}.meta WHERE id = 1 FOR UPDATE`);
      }
    } catch (error) {
      known = undefined;
      if (error === RETRY) {
        lockedUntil = performance.now() + 1000;
        // Another process committed since (or the batch needs the lock): again, under the lock.
        return runBatch(items, onBuilt, false);
      }
      if (items.length > 1 && !isUnavailable(error)) {
        // A statement failed and took the transaction with it: run each mutation on its own, so
        // only the one at fault fails (their builds run again, in fresh transactions). This
        // costs nothing in the common case and replaces a SAVEPOINT per mutation (a round trip
        // each). Never after an unknown COMMIT outcome (the batch may have committed), nor when
        // the store is down or slow (each would wait for its own timeout).
        for (const item of items) await runBatch([item]);
        return;
      }
      for (const item of items) item.reject(mapSqlError(error));
      return;
    }
    // Only a batch alone in flight knows the latest counter: one overlapping it commits after it.
    if (inFlight.size <= 1) known = last;
    emit(last.version);
    items.forEach((item, i) => {
      const o = outcomes[i];
      if (!o) item.reject(new Error("commit outcome missing"));
      else if (o.ok) item.resolve(o.result);
      else item.reject(mapSqlError(o.error));
    });
  }

  /**
   * Runs a batch's builds and writes: inside its transaction `tx` (holding the counter lock), or
   * optimistically (`tx` undefined) from the counter and clock in `from`. Returns the counter and
   * clock after it. Throws RETRY when an optimistic batch must run under the lock instead.
   */
  async function batchIn(
    tx: Queryable | undefined,
    from: { version: Version; clock: string | undefined },
    items: Item[],
    outcomes: ({ ok: true; result: CommitResult } | { ok: false; error: unknown })[],
    isOpen: () => boolean,
    chain?: Chain,
    onBuilt?: (built: Omit<Chain, "settled">) => void,
  ): Promise<{ version: Version; clock: string | undefined }> {
    let { version, clock } = from;
    const start = version;
    // A chained batch starts from the counter the batch before it will leave; reads may come
    // from before that batch is committed (its mutations are then overlaid) or after.
    const prefixLen = chain?.mutations.length ?? 0;
    /** The epoch (see `applied`) of data read at `readVersion`, outside a transaction. */
    const epochOf = (readVersion: Version): number => {
      if (readVersion === start) return prefixLen;
      if (prefixLen > 0 && readVersion === start - prefixLen) return 0;
      return retry();
    };
    const startClock = clock;
    const q: Queryable = tx ?? db;
    let aborted = false;
    /** Optimistic only: what the build needs cannot be had without the lock (or changed). */
    const retry = (): never => {
      aborted = true;
      throw RETRY;
    };

    // Every statement of the batch goes through `serial`, in call order, so a read knows exactly
    // which of the batch's writes the database already holds when it runs.
    let queueTail: Promise<unknown> = Promise.resolve();
    const serial = <T>(fn: () => Promise<T>): Promise<T> => {
      const run = queueTail.then(() => (isOpen() ? fn() : Promise.reject(new Error("the write transaction is over"))));
      queueTail = run.catch(() => {});
      return run;
    };
    // Writes wait in `pending` and go in one round trip at the end. `applied` holds the batch's
    // mutations in commit order; the first `flushedCount` of them are in the database.
    let pending: Planned[] = [];
    const applied: Mutation[] = chain ? [...chain.mutations] : [];
    const writeIds = new Set<string>(chain?.writeIds);
    const ownWriteIds = new Set<string>();
    let flushedCount = 0;
    const flushPending = () =>
      serial(async () => {
        if (pending.length === 0) return;
        const batch = pending;
        pending = [];
        flushedCount = applied.length;
        await flush(q, batch, null);
      });

    // The reads of all builds waiting at the same moment go in one statement.
    type Waiting<R, T> = { req: R; resolve: (v: T) => void; reject: (e: unknown) => void };
    const loader = <R, T>(load: (reqs: R[]) => Promise<T[]>) => {
      let queue: Waiting<R, T>[] = [];
      const run = () => {
        const batch = queue;
        queue = [];
        serial(() => load(batch.map((w) => w.req))).then(
          (values) => {
            batch.forEach((w, i) => {
              w.resolve(values[i] as T);
            });
          },
          (error: unknown) => {
            for (const w of batch) w.reject(error);
          },
        );
      };
      return (req: R) =>
        new Promise<T>((resolve, reject) => {
          if (queue.length === 0) setImmediate(run);
          queue.push({ req, resolve, reject });
        });
    };
    let didRead = false;
    const readCommitted = loader<ReadRequest, { value: Node | undefined; epoch: number }>(async (reqs) => {
      didRead = true;
      let epoch = flushedCount;
      const read = await readWith(q, reqs);
      // Outside a transaction, the data must be that of the counter the batch started from.
      if (!tx) epoch = epochOf(read.version);
      return read.values.map((value) => ({ value, epoch }));
    });
    const readPrior = loader<string, Awaited<ReturnType<typeof priorWrite>>>(async (ids) => {
      const found = await priorWrites(q, ids);
      if (!tx) epochOf(found.version); // (the ids of a batch before are in `writeIds`)
      return found.values;
    });

    // Builds run concurrently (their reads share round trips), then are taken in order. A build
    // sees committed data plus the batch's mutations taken before its read returned, overlaid in
    // memory (no flush). At its turn, a build that saw something a mutation taken since then
    // writes (or whose clock or write id it changes) runs again, alone, seeing all of them: the
    // outcome is that of running the builds one after the other. Stamp reads, write-id lookups
    // after a write of the batch with that id, and reads with options wait for the build's turn
    // and flush the batch's writes first.
    interface Run {
      exclusive: boolean;
      /** Reads answered with `applied` up to `upTo`: still valid while later mutations miss `path`. */
      reads: { path: Path; upTo: number }[];
      priorIds: string[];
      stampsRead: boolean;
      tasks: OutboxTaskInput[];
      rec: WriteRecord | undefined;
      result: Promise<{ ok: true; mutation: Mutation } | { ok: false; error: unknown }>;
    }
    const turns: (() => void)[] = [];
    const turnOf = items.map(
      (_x, i) =>
        new Promise<void>((resolve) => {
          turns[i] = resolve;
        }),
    );
    const startRun = (item: Item, i: number, exclusive: boolean): Run => {
      const run: Omit<Run, "result"> = { exclusive, reads: [], priorIds: [], stampsRead: false, tasks: [], rec: undefined };
      const inTurn = async () => {
        if (!tx) retry();
        await turnOf[i];
        if (aborted) throw RETRY;
        run.exclusive = true;
        await flushPending();
      };
      const read = async (path: Path, readOptions?: ReadOptions) => {
        if (readOptions && Object.keys(readOptions).length > 0) {
          // A selection (min, max, limit) cannot be overlaid in memory: read it flushed.
          await inTurn();
          const { values } = await serial(() => readWith(q, [{ path, options: readOptions }]));
          run.reads.push({ path, upTo: applied.length });
          return values[0];
        }
        const { value, epoch } = await readCommitted({ path });
        const upTo = applied.length;
        run.reads.push({ path, upTo });
        return overlay(value, path, applied, epoch, upTo);
      };
      const stamps: WriteStamps = {
        clock,
        read: async (query) => {
          await inTurn();
          run.stampsRead = true;
          return serial(() => readStamps(q, query));
        },
        prior: async (writeId) => {
          if (run.exclusive || writeIds.has(writeId)) {
            await inTurn();
            return serial(() => priorWrite(q, writeId));
          }
          run.priorIds.push(writeId);
          return readPrior(writeId);
        },
        record(r) {
          run.rec = r;
        },
      };
      const result = (async () => {
        try {
          // A build that throws has written nothing: only its own outcome fails.
          const mutation = await item.build({ read, enqueue: (task) => run.tasks.push(task), stamps } satisfies WriteContext);
          return { ok: true as const, mutation };
        } catch (error) {
          return { ok: false as const, error };
        }
      })();
      return Object.assign(run, { result });
    };
    /** Whether what `run` saw is what it would see now, with every earlier build taken. */
    const stillValid = (run: Run): boolean => {
      // (Reads made in its turn saw every earlier mutation: none was taken since.)
      for (const r of run.reads) if (touchedSince(applied, r.upTo, r.path)) return false;
      for (const id of run.priorIds) if (writeIds.has(id)) return false;
      const rec = run.rec;
      // A build that did not resolve against stamps assumed it is newer than every stamp.
      if (rec && !rec.replay && !run.stampsRead && clock !== undefined && !(rec.ts > clock)) return false;
      return true;
    };

    const runs = items.map((item, i) => startRun(item, i, false));
    try {
      return await takeInOrder(runs);
    } finally {
      // Builds still waiting for a turn after a failure end (their statements are refused).
      aborted = true;
      for (const turn of turns) turn();
    }

    async function takeInOrder(runs: Run[]) {
      for (let i = 0; i < items.length; i++) {
        const item = items[i] as Item;
        (turns[i] as () => void)();
        let run = runs[i] as Run;
        let outcome = await run.result;
        if (aborted) throw RETRY;
        if (!stillValid(run)) {
          run = startRun(item, i, true);
          outcome = await run.result;
          if (aborted) throw RETRY;
        }
        if (!outcome.ok) {
          outcomes.push({ ok: false, error: outcome.error });
          continue;
        }
        const mutation = outcome.mutation;
        const record = run.rec;
        if (record?.replay) {
          const { version: v, mutation: m, ts } = record.replay;
          outcomes.push({ ok: true, result: { version: v, mutation: m, empty: false, ts, replayed: true, lost: record.lost } });
          continue;
        }
        if (record && (clock === undefined || record.ts > clock)) clock = record.ts;
        if (record?.writeId !== undefined) {
          writeIds.add(record.writeId);
          ownWriteIds.add(record.writeId);
        }
        if (isEmptyMutation(mutation)) {
          if (record && record.tombstones.size > 0) pending.push(planned(mutation, undefined, record));
          outcomes.push({ ok: true, result: { version, mutation, empty: true, ts: record?.ts, lost: record?.lost } });
        } else {
          version += 1;
          pending.push(planned(mutation, version, record));
          applied.push(mutation);
          outcomes.push({ ok: true, result: { version, mutation, empty: false, ts: record?.ts, lost: record?.lost } });
        }
        const tasks = run.tasks;
        const at = version;
        if (tasks.length > 0) {
          if (!tx) retry(); // (tasks go in the batch's transaction)
          await serial(() => insertTasks(q, at, tasks));
        }
      }
      // The notice is a hint for other processes, delivered at commit in commit order.
      const rest = pending;
      pending = [];
      const newVersion = version !== start ? version : null;
      if (!tx) {
        onBuilt?.({ version, clock, mutations: applied.slice(prefixLen), writeIds: ownWriteIds, read: didRead });
        // Everything this batch saw assumed the batch before it commits.
        if (chain && !(await chain.settled)) retry();
      }
      if (tx) await serial(() => write(tx, rest, newVersion, applied));
      else if (
        rest.length > 0 &&
        options.chunkLeaves !== undefined &&
        chunked(rest, options.chunkLeaves).length > 1
      ) {
        // Too large for one statement on a single connection (PGlite): the same check as
        // apply_batch_if, then a chunked write, in one transaction.
        let done: boolean;
        try {
          done = await transaction(async (t, rows) => {
            const row = rows[0] as { version: string; clock: string | null } | undefined;
            if (Number(row?.version) !== start || (row?.clock ?? null) !== (startClock ?? null))
              return false;
            await write(t, rest, newVersion, applied);
            return true;
          }, `SELECT version::text, clock FROM ${s}.meta WHERE id = 1 FOR UPDATE`);
        } catch (error) {
          throw typeof (error as { code?: unknown }).code === "string" ||
            error instanceof CommitOutcomeUnknown
            ? error
            : new CommitOutcomeUnknown(error);
        }
        if (!done) retry();
      } else if (rest.length > 0) {
        // One statement, its own transaction: it takes the lock, checks that the counter and
        // clock are still those the batch started from, and applies it (or changes nothing).
        let done: boolean;
        try {
          const flat = setBased(rest, newVersion);
          const rows = flat
            ? await db.query<{ ok: boolean }>(
                `SELECT ${s}.apply_merges_if($1::bigint, $2::text, $3::bigint, $4::text, $5::text, $6::text[], $7::text[], $8::text[], $9::text[], $10::jsonb[], $11::text[], $12::bigint[], $13::jsonb[], $14::text[], $15::text[]) AS ok`,
                [start, startClock ?? null, flat[0], channel, ...flat.slice(1)],
              )
            : await db.query<{ ok: boolean }>(`SELECT ${s}.apply_batch_if($1::jsonb, $2::bigint, $3::text, $4::bigint, $5::text) AS ok`, [
                JSON.stringify(rest),
                start,
                startClock ?? null,
                newVersion,
                channel,
              ]);
          done = rows[0]?.ok === true;
          if (done) options.onBatch?.(flat ? "set-based" : "items", rest.length);
        } catch (error) {
          // A server-reported error (it has a SQLSTATE) means rolled back; anything else (the
          // connection broke) leaves the outcome unknown.
          throw typeof (error as { code?: unknown }).code === "string" ? error : new CommitOutcomeUnknown(error);
        }
        if (!done) retry();
      }
      return { version, clock };
    }
  }

  async function changes(after: Version, limit: number): Promise<Change[]> {
    // The alias matters: ORDER BY a name that is also an output column sorts by the output (text).
    const rows = await db.query<{ v: string; m: string }>(
      `SELECT c.version::text AS v, c.mutation::text AS m FROM ${s}.changes c WHERE c.version > $1 ORDER BY c.version LIMIT $2`,
      [after, limit],
    );
    return rows.map((r): Change => ({ version: Number(r.v), mutation: parseJson<Mutation>(r.m) }));
  }

  async function version(): Promise<Version> {
    const rows = await db.query<{ version: string }>(`SELECT version::text FROM ${s}.meta WHERE id = 1`);
    return Number(rows[0]?.version ?? 0);
  }

  async function oldestVersion(): Promise<Version | undefined> {
    const rows = await db.query<{ v: string | null }>(`SELECT min(version)::text AS v FROM ${s}.changes`);
    return rows[0]?.v == null ? undefined : Number(rows[0].v);
  }

  /** Driver errors leave the store as Kora's codes (UNAVAILABLE when the database is away). */
  function mapped<T>(p: Promise<T>): Promise<T> {
    return p.catch((error: unknown) => {
      throw mapSqlError(error);
    });
  }

  /** The counter row, locked: every writer everywhere waits here (docs/storage.md). */
  const LOCK_SQL = `SELECT version::text, clock FROM ${s}.meta WHERE id = 1 FOR UPDATE`;

  /** A snapshot's pages, read through the transaction that holds it (see `snapshot` below). */
  function snapshotOf(tx: Queryable, version: Version, clock: string | undefined): Snapshot {
    return {
      version,
      clock,
      async *leaves(path: Path = [], pageSize = 20_000) {
        const lo = encodePath(path);
        const hi = upperBound(lo);
        // Keyset pages: each starts after the last path of the one before (an index range scan;
        // OFFSET would rescan everything before it).
        let after = "";
        for (;;) {
          // A page comes back packed in one row (as reads do, see READ_SQL): a protocol row per
          // leaf cost PGlite several times the scan itself.
          const rows = await tx.query<{ n: number; k: string | null; v: string | null; t: string | null }>(
            `SELECT count(*)::int AS n, string_agg(x.p, chr(2) ORDER BY x.p) AS k, string_agg(x.v, ',' ORDER BY x.p) AS v,
                    string_agg(coalesce(x.ts, ''), chr(2) ORDER BY x.p) AS t
               FROM (SELECT path AS p, value::text AS v, ts FROM ${s}.nodes
                       WHERE path >= $1 AND path < $2 AND path > $3 ORDER BY path LIMIT $4) x`,
            [lo, hi, after, pageSize],
          );
          const row = rows[0];
          const n = Number(row?.n ?? 0);
          if (n === 0 || !row?.k || row.v === null || row.t === null) return;
          const paths = row.k.split(ROW_SEP);
          const values = parseJson<Leaf[]>(`[${row.v}]`);
          const stamps = row.t.split(ROW_SEP);
          yield paths.map((p, i) => ({ path: keysBelow(p, SEP), value: values[i] as Leaf, ts: stamps[i] || null }));
          if (n < pageSize) return;
          after = paths[paths.length - 1] as string;
        }
      },
      async count(path: Path = []) {
        const lo = encodePath(path);
        const rows = await tx.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${s}.nodes WHERE path >= $1 AND path < $2`, [lo, upperBound(lo)]);
        return Number(rows[0]?.n ?? 0);
      },
      async *tombstones(pageSize = 5000) {
        let after = "";
        for (;;) {
          const rows = await tx.query<{ p: string; c: string; w: string }>(
            `SELECT path AS p, cover AS c, shadow AS w FROM ${s}.tombstones WHERE path > $1 ORDER BY path LIMIT $2`,
            [after, pageSize],
          );
          if (rows.length > 0) yield rows.map((r) => ({ path: keysBelow(r.p, SEP), cover: r.c, shadow: r.w }));
          if (rows.length < pageSize) return;
          after = (rows[rows.length - 1] as { p: string }).p;
        }
      },
    };
  }

  return {
    kind: options.kind,
    description: options.description,
    ...(options.stats ? { stats: options.stats } : {}),
    feed,
    outbox,
    health: options.health ?? (() => ({ feed: "local" })),
    snapshot(fn) {
      // REPEATABLE READ: every statement of the transaction sees the database as of its first
      // one, so the counter and every page agree whatever commits meanwhile. On PGlite (one
      // connection) commits simply wait for the snapshot to end.
      return db.transaction(async (tx) => {
        const rows = await tx.query<{ version: string; clock: string | null }>(`SELECT version::text, clock FROM ${s}.meta WHERE id = 1`);
        return fn(snapshotOf(tx, Number(rows[0]?.version ?? 0), rows[0]?.clock ?? undefined));
      }, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");
    },
    async commitAll(mutations) {
      if (closed) throw new Error("store is closed");
      const result = await db.transaction(async (tx, rows) => {
        const start = Number((rows[0] as { version?: string } | undefined)?.version ?? 0);
        let version = start;
        for await (const m of mutations) {
          if (isEmptyMutation(m)) continue;
          version += 1;
          // Written as they come: only one mutation is in memory at a time.
          await flush(tx, [planned(m, version)], null);
        }
        if (version !== start) await flush(tx, [], version); // the counter and the notice
        return { first: Math.min(start + 1, version), last: version, count: version - start };
      }, LOCK_SQL).catch((error: unknown) => {
        throw mapSqlError(error);
      });
      // This process's idea of the counter is stale now; watchers here hear of the new versions.
      known = undefined;
      if (result.count > 0) emit(result.last);
      return result;
    },
    async restore(header, pages: AsyncIterable<RestorePage>) {
      if (closed) throw new Error("store is closed");
      await db.transaction(async (tx, rows) => {
        const current = Number((rows[0] as { version?: string } | undefined)?.version ?? 0);
        const held = await tx.query<{ n: boolean; c: boolean }>(
          `SELECT EXISTS (SELECT 1 FROM ${s}.nodes) AS n, EXISTS (SELECT 1 FROM ${s}.changes) AS c`,
        );
        if (current !== 0 || held[0]?.n || held[0]?.c) {
          throw new KoraError("CONFLICT", `the store is not empty (version ${current}); a backup is restored only into an empty store (a new KORA_SCHEMA, data folder or database)`);
        }
        for await (const page of pages) {
          if (page.leaves.length > 0) {
            await tx.query(
              `INSERT INTO ${s}.nodes (path, value, ts) SELECT r.p, r.v::jsonb, r.t FROM unnest($1::text[], $2::text[], $3::text[]) AS r(p, v, t)`,
              [page.leaves.map((l) => encodePath(l.path)), page.leaves.map((l) => JSON.stringify(l.value)), page.leaves.map((l) => l.ts)],
            );
          }
          if (page.tombstones.length > 0) {
            await tx.query(
              `INSERT INTO ${s}.tombstones (path, cover, shadow) SELECT * FROM unnest($1::text[], $2::text[], $3::text[])`,
              [page.tombstones.map((t) => encodePath(t.path)), page.tombstones.map((t) => t.cover), page.tombstones.map((t) => t.shadow)],
            );
          }
        }
        await tx.query(`UPDATE ${s}.meta SET version = $1, clock = $2 WHERE id = 1`, [header.version, header.clock ?? null]);
        await tx.query("SELECT pg_notify($1, $2)", [channel, String(header.version)]);
      }, LOCK_SQL).catch((error: unknown) => {
        throw mapSqlError(error);
      });
      known = undefined;
      emit(header.version);
    },
    read: (requests) =>
      readNow(requests).catch((error: unknown) => {
        throw mapSqlError(error);
      }),
    keys: (path, keysOptions) => mapped(keysNow(path, keysOptions)),
    commit(build) {
      if (closed) return Promise.reject(new Error("store is closed"));
      return new Promise<CommitResult>((resolve, reject) => {
        queue.push({ build, resolve, reject });
        kick();
      });
    },
    changes: (after, limit) => mapped(changes(after, limit)),
    version: () => mapped(version()),
    oldestVersion: () => mapped(oldestVersion()),
    async explain(path) {
      await db.query(`ANALYZE ${s}.nodes`);
      // Both read statements: the general one and the single-request one.
      const params = readParams([{ path }]);
      const rows = [
        ...(await db.query<Record<string, string>>(`EXPLAIN ${READ_SQL}`, params)),
        ...(await db.query<Record<string, string>>(`EXPLAIN ${READ_ONE_SQL}`, [params[1]?.[0], params[2]?.[0], params[3]?.[0]])),
      ];
      return rows.map((r) => Object.values(r)[0]).join("\n");
    },
    async explainKeys(path, keysOptions) {
      await db.query(`ANALYZE ${s}.nodes`);
      const rows = await db.query<Record<string, unknown>>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${KEYS_SQL}`, keysParams(path, keysOptions));
      const cell = Object.values(rows[0] ?? {})[0];
      const doc = (typeof cell === "string" ? JSON.parse(cell) : cell) as { Plan: Record<string, unknown> }[];
      const top = doc[0]?.Plan ?? {};
      // The top node's counters include everything under it: subplans and child_keys' queries.
      const blocks = Number(top["Shared Hit Blocks"] ?? 0) + Number(top["Shared Read Blocks"] ?? 0);
      return { plan: JSON.stringify(doc), blocks };
    },
    async trimTombstones(before) {
      const rows = await db.query<{ n: number }>(
        `WITH gone AS (DELETE FROM ${s}.tombstones WHERE cover < $1 AND shadow < $1 RETURNING 1)
         SELECT count(*)::int AS n FROM gone`,
        [before],
      );
      return Number(rows[0]?.n ?? 0);
    },
    async trim({ keep, maxAgeMs }) {
      const rows = await db.query<{ n: number }>(
        `WITH gone AS (
           DELETE FROM ${s}.changes
           WHERE version <= (SELECT version FROM ${s}.meta WHERE id = 1) - $1
             AND committed_at <= now() - make_interval(secs => $2::double precision / 1000)
           RETURNING 1)
         SELECT count(*)::int AS n FROM gone`,
        [keep, maxAgeMs],
      );
      return Number(rows[0]?.n ?? 0);
    },
    close() {
      // Idempotent: the gateway and its owner may both close the store.
      closing ??= (async () => {
        closed = true;
        while (inFlight.size > 0) await Promise.all(inFlight);
        unsubscribeRemote?.();
        unsubscribeKnown?.();
        await options.onClose?.();
      })();
      return closing;
    },
  };
}
