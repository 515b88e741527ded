/**
 * Tree files, streamed both ways so a tree larger than memory passes through (docs/cli.md):
 * - JSON exports: the subtree at a path as one JSON document, written from a store snapshot in
 *   tree order as its pages arrive; and JSON imports, parsed token by token (@streamparser/json's
 *   tokenizer) into leaves, each checked as Kora checks a merge (keys, depth, `null`), and
 *   committed in chunks of one transaction (`Store.commitAll`): a bad file writes nothing.
 * - Backups: newline-delimited JSON, a header with the snapshot's version and clock, one line
 *   per leaf (with its stamp) and per tombstone, and a trailer that proves the file is whole.
 */
import type { Readable, Writable } from "node:stream";
import Tokenizer from "@streamparser/json/tokenizer.js";
import TokenType from "@streamparser/json/utils/types/tokenType.js";
import { KoraError, showPath } from "../core/errors.ts";
import type { LeafRow, RestorePage, Store, TombstoneRow } from "../core/store.ts";
import { emptyTree, inflate, isTree, normalizeValue, validateKey, validatePath } from "../core/tree.ts";
import { DEFAULT_LIMITS, type Json, type Leaf, type Limits, type Mutation, type Path, type Tree, type Version, type DeleteTree } from "../core/types.ts";

/** Counts work done (bytes or leaves) for a progress display; see server/progress.ts. */
export interface ProgressSink {
  start(total: number | undefined, unit: string): void;
  advance(by: number): void;
  stop(): void;
}

export const noProgress: ProgressSink = { start() {}, advance() {}, stop() {} };

/** A bad input file: the message names the file, the byte offset or line, the path and the reason. */
export class TreeFileError extends KoraError {
  constructor(message: string, path?: Path) {
    super("BAD_USER_INPUT", message, path ? { path } : undefined);
    this.name = "TreeFileError";
  }
}

async function write(out: Writable, text: string): Promise<void> {
  if (!out.write(text)) await new Promise<void>((resolve) => out.once("drain", resolve));
}

// ---------------------------------------------------------------------------------------------
// Export

/**
 * Writes the subtree at `path` as JSON, from one snapshot. Rows arrive in tree order (bytes of
 * keys), so objects open and close as the paths of consecutive leaves diverge: memory holds one
 * page and the keys of the current branch. Throws NOT_FOUND when nothing is stored at `path`.
 */
export async function exportTree(
  store: Store,
  path: Path,
  out: Writable,
  progress: ProgressSink = noProgress,
): Promise<{ version: Version; leaves: number }> {
  if (!store.snapshot) throw new Error(`the store (${store.description}) cannot take snapshots`);
  return store.snapshot(async (snapshot) => {
    progress.start(await snapshot.count(path), "leaves");
    let leaves = 0;
    /** Keys of the objects open below `path`; `counts[i]`: members written in the i-th open object. */
    const open: string[] = [];
    const counts: number[] = [];
    let started = false;
    for await (const page of snapshot.leaves(path)) {
      let text = "";
      for (const row of page) {
        const keys = row.path.slice(path.length);
        leaves++;
        if (keys.length === 0) {
          // A leaf at the path itself: the document is that leaf (nothing can be below it).
          text += JSON.stringify(row.value);
          started = true;
          continue;
        }
        if (!started) {
          text += "{";
          counts.push(0);
          started = true;
        }
        let common = 0;
        while (common < open.length && common < keys.length - 1 && open[common] === keys[common]) common++;
        while (open.length > common) {
          text += "}";
          open.pop();
          counts.pop();
        }
        for (let i = common; i < keys.length; i++) {
          const last = i === keys.length - 1;
          text += `${(counts[counts.length - 1] as number) > 0 ? "," : ""}${JSON.stringify(keys[i])}:`;
          counts[counts.length - 1] = (counts[counts.length - 1] as number) + 1;
          if (last) text += JSON.stringify(row.value);
          else {
            text += "{";
            open.push(keys[i] as string);
            counts.push(0);
          }
        }
      }
      await write(out, text);
      progress.advance(page.length);
    }
    if (!started) {
      // The root always exists (an empty tree is `{}`); any other path holds nothing.
      if (path.length > 0) throw new KoraError("NOT_FOUND", `nothing is stored at ${showPath(path)}`, { path });
      await write(out, "{");
      counts.push(0);
    }
    if (counts.length > 0) await write(out, "}".repeat(open.length + 1));
    await write(out, "\n");
    progress.stop();
    return { version: snapshot.version, leaves };
  });
}


