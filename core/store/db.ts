import { KoraError } from "../errors.ts";

/**
 * The few things the SQL store needs from a driver, so one SQL module serves both `pg` and PGlite.
 * PGlite has a single connection: inside `transaction`, queries must go through the transaction
 * handle (never the outer one) or they deadlock; this interface makes that the only way.
 */
export interface Queryable {
  /**
   * `name`: prepare the statement once per connection under this name and reuse its plan (drivers
   * without prepared statements ignore it). Only for fixed SQL text that is run often.
   */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[], name?: string): Promise<T[]>;
  /** Several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
}

export interface Db extends Queryable {
  /**
   * Runs `fn` in a transaction. `first` (a statement without parameters) runs right after BEGIN,
   * in the same round trip where the driver allows it; `fn` gets its rows.
   */
  transaction<T>(fn: (tx: Queryable, firstRows: Record<string, unknown>[]) => Promise<T>, first?: string): Promise<T>;
  close(): Promise<void>;
}

/**
 * The connection failed while COMMIT was in flight: the transaction may or may not have committed.
 * The store must not run its mutations again (they could commit twice): they fail, and the edge
 * masks the error as INTERNAL_SERVER_ERROR with a logged id.
 */
export class CommitOutcomeUnknown extends Error {
  constructor(cause: unknown) {
    super("the connection to PostgreSQL failed during COMMIT: the outcome of the transaction is unknown", { cause });
    this.name = "CommitOutcomeUnknown";
  }
}

/** Quotes an identifier: the only way names reach SQL text. Values always go as parameters. */
export function ident(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)) {
    throw new KoraError("BAD_USER_INPUT", `schema name ${JSON.stringify(name)} must match [A-Za-z_][A-Za-z0-9_]* (at most 63 characters)`);
  }
  return `"${name}"`;
}

