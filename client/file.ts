/**
 * File storage for Node (`kora/client/file`): one JSON file per key in a folder, each replaced
 * atomically (write to a temporary file, then rename), so a crash never leaves half a file.
 *
 * One client at a time: `lock()` creates `lock.json` (holding the pid) exclusively. A second
 * client on the same folder, in this process or another, is refused with a `StorageInUseError`
 * naming the holder; a lock left by a process that no longer runs (killed, crashed) is taken over.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rename, unlink, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { type ClientStorage, StorageInUseError, parseStored } from "./storage.ts";

/** Folders locked by clients of this process (the lock file's pid cannot tell two of them apart). */
const heldHere = new Set<string>();

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as { code?: string }).code === "EPERM";
  }
}

export function fileStorage(dir: string): ClientStorage {
  let ready: Promise<unknown> | undefined;
  const chains = new Map<string, Promise<void>>();
  const file = (key: string) => join(dir, `${encodeURIComponent(key)}.json`);
  const folder = resolve(dir);
  const lockFile = join(dir, "lock");
  // Unique per write, not just per process: two instances (or two keys) never share a temporary file.
  const tmpName = (key: string) => `${file(key)}.${process.pid}-${randomBytes(6).toString("hex")}.tmp`;
  return {
    async get(key) {
      let text: string;
      try {
        text = await readFile(file(key), "utf8");
      } catch (error) {
        if ((error as { code?: string }).code === "ENOENT") return undefined;
        throw error;
      }
      try {
        return parseStored(text);
      } catch (error) {
        // Never start over silently: the file may hold unsent writes.
        throw new Error(
          `${file(key)} is not valid JSON (${(error as Error).message}); the client's stored state is damaged. Move the file away to start without it.`,
        );
      }
    },
    set(key, value) {
      const text = JSON.stringify(value);
      const run = (chains.get(key) ?? Promise.resolve()).then(async () => {
        ready ??= mkdir(dir, { recursive: true });
        await ready;
        const tmp = tmpName(key);
        await writeFile(tmp, text);
        await rename(tmp, file(key));
      });
      chains.set(key, run.catch(() => {}));
      return run;
    },
    async lock() {
      if (heldHere.has(folder)) {
        throw new StorageInUseError(`${dir} is open by another client in this process; close it before opening the folder again`);
      }
      heldHere.add(folder);
      try {
        await mkdir(dir, { recursive: true });
        const token = `${process.pid}-${randomBytes(6).toString("hex")}`;
        for (let attempt = 0; ; attempt++) {
          try {
            await writeFile(lockFile, JSON.stringify({ pid: process.pid, token }), { flag: "wx" });
            break;
          } catch (error) {
            if ((error as { code?: string }).code !== "EEXIST" || attempt >= 3) throw error;
          }
          const holder = (await readFile(lockFile, "utf8").then(
            (t) => JSON.parse(t) as { pid?: number },
            () => ({}) as { pid?: number },
          )) as { pid?: number };
          // Our own pid here is a lock an earlier instance of this process left (it is not in
          // heldHere): stale, like one from a process that no longer runs.
          if (typeof holder.pid === "number" && holder.pid !== process.pid && running(holder.pid)) {
            throw new StorageInUseError(
              `${dir} is open by a client in process ${holder.pid} (${lockFile}); one client per storage folder. Close that client, or remove the lock file if that process is not a Kora client.`,
            );
          }
          await unlink(lockFile).catch(() => {});
        }
        let released = false;
        return async () => {
          if (released) return;
          released = true;
          try {
            const current = JSON.parse(await readFile(lockFile, "utf8")) as { token?: string };
            if (current.token === token) await unlink(lockFile);
          } catch {
            // Already gone: nothing to release.
          } finally {
            heldHere.delete(folder);
          }
        };
      } catch (error) {
        heldHere.delete(folder);
        throw error;
      }
    },
  };
}