// ---------------------------------------------------------------------------------------------
// Import

export interface ImportOptions {
  /** Where the file's value is merged. Default the root (the file must then hold an object). */
  at?: Path;
  limits?: Limits;
  /** Leaves per committed mutation. Default 2000. */
  chunkLeaves?: number;
  /** The file's name, for messages. */
  source?: string;
  progress?: ProgressSink;
  /** The file's size in bytes, for progress. */
  totalBytes?: number;
}

type Frame =
  | { kind: "object"; state: "key-or-end" | "key" | "colon" | "value" | "comma-or-end"; key: string | undefined }
  | { kind: "opaque"; value: Json[] | Record<string, Json>; state: "value" | "key" | "colon" | "comma-or-end" | "value-or-end" | "key-or-end"; key: string | undefined };

const TOKEN_TEXT: Record<number, string> = {
  [TokenType.LEFT_BRACE]: "{",
  [TokenType.RIGHT_BRACE]: "}",
  [TokenType.LEFT_BRACKET]: "[",
  [TokenType.RIGHT_BRACKET]: "]",
  [TokenType.COLON]: ":",
  [TokenType.COMMA]: ",",
};

/**
 * Parses a JSON document from `input` into leaves (path from the root, `at` included), checking
 * each as a merge would be (keys, depth, no `null` outside arrays), and groups them into
 * mutations of at most `chunkLeaves` leaves. Arrays are leaves: each is assembled whole.
 * Throws `TreeFileError` naming the byte offset, the path and the reason.
 */
