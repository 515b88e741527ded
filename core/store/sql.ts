/**
 * The Store over SQL, shared by server PostgreSQL and PGlite: same statements, same schema.
 * docs/storage.md explains the design; the comments here say why each step is the way it is.
 */
import { KoraError } from "../errors.ts";
import type {
  BuildMutation,
  ChangeFeed,
  CommitResult,
  Outbox,
  OutboxState,
  OutboxTask,
  OutboxTaskInput,
  ReadRequest,
  ReadResult,
  Store,
  WriteContext,
  WriteRecord,
  WriteStamps,
} from "../store.ts";
import type { StampEntries, StampQuery } from "../lww.ts";
import { isEmptyMutation, isTree } from "../tree.ts";
import type { Change, DeleteTree, Mutation, Node, Path, ReadOptions, Tree, Version } from "../types.ts";
import { CommitOutcomeUnknown, type Db, type Queryable, ident } from "./db.ts";
import { encodePath, parseJson, treeFromPacked, upperBound } from "./encoding.ts";
import { migrate } from "./migrations.ts";

/** The NOTIFY channel of a schema: one per tree, at most 63 bytes. */
export function channelFor(schema: string): string {
  return `kora_changes_${schema}`.slice(0, 63);
}

export { parseJson };

/** Maps driver errors to Kora's codes; the one place SQLSTATEs are interpreted. */
export function mapSqlError(error: unknown): unknown {
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== "string" || error instanceof KoraError) return error;
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
  /** Called after close() has drained commits, to release driver resources. */
  onClose?: () => Promise<void>;
}

