/**
 * Fan-out never leaks across read-auth classes: 1,000 watchers of one path, 500 of which may not
 * read one of its sub-paths (rules), each receive exactly what they may read: the same events in
 * the same order as every other watcher of their class, with the forbidden parts removed and the
 * events that hold nothing else dropped. Half of each class also selects `value`. Whatever the
 * server shares between watchers of one path (restricting, filtering or serializing a change
 * once per group), this is the check that a group never spans two classes.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, createClient } from "graphql-ws";
import { SignJWT } from "jose";
import WebSocket from "ws";
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../core/gateway.ts";
import { mutationFromInput } from "../core/tree.ts";
import { createRulesEngine } from "../interceptors/rules.ts";
import { createAuthenticator } from "../server/auth.ts";
import { type RunningKora, startKora } from "../server/index.ts";
import { pgliteTarget } from "./helpers/db.ts";

const SECRET = "a-test-secret-of-at-least-32-characters!";
const AUDIENCE = "kora-fanout";
const WATCHERS = 1000;
const SOCKETS = 40; // 25 watches each; one token (so one read-auth class) per socket

// No rule at `board` itself: a watch of it is allowed and filtered (docs/rules.md, Semantics).
const RULES = `rules:
  "board/public":
    read: "true"
  "board/staff":
    read: auth != null && auth.role == "staff"
`;

const WATCH = `subscription { watch(path: ["board"]) { version snapshot merge delete } }`;
const WATCH_VALUE = `subscription { watch(path: ["board"]) { version snapshot merge delete value } }`;

interface Event {
  version: string;
  snapshot: boolean;
  merge: unknown;
  delete: unknown;
  value?: unknown;
}

let kora: RunningKora | undefined;
let dispose: (() => Promise<void>) | undefined;
let dir: string | undefined;
const clients: Client[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.dispose()));
  await kora?.close();
  await dispose?.();
  if (dir) rmSync(dir, { recursive: true, force: true });
  kora = undefined;
  dispose = undefined;
  dir = undefined;
});

function token(claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setAudience(AUDIENCE).setIssuedAt().setExpirationTime("1h").sign(new TextEncoder().encode(SECRET));
}

describe("fan-out to 1,000 watchers of two read-auth classes", () => {
  it("each watcher receives exactly what its class may read, nothing more, nothing less", async () => {
    dir = mkdtempSync(join(tmpdir(), "kora-fanout-"));
    const file = join(dir, "kora.rules.yaml");
    writeFileSync(file, RULES);
    const created = await pgliteTarget.create();
    dispose = created.dispose;
    const rules = createRulesEngine({ file, watch: false });
    kora = await startKora({
      store: created.store,
      log: silentLogger,
      port: 0,
      host: "127.0.0.1",
      retention: { intervalMs: 0 },
      interceptors: [rules.interceptor],
      authenticate: createAuthenticator({ jwt: { secret: SECRET, audience: AUDIENCE } }),
      // 1,000 subscriptions from one address in a moment: far over the default per-address budget.
      rateLimits: false,
    });
    const gateway = kora.gateway;
    // Server-side writes (internal callers skip read and write rules on purpose).
    const commit = async (input: { merge?: unknown; delete?: unknown }) => String((await gateway.commit(mutationFromInput(input))).version);
    await commit({ merge: { board: { public: { a: 1 }, staff: { b: 2 } } } });

    const wsUrl = kora.url.replace(/^http/, "ws");
    const received: { staff: boolean; withValue: boolean; events: Event[]; errors: unknown[] }[] = [];
    let snapshots = 0;
    let finished = 0;
    let onSnapshots: () => void = () => {};
    let onFinished: () => void = () => {};
    const allSnapshots = new Promise<void>((resolve) => {
      onSnapshots = resolve;
    });
    const allFinished = new Promise<void>((resolve) => {
      onFinished = resolve;
    });
    for (let s = 0; s < SOCKETS; s++) {
      const staff = s % 2 === 0;
      const jwt = await token({ sub: `u${s}`, role: staff ? "staff" : "guest" });
      const client = createClient({ url: wsUrl, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true, connectionParams: { authorization: `Bearer ${jwt}` } });
      clients.push(client);
      for (let j = 0; j < WATCHERS / SOCKETS; j++) {
        const withValue = j % 2 === 1;
        const mine = { staff, withValue, events: [] as Event[], errors: [] as unknown[] };
        received.push(mine);
        client.subscribe<{ watch: Event }>(
          { query: withValue ? WATCH_VALUE : WATCH },
          {
            next: (r) => {
              if (r.errors) mine.errors.push(r.errors);
              const event = r.data?.watch;
              if (!event) return;
              mine.events.push(event);
              if (event.snapshot && mine.events.length === 1 && ++snapshots === WATCHERS) onSnapshots();
              const end = (event.merge as { board?: { public?: { end?: unknown } } }).board?.public?.end;
              if (end !== undefined && ++finished === WATCHERS) onFinished();
            },
            error: (e) => mine.errors.push(e),
            complete: () => {},
          },
        );
      }
    }
    await withDeadline(allSnapshots, "every watcher's snapshot");

    const v1 = await commit({ merge: { board: { public: { x: 1 }, staff: { y: 1 } } } });
    const v2 = await commit({ merge: { board: { staff: { z: 1 } } } }); // staff only
    await commit({ merge: { board: { other: { q: 1 } } } }); // no rule grants it: nobody hears
    const v4 = await commit({ delete: { board: { staff: { b: true } } } }); // staff only
    const v5 = await commit({ delete: { board: true }, merge: { board: { public: { n: 1 }, staff: { s: 1 } } } });
    const v6 = await commit({ merge: { board: { public: { end: 1 } } } });
    await withDeadline(allFinished, "every watcher's last event");

    const staffEvents: Event[] = [
      { version: "1", snapshot: true, merge: { board: { public: { a: 1 }, staff: { b: 2 } } }, delete: { board: true }, value: { public: { a: 1 }, staff: { b: 2 } } },
      { version: v1, snapshot: false, merge: { board: { public: { x: 1 }, staff: { y: 1 } } }, delete: {}, value: { public: { a: 1, x: 1 }, staff: { b: 2, y: 1 } } },
      { version: v2, snapshot: false, merge: { board: { staff: { z: 1 } } }, delete: {}, value: { public: { a: 1, x: 1 }, staff: { b: 2, y: 1, z: 1 } } },
      { version: v4, snapshot: false, merge: {}, delete: { board: { staff: { b: true } } }, value: { public: { a: 1, x: 1 }, staff: { y: 1, z: 1 } } },
      { version: v5, snapshot: false, merge: { board: { public: { n: 1 }, staff: { s: 1 } } }, delete: { board: true }, value: { public: { n: 1 }, staff: { s: 1 } } },
      { version: v6, snapshot: false, merge: { board: { public: { end: 1 } } }, delete: {}, value: { public: { n: 1, end: 1 }, staff: { s: 1 } } },
    ];
    const guestEvents: Event[] = [
      { version: "1", snapshot: true, merge: { board: { public: { a: 1 } } }, delete: { board: true }, value: { public: { a: 1 } } },
      { version: v1, snapshot: false, merge: { board: { public: { x: 1 } } }, delete: {}, value: { public: { a: 1, x: 1 } } },
      { version: v5, snapshot: false, merge: { board: { public: { n: 1 } } }, delete: { board: true }, value: { public: { n: 1 } } },
      { version: v6, snapshot: false, merge: { board: { public: { end: 1 } } }, delete: {}, value: { public: { n: 1, end: 1 } } },
    ];
    const withoutValue = (events: Event[]) => events.map(({ value: _value, ...rest }) => rest);
    const expected = {
      staff: { true: staffEvents, false: withoutValue(staffEvents) },
      guest: { true: guestEvents, false: withoutValue(guestEvents) },
    };
    let staffCount = 0;
    for (const [i, r] of received.entries()) {
      expect(r.errors, `watcher ${i}`).toEqual([]);
      expect(r.events, `watcher ${i} (${r.staff ? "staff" : "guest"}${r.withValue ? ", with value" : ""})`).toEqual(
        expected[r.staff ? "staff" : "guest"][r.withValue ? "true" : "false"],
      );
      if (r.staff) staffCount++;
    }
    expect(staffCount).toBe(WATCHERS / 2);
    // 1,000 subscriptions each read a snapshot: on 2 loaded cores this took up to ~70 s.
  }, 180_000);
});

/** Rejects if `promise` has not settled within 150 s: a guard against hangs, not a wait for time. */
function withDeadline<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 150_000);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