export async function* mutationsFromJson(input: Readable | AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>, options: ImportOptions = {}): AsyncGenerator<Mutation> {
  const at = validatePath([...(options.at ?? [])], options.limits);
  const limits = options.limits ?? DEFAULT_LIMITS;
  const chunkLeaves = options.chunkLeaves ?? 2000;
  const source = options.source ?? "input";
  const progress = options.progress ?? noProgress;

  const keys: string[] = []; // keys of the open objects of the tree (not inside arrays)
  const frames: Frame[] = [];
  let done = false; // the top-level value is complete
  let offset = 0;
  let sawValue = false;
  let chunk: Tree = emptyTree();
  let chunkSize = 0;
  const ready: Mutation[] = [];

  const fail = (reason: string, path: Path = [...at, ...keys]): never => {
    throw new TreeFileError(`${source}: at byte ${offset}, path ${JSON.stringify(path)}: ${reason}`, path);
  };
  const check = <T>(fn: () => T, path: Path): T => {
    try {
      return fn();
    } catch (error) {
      if (error instanceof KoraError) throw new TreeFileError(`${source}: at byte ${offset}: ${error.message}`, path);
      throw error;
    }
  };
  const emitLeaf = (value: Leaf | Json[], leafKeys: string[]) => {
    const path = [...at, ...leafKeys];
    check(() => normalizeValue(value, path, limits), path);
    if (leafKeys.length === 0) {
      if (at.length === 0) fail("the root is always an object; a file imported at the root must hold a JSON object", path);
      ready.push({ merge: inflate(at, value) as Tree, delete: Object.create(null) as DeleteTree });
      return;
    }
    let node = chunk;
    for (let i = 0; i < leafKeys.length - 1; i++) {
      const k = leafKeys[i] as string;
      let next = node[k];
      if (!isTree(next)) {
        next = emptyTree();
        node[k] = next;
      }
      node = next;
    }
    node[leafKeys[leafKeys.length - 1] as string] = value;
    chunkSize++;
    if (chunkSize >= chunkLeaves) flushChunk();
  };
  const flushChunk = () => {
    if (chunkSize === 0) return;
    ready.push({ merge: at.length === 0 ? chunk : (inflate(at, chunk) as Tree), delete: Object.create(null) as DeleteTree });
    chunk = emptyTree();
    chunkSize = 0;
  };

  /** A scalar or a finished array/object value arrived where a value was expected. */
  const valueDone = (value: Json | undefined, isObjectEnd: boolean) => {
    const top = frames[frames.length - 1];
    if (!top) {
      done = true;
      if (value !== undefined) emitLeaf(value as Leaf, []);
      return;
    }
    if (top.kind === "object") {
      if (!isObjectEnd && value !== undefined) emitLeaf(value as Leaf, [...keys]);
      keys.pop();
      top.state = "comma-or-end";
      top.key = undefined;
    } else {
      if (Array.isArray(top.value)) top.value.push(value as Json);
      else (top.value as Record<string, Json>)[top.key as string] = value as Json;
      top.state = "comma-or-end";
    }
  };

  const onToken = (token: TokenType, value: unknown) => {
    if (done) fail(`unexpected ${TOKEN_TEXT[token] ?? JSON.stringify(value)} after the end of the JSON document`);
    const top = frames[frames.length - 1];
    const unexpected = (): never => fail(`malformed JSON: unexpected ${TOKEN_TEXT[token] ?? JSON.stringify(value)}`);
    const inValuePosition = !top || top.state === "value" || top.state === "value-or-end";
    // Inside an array (opaque): plain JSON assembly; null is allowed there.
    if (top?.kind === "opaque") {
      if (top.state === "key" || top.state === "key-or-end") {
        if (token === TokenType.STRING) {
          top.key = value as string;
          top.state = "colon";
          return;
        }
        if (token === TokenType.RIGHT_BRACE && top.state === "key-or-end") return closeOpaque();
        return unexpected();
      }
      if (top.state === "colon") {
        if (token !== TokenType.COLON) unexpected();
        top.state = "value";
        return;
      }
      if (top.state === "comma-or-end") {
        if (token === TokenType.COMMA) {
          top.state = Array.isArray(top.value) ? "value" : "key";
          return;
        }
        if ((token === TokenType.RIGHT_BRACKET && Array.isArray(top.value)) || (token === TokenType.RIGHT_BRACE && !Array.isArray(top.value))) {
          return closeOpaque();
        }
        return unexpected();
      }
      // A value (or the end of an empty array).
      if (token === TokenType.RIGHT_BRACKET && top.state === "value-or-end" && Array.isArray(top.value)) return closeOpaque();
      return openOrScalar(token, value, true, unexpected);
    }
    if (top?.kind === "object") {
      switch (top.state) {
        case "key-or-end":
        case "key":
          if (token === TokenType.STRING) {
            const key = value as string;
            check(() => validateKey(key, [...at, ...keys], limits), [...at, ...keys, key]);
            keys.push(key);
            top.key = key;
            top.state = "colon";
            return;
          }
          if (token === TokenType.RIGHT_BRACE && top.state === "key-or-end") return closeObject();
          return unexpected();
        case "colon":
          if (token !== TokenType.COLON) unexpected();
          top.state = "value";
          return;
        case "comma-or-end":
          if (token === TokenType.COMMA) {
            top.state = "key";
            return;
          }
          if (token === TokenType.RIGHT_BRACE) return closeObject();
          return unexpected();
        default:
          break;
      }
    }
    if (!inValuePosition) return unexpected();
    return openOrScalar(token, value, false, unexpected);
  };

  const openOrScalar = (token: TokenType, value: unknown, opaque: boolean, unexpected: () => never) => {
    sawValue = true;
    switch (token) {
      case TokenType.LEFT_BRACE:
        if (opaque) frames.push({ kind: "opaque", value: Object.create(null) as Record<string, Json>, state: "key-or-end", key: undefined });
        else {
          if (at.length + keys.length >= limits.maxDepth) {
            fail(`an object here is deeper than the tree's ${limits.maxDepth} levels`);
          }
          frames.push({ kind: "object", state: "key-or-end", key: undefined });
        }
        return;
      case TokenType.LEFT_BRACKET:
        frames.push({ kind: "opaque", value: [], state: "value-or-end", key: undefined });
        return;
      case TokenType.NULL:
        if (!opaque) fail("null is not a value (outside arrays); leave the key out, or delete the path");
        return valueDone(null, false);
      case TokenType.STRING:
      case TokenType.NUMBER:
      case TokenType.TRUE:
      case TokenType.FALSE:
        return valueDone(value as Json, false);
      default:
        return unexpected();
    }
  };

  const closeOpaque = () => {
    const frame = frames.pop() as Extract<Frame, { kind: "opaque" }>;
    // Inside an array it is an element; in the tree, an array is a leaf.
    valueDone(frame.value, false);
  };
  const closeObject = () => {
    frames.pop();
    valueDone(undefined, true);
  };

  const tokenizer = new Tokenizer({ stringBufferSize: 64 * 1024 });
  let tokenError: unknown;
  tokenizer.onToken = ({ token, value, offset: at_ }) => {
    if (tokenError) return;
    offset = at_;
    try {
      onToken(token, value);
    } catch (error) {
      tokenError = error;
    }
  };
  tokenizer.onError = (error) => {
    tokenError ??= new TreeFileError(`${source}: at byte ${offset}: malformed JSON: ${error.message}`, [...at, ...keys]);
  };
  const drain = function* () {
    while (ready.length > 0) yield ready.shift() as Mutation;
  };
  for await (const piece of input as AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>) {
    const bytes = typeof piece === "string" ? Buffer.from(piece) : piece;
    if (done && /\S/.test(Buffer.from(bytes).toString("utf8"))) {
      fail("unexpected data after the end of the JSON document");
    }
    if (!done) tokenizer.write(bytes);
    if (tokenError) throw tokenError;
    progress.advance(bytes.length);
    yield* drain();
  }
  if (!tokenizer.isEnded) tokenizer.end();
  if (tokenError) throw tokenError;
  if (!sawValue) fail("the file holds no JSON value (it is empty)");
  if (!done) fail("malformed JSON: the document ends before its last object or array is closed");
  flushChunk();
  yield* drain();
}