/** Flattens a mutation into the statements' parameter arrays. */
function plan(m: Mutation) {
  const rangeLo: string[] = [];
  const rangeHi: string[] = [];
  const ancestors = new Set<string>();
  const leafPaths: string[] = [];
  const leafNodes: Node[] = [];

  const walkDelete = (node: DeleteTree, path: string[]) => {
    for (const key in node) {
      const mark = node[key] as true | DeleteTree;
      const p = [...path, key];
      if (mark === true) {
        const enc = encodePath(p);
        rangeLo.push(enc);
        rangeHi.push(upperBound(enc));
      } else walkDelete(mark, p);
    }
  };
  const walkMerge = (node: Tree, path: string[]) => {
    for (const key in node) {
      const value = node[key] as Node;
      const p = [...path, key];
      if (isTree(value)) walkMerge(value, p);
      else {
        const enc = encodePath(p);
        // A leaf replaces whatever subtree was there: every row strictly below it goes. The
        // smallest child key starts at U+0020 (control characters are not keys).
        rangeLo.push(`${enc} `);
        rangeHi.push(upperBound(enc));
        // An object merged onto a leaf replaces the leaf: rows at ancestor paths go.
        for (let i = 1; i < p.length; i++) ancestors.add(encodePath(p.slice(0, i)));
        leafPaths.push(enc);
        leafNodes.push(value);
      }
    }
  };
  walkDelete(m.delete, []);
  const deleteRanges = rangeLo.length;
  walkMerge(m.merge, []);
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

  function planned(m: Mutation, version: Version | undefined, rec?: WriteRecord): Planned {
    const p = plan(m);
    const stamped: Partial<Planned> = {};
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
    return { lo: p.rangeLo, hi: p.rangeHi, p: p.leafPaths, v: p.leafNodes, version, m, ...stamped };
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
    async nextDue() {
      const rows = await db.query<{ t: string | null }>(
        `SELECT min(next_at)::text AS t FROM ${s}.effects WHERE state IN ('pending', 'running')`,
      );
      return rows[0]?.t == null ? undefined : new Date(rows[0].t);
    },
  };

  // Group commit: calls arriving while a transaction runs wait and go together in the next one.
  const queue: Item[] = [];
  let running: Promise<void> | undefined;
  let closed = false;
  let closing: Promise<void> | undefined;
  const channel = channelFor(options.schema);

  function kick(): void {
    if (running || queue.length === 0) return;
    running = runBatch(queue.splice(0, maxBatch)).finally(() => {
      running = undefined;
      kick();
    });
  }

  async function runBatch(items: Item[]): Promise<void> {
    const outcomes: ({ ok: true; result: CommitResult } | { ok: false; error: unknown })[] = [];
    let last: Version = 0;
    try {
      await db.transaction(async (tx) => {
        // Lock the counter first: writers everywhere serialize here, so version N+1 can never
        // become visible before version N (docs/storage.md).
        const rows = await tx.query<{ version: string; clock: string | null }>(
          `SELECT version::text, clock FROM ${s}.meta WHERE id = 1 FOR UPDATE`,
        );
        let version = Number(rows[0]?.version ?? 0);
        let clock: string | undefined = rows[0]?.clock ?? undefined;
        const start = version;
        // Writes wait in `pending` and go in one round trip, unless a build reads: then what is
        // pending goes first, so reads see earlier mutations of the batch.
        let pending: Planned[] = [];
        const read = async (path: Path, readOptions?: ReadOptions) => {
          if (pending.length > 0) {
            await flush(tx, pending, null);
            pending = [];
          }
          return (await readWith(tx, [{ path, options: readOptions }])).values[0];
        };
        const flushed = async () => {
          if (pending.length > 0) {
            await flush(tx, pending, null);
            pending = [];
          }
          return tx;
        };
        for (const item of items) {
          const tasks: OutboxTaskInput[] = [];
          let mutation: Mutation;
          let rec: WriteRecord | undefined;
          const stamps: WriteStamps = {
            clock,
            read: async (query) => readStamps(await flushed(), query),
            prior: async (writeId) => priorWrite(await flushed(), writeId),
            record(r) {
              rec = r;
            },
          };
          try {
            // A build that throws has written nothing yet: only its own outcome fails.
            mutation = await item.build({ read, enqueue: (task) => tasks.push(task), stamps } satisfies WriteContext);
          } catch (error) {
            outcomes.push({ ok: false, error });
            continue;
          }
          const record = rec as WriteRecord | undefined;
          if (record?.replay) {
            const { version: v, mutation: m, ts } = record.replay;
            outcomes.push({ ok: true, result: { version: v, mutation: m, empty: false, ts, replayed: true } });
            continue;
          }
          if (record && (clock === undefined || record.ts > clock)) clock = record.ts;
          if (isEmptyMutation(mutation)) {
            if (record && record.tombstones.size > 0) pending.push(planned(mutation, undefined, record));
            outcomes.push({ ok: true, result: { version, mutation, empty: true, ts: record?.ts } });
          } else {
            version += 1;
            pending.push(planned(mutation, version, record));
            outcomes.push({ ok: true, result: { version, mutation, empty: false, ts: record?.ts } });
          }
          if (tasks.length > 0) await insertTasks(tx, version, tasks);
        }
        // The notice is a hint for other processes, delivered at commit in commit order.
        await flush(tx, pending, version !== start ? version : null);
        last = version;
      });
    } catch (error) {
      if (items.length > 1 && !(error instanceof CommitOutcomeUnknown)) {
        // A statement failed and took the transaction with it: run each mutation on its own, so
        // only the one at fault fails (their builds run again, in fresh transactions). This
        // costs nothing in the common case and replaces a SAVEPOINT per mutation (a round trip
        // each). Never after an unknown COMMIT outcome: the batch may have committed.
        for (const item of items) await runBatch([item]);
        return;
      }
      for (const item of items) item.reject(mapSqlError(error));
      return;
    }
    emit(last);
    items.forEach((item, i) => {
      const o = outcomes[i];
      if (!o) item.reject(new Error("commit outcome missing"));
      else if (o.ok) item.resolve(o.result);
      else item.reject(o.error);
    });
  }

  return {
    kind: options.kind,
    description: options.description,
    feed,
    outbox,
    read: (requests) =>
      readWith(db, requests).catch((error: unknown) => {
        throw mapSqlError(error);
      }),
    commit(build) {
      if (closed) return Promise.reject(new Error("store is closed"));
      return new Promise<CommitResult>((resolve, reject) => {
        queue.push({ build, resolve, reject });
        kick();
      });
    },
    async changes(after, limit) {
      // The alias matters: ORDER BY a name that is also an output column sorts by the output (text).
      const rows = await db.query<{ v: string; m: string }>(
        `SELECT c.version::text AS v, c.mutation::text AS m FROM ${s}.changes c WHERE c.version > $1 ORDER BY c.version LIMIT $2`,
        [after, limit],
      );
      return rows.map((r): Change => ({ version: Number(r.v), mutation: parseJson<Mutation>(r.m) }));
    },
    async version() {
      const rows = await db.query<{ version: string }>(`SELECT version::text FROM ${s}.meta WHERE id = 1`);
      return Number(rows[0]?.version ?? 0);
    },
    async oldestVersion() {
      const rows = await db.query<{ v: string | null }>(`SELECT min(version)::text AS v FROM ${s}.changes`);
      return rows[0]?.v == null ? undefined : Number(rows[0].v);
    },
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
        while (running) await running;
        unsubscribeRemote?.();
        await options.onClose?.();
      })();
      return closing;
    },
  };
}
