/**
 * File storage for Node (`kora/client/file`): one JSON file per key in a folder, each replaced
 * atomically (write to a temporary file, then rename), so a crash never leaves half a file.
 */
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type ClientStorage, parseStored } from "./storage.ts";

export function fileStorage(dir: string): ClientStorage {
  let ready: Promise<unknown> | undefined;
  const chains = new Map<string, Promise<void>>();
  const file = (key: string) => join(dir, `${encodeURIComponent(key)}.json`);
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
        const tmp = `${file(key)}.${process.pid}.tmp`;
        await writeFile(tmp, text);
        await rename(tmp, file(key));
      });
      chains.set(key, run.catch(() => {}));
      return run;
    },
  };
}