/** Imports a JSON file's value at `at` in one transaction; nothing is written on any error. */
export async function importTree(
  store: Store,
  input: Readable | AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>,
  options: ImportOptions = {},
): Promise<{ first: Version; last: Version; count: number }> {
  if (!store.commitAll) throw new Error(`the store (${store.description}) cannot import`);
  options.progress?.start(options.totalBytes, "bytes");
  try {
    return await store.commitAll(mutationsFromJson(input, options));
  } finally {
    options.progress?.stop();
  }
}

/** Checks a JSON file as an import would, writing nothing. Returns how many leaves it holds. */
export async function checkTreeFile(input: Readable | AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>, options: ImportOptions = {}): Promise<{ leaves: number }> {
  options.progress?.start(options.totalBytes, "bytes");
  let leaves = 0;
  try {
    for await (const m of mutationsFromJson(input, { ...options, chunkLeaves: 1 })) {
      leaves++;
      void m;
    }
  } finally {
    options.progress?.stop();
  }
  return { leaves };
}

// ---------------------------------------------------------------------------------------------
// Backups

export const BACKUP_FORMAT = 1;

interface BackupHeader {
  kora: "backup";
  format: number;
  version: string;
  clock: string | null;
  store: string;
  createdAt: string;
  leaves: number;
}

/** Writes a consistent snapshot of the whole store (leaves with stamps, tombstones, version). */
export async function backupStore(store: Store, out: Writable, progress: ProgressSink = noProgress): Promise<{ version: Version; leaves: number; tombstones: number }> {
  if (!store.snapshot) throw new Error(`the store (${store.description}) cannot take snapshots`);
  return store.snapshot(async (snapshot) => {
    const total = await snapshot.count();
    progress.start(total, "leaves");
    const header: BackupHeader = {
      kora: "backup",
      format: BACKUP_FORMAT,
      version: String(snapshot.version),
      clock: snapshot.clock ?? null,
      store: store.kind,
      createdAt: new Date().toISOString(),
      leaves: total,
    };
    await write(out, `${JSON.stringify(header)}\n`);
    let leaves = 0;
    for await (const page of snapshot.leaves()) {
      await write(out, page.map((r) => `${JSON.stringify(["l", r.path, r.value, r.ts])}\n`).join(""));
      leaves += page.length;
      progress.advance(page.length);
    }
    let tombstones = 0;
    for await (const page of snapshot.tombstones()) {
      await write(out, page.map((t) => `${JSON.stringify(["t", t.path, t.cover, t.shadow])}\n`).join(""));
      tombstones += page.length;
    }
    await write(out, `${JSON.stringify({ end: true, leaves, tombstones })}\n`);
    progress.stop();
    return { version: snapshot.version, leaves, tombstones };
  });
}

/** Lines of a byte stream split at "\n" only (U+2028 inside JSON strings is not a line end). */
async function* lines(input: AsyncIterable<Uint8Array | string>, progress: ProgressSink): AsyncGenerator<string> {
  let rest = "";
  const decoder = new TextDecoder("utf-8", { fatal: true });
  for await (const piece of input) {
    const text = typeof piece === "string" ? piece : decoder.decode(piece, { stream: true });
    progress.advance(typeof piece === "string" ? Buffer.byteLength(piece) : piece.length);
    rest += text;
    let cut = rest.indexOf("\n");
    while (cut >= 0) {
      yield rest.slice(0, cut);
      rest = rest.slice(cut + 1);
      cut = rest.indexOf("\n");
    }
  }
  rest += decoder.decode();
  if (rest.length > 0) yield rest;
}

