/**
 * A plain Node program using kora/client, run as a child process by test/client.robust.test.ts:
 * it writes while the server cannot be reached, keeps running through the failed connects, and
 * syncs once a server appears. It reports on stdout as JSON lines; an unhandled rejection or an
 * uncaught exception ends it with a non-zero code (Node's default), which fails the test.
 * Arguments: the server's WebSocket URL and a storage folder.
 */
import WebSocket from "ws";
import { createClient } from "../../client/index.ts";
import { fileStorage } from "../../client/file.ts";

const [url, dir] = process.argv.slice(2) as [string, string];
const say = (line: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(line)}\n`);

let attempts = 0;
class CountingWebSocket extends WebSocket {
  constructor(address: string, protocols?: string | string[]) {
    super(address, protocols);
    attempts++;
    say({ attempts });
  }
}

const client = createClient({
  url,
  storage: fileStorage(dir),
  webSocketImpl: CountingWebSocket,
  backoff: { initialMs: 20, maxMs: 100 },
});
client.status.subscribe((status) => say({ status }));
// An app bug in a listener is reported, and neither stops the client nor ends the process.
client.watch(["robust"], (value) => {
  if (value !== undefined) throw new Error("a listener with a bug");
});
await client.ready;
const writes = [client.merge(["robust", "a"], 1), client.merge(["robust", "b"], { text: "two" })];
await client.flush(); // on disk before saying so (the test kills this process next)
say({ queued: client.queued().length });
await Promise.all(writes);
await client.synced(60_000);
say({ synced: true, queued: client.queued().length });
await client.close();
say({ closed: true });
