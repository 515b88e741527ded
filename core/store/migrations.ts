/**
 * Versioned migrations, run at start-up inside one transaction under an advisory lock, so several
 * gateway processes starting at once neither race nor run a migration twice. Append new
 * migrations to the list; never edit one that has shipped.
 */
import { type Db, ident } from "./db.ts";

export interface Migration {
  version: number;
  name: string;
  sql: (schema: string) => string;
}

export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: "tree, change log, version counter",
    sql: (s) => `
      -- One row per leaf. Objects have no rows: an object exists while it has leaves, so empty
      -- objects vanish by construction. ts: the hybrid-logical-clock stamp of the write that set
      -- the leaf (used by offline clients' conflict resolution).
      CREATE TABLE ${s}.nodes (
        path text COLLATE "C" PRIMARY KEY,
        value jsonb NOT NULL,
        ts text
      );
      -- The change log: every committed mutation with its version. write_id: a client's id for
      -- idempotent retries.
      CREATE TABLE ${s}.changes (
        version bigint PRIMARY KEY,
        mutation jsonb NOT NULL,
        committed_at timestamptz NOT NULL DEFAULT now(),
        write_id text
      );
      CREATE UNIQUE INDEX changes_write_id ON ${s}.changes (write_id) WHERE write_id IS NOT NULL;
      -- The version counter. Writers lock this row first, so versions are assigned in commit
      -- order and are contiguous (see docs/storage.md).
      CREATE TABLE ${s}.meta (id int PRIMARY KEY CHECK (id = 1), version bigint NOT NULL);
      INSERT INTO ${s}.meta VALUES (1, 0);
      -- The range of the children selected by min/max/limit/reverse under an encoded path:
      -- a loose index scan that jumps from child to child, one index probe per child.
      CREATE FUNCTION ${s}.child_range(prefix text, lo text, hi text, lim int, rev boolean,
                                        OUT from_path text, OUT to_path text)
      LANGUAGE plpgsql STABLE AS $fn$
      DECLARE
        cur text;
        found_path text;
        child text;
        n int := 0;
      BEGIN
        from_path := lo;
        to_path := hi;
        IF lim IS NULL THEN RETURN; END IF;
        IF NOT coalesce(rev, false) THEN
          cur := lo;
          LOOP
            EXIT WHEN n >= lim;
            SELECT path INTO found_path FROM ${s}.nodes
              WHERE path >= cur AND path < hi ORDER BY path LIMIT 1;
            EXIT WHEN found_path IS NULL;
            child := split_part(substr(found_path, length(prefix) + 1), chr(1), 1);
            cur := prefix || child || chr(2);
            found_path := NULL;
            n := n + 1;
          END LOOP;
          to_path := CASE WHEN n = 0 THEN lo ELSE cur END;
        ELSE
          cur := hi;
          LOOP
            EXIT WHEN n >= lim;
            SELECT path INTO found_path FROM ${s}.nodes
              WHERE path >= lo AND path < cur ORDER BY path DESC LIMIT 1;
            EXIT WHEN found_path IS NULL;
            child := split_part(substr(found_path, length(prefix) + 1), chr(1), 1);
            cur := prefix || child || chr(1);
            found_path := NULL;
            n := n + 1;
          END LOOP;
          from_path := CASE WHEN n = 0 THEN hi ELSE cur END;
        END IF;
      END
      $fn$;
    `,
  },
  {
    version: 2,
    name: "effects outbox",
    sql: (s) => `
      -- Side-effect tasks recorded in the same transaction as their mutation, run after commit
      -- with retries (docs/interceptors.md, "Effects").
      CREATE TABLE ${s}.effects (
        id bigserial PRIMARY KEY,
        version bigint NOT NULL,
        interceptor text NOT NULL,
        payload jsonb NOT NULL,
        state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done', 'failed')),
        attempts int NOT NULL DEFAULT 0,
        max_attempts int NOT NULL,
        next_at timestamptz NOT NULL DEFAULT now(),
        last_error text,
        created_at timestamptz NOT NULL DEFAULT now(),
        done_at timestamptz
      );
      CREATE INDEX effects_due ON ${s}.effects (next_at) WHERE state IN ('pending', 'running');
    `,
  },
  {
    version: 3,
    name: "batch apply",
    sql: (s) => `
      -- Applies a whole group-commit batch in one round trip: for each mutation, in order, delete
      -- its ranges, upsert its leaves, log it; then bump the counter and notify. The statements
      -- are the same as one mutation's; only the round trips are saved.
      CREATE FUNCTION ${s}.apply_batch(items jsonb, new_version bigint, channel text)
      RETURNS void LANGUAGE plpgsql AS $fn$
      DECLARE
        it jsonb;
      BEGIN
        FOR it IN SELECT value FROM jsonb_array_elements(items) LOOP
          IF jsonb_array_length(it->'lo') > 0 THEN
            DELETE FROM ${s}.nodes n
              USING unnest(ARRAY(SELECT jsonb_array_elements_text(it->'lo')),
                           ARRAY(SELECT jsonb_array_elements_text(it->'hi'))) AS r(lo, hi)
              WHERE n.path >= r.lo AND n.path < r.hi;
          END IF;
          IF jsonb_array_length(it->'p') > 0 THEN
            INSERT INTO ${s}.nodes (path, value)
              SELECT r.p, r.v FROM unnest(ARRAY(SELECT jsonb_array_elements_text(it->'p')),
                                          ARRAY(SELECT jsonb_array_elements(it->'v'))) AS r(p, v)
              ON CONFLICT (path) DO UPDATE SET value = EXCLUDED.value, ts = NULL;
          END IF;
          INSERT INTO ${s}.changes (version, mutation) VALUES ((it->>'version')::bigint, it->'m');
        END LOOP;
        IF new_version IS NOT NULL THEN
          UPDATE ${s}.meta SET version = new_version WHERE id = 1;
          PERFORM pg_notify(channel, new_version::text);
        END IF;
      END
      $fn$;
    `,
  },
  {
    version: 4,
    name: "timestamps, tombstones and write ids for offline clients",
    sql: (s) => `
      -- Conflict resolution for offline clients (docs/conflicts.md, core/lww.ts): the stamp of
      -- each change and the store's clock (the greatest stamp recorded), and tombstones. A
      -- tombstone's cover: writes at or under its path older than it lose; its shadow: sets at
      -- strict ancestors older than it lose. Stamps compare as text in byte order.
      ALTER TABLE ${s}.changes ADD COLUMN ts text;
      ALTER TABLE ${s}.meta ADD COLUMN clock text COLLATE "C";
      CREATE TABLE ${s}.tombstones (
        path text COLLATE "C" PRIMARY KEY,
        cover text COLLATE "C" NOT NULL,
        shadow text COLLATE "C" NOT NULL
      );
      -- apply_batch of migration 3, plus for stamped items (ts set): tombstones computed from
      -- the state before the item's deletes, leaf stamps, the clock, and the write id and stamp
      -- on the change row. Items without a version record tombstones only (a write that lost).
      CREATE OR REPLACE FUNCTION ${s}.apply_batch(items jsonb, new_version bigint, channel text)
      RETURNS void LANGUAGE plpgsql AS $fn$
      DECLARE
        it jsonb;
        stamp text;
      BEGIN
        FOR it IN SELECT value FROM jsonb_array_elements(items) LOOP
          stamp := it->>'ts';
          IF stamp IS NOT NULL THEN
            INSERT INTO ${s}.tombstones AS t (path, cover, shadow)
              SELECT x.path, max(x.cover COLLATE "C"), max(x.shadow COLLATE "C") FROM (
                SELECT r.d AS path, stamp AS cover,
                       coalesce((SELECT max(coalesce(n.ts, '') COLLATE "C") FROM ${s}.nodes n
                                  WHERE n.path >= r.d AND n.path < r.h), '') AS shadow
                  FROM unnest(ARRAY(SELECT jsonb_array_elements_text(coalesce(it->'td', '[]'))),
                              ARRAY(SELECT jsonb_array_elements_text(coalesce(it->'th', '[]')))) AS r(d, h)
                UNION ALL
                SELECT n.path, coalesce(n.ts, ''), coalesce(n.ts, '') FROM ${s}.nodes n
                  WHERE n.path = ANY(ARRAY(SELECT jsonb_array_elements_text(coalesce(it->'ta', '[]'))))
                UNION ALL
                SELECT r.p, r.c, r.w
                  FROM unnest(ARRAY(SELECT jsonb_array_elements_text(coalesce(it->'tp', '[]'))),
                              ARRAY(SELECT jsonb_array_elements_text(coalesce(it->'tc', '[]'))),
                              ARRAY(SELECT jsonb_array_elements_text(coalesce(it->'tw', '[]')))) AS r(p, c, w)
              ) x GROUP BY x.path
            ON CONFLICT (path) DO UPDATE
              SET cover = GREATEST(t.cover, EXCLUDED.cover), shadow = GREATEST(t.shadow, EXCLUDED.shadow);
            UPDATE ${s}.meta SET clock = GREATEST(coalesce(clock, '') COLLATE "C", stamp COLLATE "C") WHERE id = 1;
          END IF;
          IF jsonb_array_length(it->'lo') > 0 THEN
            DELETE FROM ${s}.nodes n
              USING unnest(ARRAY(SELECT jsonb_array_elements_text(it->'lo')),
                           ARRAY(SELECT jsonb_array_elements_text(it->'hi'))) AS r(lo, hi)
              WHERE n.path >= r.lo AND n.path < r.hi;
          END IF;
          IF jsonb_array_length(it->'p') > 0 THEN
            INSERT INTO ${s}.nodes (path, value, ts)
              SELECT r.p, r.v, stamp FROM unnest(ARRAY(SELECT jsonb_array_elements_text(it->'p')),
                                                 ARRAY(SELECT jsonb_array_elements(it->'v'))) AS r(p, v)
              ON CONFLICT (path) DO UPDATE SET value = EXCLUDED.value, ts = EXCLUDED.ts;
          END IF;
          IF it->>'version' IS NOT NULL THEN
            INSERT INTO ${s}.changes (version, mutation, write_id, ts)
              VALUES ((it->>'version')::bigint, it->'m', it->>'w', stamp);
          END IF;
        END LOOP;
        IF new_version IS NOT NULL THEN
          UPDATE ${s}.meta SET version = new_version WHERE id = 1;
          PERFORM pg_notify(channel, new_version::text);
        END IF;
      END
      $fn$;
    `,
  },
  {
    version: 5,
    name: "cheaper apply_batch for stamped writes",
    sql: (s) => `
      -- apply_batch of migration 4 with the same effects, cheaper for the usual stamped write (a
      -- server-stamped merge): the clock is moved once per batch instead of once per item (no
      -- statement reads it in between), and an item with no delete tombstones and no
      -- resolution tombstones only records the leaves its merge replaces at ancestor paths,
      -- with one index probe per ancestor instead of the three-way union.
      CREATE OR REPLACE FUNCTION ${s}.apply_batch(items jsonb, new_version bigint, channel text)
      RETURNS void LANGUAGE plpgsql AS $fn$
      DECLARE
        it jsonb;
        stamp text;
        newest text COLLATE "C";
      BEGIN
        FOR it IN SELECT value FROM jsonb_array_elements(items) LOOP
          stamp := it->>'ts';
          IF stamp IS NOT NULL THEN
            IF jsonb_array_length(coalesce(it->'td', '[]')) > 0 OR jsonb_array_length(coalesce(it->'tp', '[]')) > 0 THEN
              INSERT INTO ${s}.tombstones AS t (path, cover, shadow)
                SELECT x.path, max(x.cover COLLATE "C"), max(x.shadow COLLATE "C") FROM (
                  SELECT r.d AS path, stamp AS cover,
                         coalesce((SELECT max(coalesce(n.ts, '') COLLATE "C") FROM ${s}.nodes n
                                    WHERE n.path >= r.d AND n.path < r.h), '') AS shadow
                    FROM unnest(ARRAY(SELECT jsonb_array_elements_text(coalesce(it->'td', '[]'))),
                                ARRAY(SELECT jsonb_array_elements_text(coalesce(it->'th', '[]')))) AS r(d, h)
                  UNION ALL
                  SELECT n.path, coalesce(n.ts, ''), coalesce(n.ts, '') FROM ${s}.nodes n
                    WHERE n.path = ANY(ARRAY(SELECT jsonb_array_elements_text(coalesce(it->'ta', '[]'))))
                  UNION ALL
                  SELECT r.p, r.c, r.w
                    FROM unnest(ARRAY(SELECT jsonb_array_elements_text(coalesce(it->'tp', '[]'))),
                                ARRAY(SELECT jsonb_array_elements_text(coalesce(it->'tc', '[]'))),
                                ARRAY(SELECT jsonb_array_elements_text(coalesce(it->'tw', '[]')))) AS r(p, c, w)
                ) x GROUP BY x.path
              ON CONFLICT (path) DO UPDATE
                SET cover = GREATEST(t.cover, EXCLUDED.cover), shadow = GREATEST(t.shadow, EXCLUDED.shadow);
            ELSIF jsonb_array_length(coalesce(it->'ta', '[]')) > 0 THEN
              -- Ancestor paths are distinct, so no row is proposed twice.
              INSERT INTO ${s}.tombstones AS t (path, cover, shadow)
                SELECT n.path, coalesce(n.ts, ''), coalesce(n.ts, '') FROM ${s}.nodes n
                  WHERE n.path = ANY(ARRAY(SELECT jsonb_array_elements_text(it->'ta')))
              ON CONFLICT (path) DO UPDATE
                SET cover = GREATEST(t.cover, EXCLUDED.cover), shadow = GREATEST(t.shadow, EXCLUDED.shadow);
            END IF;
            IF newest IS NULL OR stamp COLLATE "C" > newest THEN
              newest := stamp;
            END IF;
          END IF;
          IF jsonb_array_length(it->'lo') > 0 THEN
            DELETE FROM ${s}.nodes n
              USING unnest(ARRAY(SELECT jsonb_array_elements_text(it->'lo')),
                           ARRAY(SELECT jsonb_array_elements_text(it->'hi'))) AS r(lo, hi)
              WHERE n.path >= r.lo AND n.path < r.hi;
          END IF;
          IF jsonb_array_length(it->'p') > 0 THEN
            INSERT INTO ${s}.nodes (path, value, ts)
              SELECT r.p, r.v, stamp FROM unnest(ARRAY(SELECT jsonb_array_elements_text(it->'p')),
                                                 ARRAY(SELECT jsonb_array_elements(it->'v'))) AS r(p, v)
              ON CONFLICT (path) DO UPDATE SET value = EXCLUDED.value, ts = EXCLUDED.ts;
          END IF;
          IF it->>'version' IS NOT NULL THEN
            INSERT INTO ${s}.changes (version, mutation, write_id, ts)
              VALUES ((it->>'version')::bigint, it->'m', it->>'w', stamp);
          END IF;
        END LOOP;
        IF new_version IS NOT NULL OR newest IS NOT NULL THEN
          UPDATE ${s}.meta
            SET version = coalesce(new_version, version),
                clock = CASE WHEN newest IS NULL THEN clock
                             ELSE GREATEST(coalesce(clock, '') COLLATE "C", newest) END
            WHERE id = 1;
        END IF;
        IF new_version IS NOT NULL THEN
          PERFORM pg_notify(channel, new_version::text);
        END IF;
      END
      $fn$;
    `,
  },
  {
    version: 6,
    name: "checked batch apply in one statement",
    sql: (s) => `
      -- An optimistic batch (docs/storage.md, "Group commit"): built without a transaction from
      -- the counter and clock its process last committed, then applied by this one statement
      -- (its own transaction) only if they are still the same under the lock. Returns false,
      -- changing nothing, when another process committed since.
      CREATE FUNCTION ${s}.apply_batch_if(items jsonb, expected bigint, expected_clock text, new_version bigint, channel text)
      RETURNS boolean LANGUAGE plpgsql AS $fn$
      DECLARE
        cur bigint;
        cur_clock text;
      BEGIN
        SELECT version, clock INTO cur, cur_clock FROM ${s}.meta WHERE id = 1 FOR UPDATE;
        IF cur IS DISTINCT FROM expected OR cur_clock IS DISTINCT FROM expected_clock THEN
          RETURN false;
        END IF;
        PERFORM ${s}.apply_batch(items, new_version, channel);
        RETURN true;
      END
      $fn$;
    `,
  },
  {
    version: 7,
    name: "keys-only child listing",
    sql: (s) => `
      -- The children of an encoded path after \`lo\`, keys only (the console's outline, the
      -- \`keys\` query): a loose index scan like child_range's, one probe per child that reads
      -- only the path of the child's first row. A leaf child (that row is the child itself) gets
      -- its type, its size in bytes of JSON and, when at most max_bytes, its value; an object
      -- child gets 'object' and nothing else: no row below a child is fetched for its value, so
      -- a child holding 100,000 leaves costs what a leaf does.
      CREATE FUNCTION ${s}.child_keys(prefix text, lo text, hi text, lim int, max_bytes int,
                                       OUT k text, OUT t text, OUT v text, OUT b int)
      RETURNS SETOF record LANGUAGE plpgsql STABLE AS $fn$
      DECLARE
        cur text := lo;
        found_path text;
        leaf_value jsonb;
        n int := 0;
      BEGIN
        LOOP
          EXIT WHEN n >= lim;
          found_path := NULL;
          SELECT nd.path INTO found_path FROM ${s}.nodes nd
            WHERE nd.path >= cur AND nd.path < hi ORDER BY nd.path LIMIT 1;
          EXIT WHEN found_path IS NULL;
          k := split_part(substr(found_path, length(prefix) + 1), chr(1), 1);
          IF found_path = prefix || k || chr(1) THEN
            SELECT nd.value INTO leaf_value FROM ${s}.nodes nd WHERE nd.path = found_path;
            t := jsonb_typeof(leaf_value);
            v := leaf_value::text;
            b := octet_length(v);
            IF b > max_bytes THEN v := NULL; END IF;
          ELSE
            t := 'object';
            v := NULL;
            b := NULL;
          END IF;
          RETURN NEXT;
          -- Past the whole subtree of this child: [prefix || k || chr(1), prefix || k || chr(2)).
          cur := prefix || k || chr(2);
          n := n + 1;
        END LOOP;
      END
      $fn$;
    `,
  },
  {
    version: 8,
    name: "set-based apply of independent stamped merges",
    sql: (s) => `
      -- apply_batch_if for the usual batch (docs/storage.md, "Group commit"): every item a
      -- server-stamped merge with no delete part and no resolution tombstones, and no item's
      -- leaf at another item's leaf or ancestor (core/store/sql.ts, \`setBased\`). Applied
      -- item by item, such a batch does what these few statements do at once: tombstones for the
      -- leaves at ancestor paths (from the rows before the batch), the deletes, the upserts, the
      -- change rows. One statement per batch instead of about six per item, and typed arrays
      -- instead of jsonb taken apart per statement: a batch of 8 cost PostgreSQL ~40% less.
      -- Generic plans: custom plans re-planned the statement on every call. No sequential
      -- scans: see migration 9.
      CREATE FUNCTION ${s}.apply_merges_if(expected bigint, expected_clock text, new_version bigint,
          channel text, newest text, lo text[], hi text[], ta text[], p text[], v jsonb[],
          pts text[], cv bigint[], cm jsonb[], cw text[], cts text[])
      RETURNS boolean LANGUAGE plpgsql
      SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$
      DECLARE
        cur bigint;
        cur_clock text;
      BEGIN
        SELECT version, clock INTO cur, cur_clock FROM ${s}.meta WHERE id = 1 FOR UPDATE;
        IF cur IS DISTINCT FROM expected OR cur_clock IS DISTINCT FROM expected_clock THEN
          RETURN false;
        END IF;
        -- A row matched by several ranges is deleted (and returned) once. Sibling statements
        -- of one WITH see the same snapshot; independence keeps their rows apart.
        WITH gone AS (
          DELETE FROM ${s}.nodes n USING unnest(lo, hi) AS r(lo, hi)
            WHERE n.path >= r.lo AND n.path < r.hi
            RETURNING n.path, coalesce(n.ts, '') AS ts
        ), tomb AS (
          INSERT INTO ${s}.tombstones AS t (path, cover, shadow)
            SELECT g.path, g.ts, g.ts FROM gone g WHERE g.path = ANY(ta)
          ON CONFLICT (path) DO UPDATE
            SET cover = GREATEST(t.cover, EXCLUDED.cover), shadow = GREATEST(t.shadow, EXCLUDED.shadow)
        ), up AS (
          INSERT INTO ${s}.nodes (path, value, ts) SELECT * FROM unnest(p, v, pts)
          ON CONFLICT (path) DO UPDATE SET value = EXCLUDED.value, ts = EXCLUDED.ts
        ), ch AS (
          INSERT INTO ${s}.changes (version, mutation, write_id, ts) SELECT * FROM unnest(cv, cm, cw, cts)
        )
        UPDATE ${s}.meta
          SET version = new_version, clock = GREATEST(coalesce(clock, '') COLLATE "C", newest COLLATE "C")
          WHERE id = 1;
        PERFORM pg_notify(channel, new_version::text);
        RETURN true;
      END
      $fn$;
    `,
  },
  {
    version: 9,
    name: "index scans in the functions that touch nodes",
    sql: (s) => `
      -- A function keeps the plans of its statements for the life of the connection. Planned
      -- right after an ANALYZE of a small nodes table (a new tree: autovacuum analyzes it after
      -- its first 50 rows), a statement that looks up paths scans the whole table instead of
      -- its index, and keeps doing so as the table grows: a batch of 8 merges took 6 ms at 2,000
      -- rows and 500 ms at 100,000 (docs/storage.md, "Plans"). Every statement in these
      -- functions reaches nodes by path or path range, which the primary key serves at any size.
      ALTER FUNCTION ${s}.apply_batch(jsonb, bigint, text) SET enable_seqscan = off;
      ALTER FUNCTION ${s}.apply_batch_if(jsonb, bigint, text, bigint, text) SET enable_seqscan = off;
      ALTER FUNCTION ${s}.child_range(text, text, text, int, boolean) SET enable_seqscan = off;
      ALTER FUNCTION ${s}.child_keys(text, text, text, int, int) SET enable_seqscan = off;
    `,
  },
];

export async function migrate(db: Db, schemaName: string): Promise<void> {
  const s = ident(schemaName);
  await db.transaction(async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`kora:migrate:${schemaName}`]);
    await tx.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
    await tx.query(
      `CREATE TABLE IF NOT EXISTS ${s}.migrations (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const done = new Set(
      (await tx.query<{ version: number }>(`SELECT version FROM ${s}.migrations`)).map((r) => Number(r.version)),
    );
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      await tx.exec(m.sql(s));
      await tx.query(`INSERT INTO ${s}.migrations (version, name) VALUES ($1, $2)`, [m.version, m.name]);
    }
  });
}