/**
 * Restores a backup into an empty store in one transaction. Every line is checked (its path's
 * keys, its value) and the trailer must be there: a truncated or edited backup writes nothing.
 */
export async function restoreStore(
  store: Store,
  input: AsyncIterable<Uint8Array | string>,
  options: { source?: string; progress?: ProgressSink; totalBytes?: number; limits?: Limits } = {},
): Promise<{ version: Version; leaves: number; tombstones: number }> {
  if (!store.restore) throw new Error(`the store (${store.description}) cannot restore backups`);
  const source = options.source ?? "backup";
  const limits = options.limits ?? DEFAULT_LIMITS;
  const progress = options.progress ?? noProgress;
  progress.start(options.totalBytes, "bytes");
  const it = lines(input, progress)[Symbol.asyncIterator]();
  let lineNo = 1;
  const bad = (reason: string): never => {
    throw new TreeFileError(`${source}: line ${lineNo}: ${reason}`);
  };
  const parse = (text: string): unknown => {
    try {
      return JSON.parse(text, (_k, v) => (v && typeof v === "object" && !Array.isArray(v) ? Object.assign(Object.create(null), v) : v));
    } catch (error) {
      return bad(`malformed JSON: ${(error as Error).message}`);
    }
  };
  const first = await it.next();
  if (first.done) bad("the file is empty; a Kora backup starts with its header line");
  const header = parse(first.value as string) as Partial<BackupHeader>;
  if (header?.kora !== "backup" || header.format !== BACKUP_FORMAT || typeof header.version !== "string" || !/^\d+$/.test(header.version)) {
    bad(`not a Kora backup of format ${BACKUP_FORMAT} (the header needs "kora": "backup", "format": ${BACKUP_FORMAT} and a "version")`);
  }
  const counts = { leaves: 0, tombstones: 0 };
  let ended = false;
  const checkedPath = (p: unknown): Path => {
    try {
      return validatePath(p, limits);
    } catch (error) {
      return bad((error as Error).message);
    }
  };
  async function* pages(): AsyncGenerator<RestorePage> {
    let page: RestorePage = { leaves: [], tombstones: [] };
    for (;;) {
      const next = await it.next();
      if (next.done) break;
      lineNo++;
      const text = next.value;
      if (text.length === 0) continue;
      if (ended) bad("data after the end line");
      const row = parse(text);
      if (Array.isArray(row) && row[0] === "l" && row.length === 4) {
        const path = checkedPath(row[1]);
        if (path.length === 0) bad("a leaf at the root; the root is always an object");
        try {
          normalizeValue(row[2], path, limits);
        } catch (error) {
          bad((error as Error).message);
        }
        if (row[3] !== null && typeof row[3] !== "string") bad("a leaf's stamp is a string or null");
        page.leaves.push({ path, value: row[2] as Leaf, ts: row[3] as string | null } satisfies LeafRow);
        counts.leaves++;
      } else if (Array.isArray(row) && row[0] === "t" && row.length === 4 && typeof row[2] === "string" && typeof row[3] === "string") {
        page.tombstones.push({ path: checkedPath(row[1]), cover: row[2], shadow: row[3] } satisfies TombstoneRow);
        counts.tombstones++;
      } else if (row && typeof row === "object" && (row as { end?: unknown }).end === true) {
        const end = row as { leaves?: unknown; tombstones?: unknown };
        if (end.leaves !== counts.leaves || end.tombstones !== counts.tombstones) {
          bad(`the end line counts ${String(end.leaves)} leaves and ${String(end.tombstones)} tombstones, the file holds ${counts.leaves} and ${counts.tombstones}`);
        }
        ended = true;
      } else bad('expected ["l", path, value, stamp], ["t", path, cover, shadow] or the end line');
      if (page.leaves.length + page.tombstones.length >= 2000) {
        yield page;
        page = { leaves: [], tombstones: [] };
      }
    }
    if (!ended) bad("the backup ends without its end line: it is truncated");
    yield page;
  }
  const version = Number(header.version);
  try {
    await store.restore({ version, clock: header.clock ?? undefined }, pages());
  } finally {
    progress.stop();
  }
  return { version, ...counts };
}
