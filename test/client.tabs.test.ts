/**
 * Many tabs, one replica (client/tabs.ts) in Debian's Chromium: two tabs of one origin share one
 * WebSocket, see each other's writes, queue offline writes through the leader, survive a reload of
 * both and sync each write once; closing the leader tab hands over to the other.
 */
import { mkdtemp, rm } from "node:fs/promises";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { build } from "vite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TabClient } from "../client/tabs.ts";
import { browserAvailable, launchChromium } from "./helpers/browser.ts";
import { serveFolder } from "./helpers/static.ts";
import { pgliteTarget } from "./helpers/db.ts";
import { merge, read, startTestServer, type TestServer } from "./helpers/server.ts";

const enabled = browserAvailable("client.tabs.test");

let kora: TestServer;
let dist: string;
let web: Server;
let origin: string;
let browser: Browser;
let context: BrowserContext | undefined;

beforeAll(async () => {
  if (!enabled) return;
  dist = await mkdtemp(join(tmpdir(), "kora-tabs-"));
  await build({
    configFile: false,
    root: fileURLToPath(new URL("./pages/tabs", import.meta.url)),
    logLevel: "warn",
    build: { outDir: dist, emptyOutDir: true, target: "es2022" },
  });
  ({ server: web, origin } = await serveFolder(dist));
  // The page comes from another origin than Kora's: allowlisted, as an app on its own host is.
  kora = await startTestServer(pgliteTarget, { cors: { origins: [origin] } });
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await context?.close();
  await browser?.close();
  web?.closeAllConnections();
  web?.close();
  await kora?.close();
  if (dist) await rm(dist, { recursive: true, force: true });
});

type W = { kora: TabClient };
const ready = (page: Page) => page.waitForFunction(() => (window as unknown as W).kora !== undefined).then(() => page.evaluate(() => (window as unknown as W).kora.ready));
const valueIn = (page: Page, key: string, value: string) =>
  page.waitForFunction(([k, v]) => (window as unknown as W).kora.get(["tabs", k as string]) === v, [key, value], { timeout: 15_000 });
const statusIs = (page: Page, status: string) =>
  page.waitForFunction((s) => (window as unknown as W).kora.status.value === s, status, { timeout: 15_000 });

describe.runIf(enabled)("tabs of one origin in Chromium", () => {
  it("share one connection and one queue, survive a reload offline, and hand over when the leader closes", async () => {
    context = await browser.newContext();
    const sockets: string[] = [];
    const watchSockets = (page: Page) => page.on("websocket", (ws) => sockets.push(ws.url()));
    const url = (offline = false) => `${origin}/?name=shared&kora=${encodeURIComponent(kora.wsUrl)}${offline ? "&offline=1" : ""}`;

    const a = await context.newPage();
    const b = await context.newPage();
    watchSockets(a);
    watchSockets(b);
    for (const [name, p] of [["a", a], ["b", b]] as const) {
      p.on("console", (m) => {
        if (m.type() === "error" || m.type() === "warning") console.warn(`tab ${name}: ${m.text()}`);
      });
      p.on("pageerror", (e) => console.warn(`tab ${name}: ${e.message}`));
    }
    await a.goto(url());
    await ready(a);
    await b.goto(url());
    await ready(b);
    await statusIs(a, "online");
    await statusIs(b, "online");
    const leaders = await Promise.all([a, b].map((p) => p.evaluate(() => (window as unknown as W).kora.leader.value)));
    expect(leaders.filter(Boolean)).toHaveLength(1);
    expect(sockets).toHaveLength(1);

    // Writes in either tab show in both.
    await a.evaluate(() => (window as unknown as W).kora.merge(["tabs", "a1"], "from A"));
    await valueIn(b, "a1", "from A");
    await b.evaluate(() => (window as unknown as W).kora.merge(["tabs", "b1"], "from B"));
    await valueIn(a, "b1", "from B");
    expect(await read(kora.url, ["tabs"])).toEqual({ a1: "from A", b1: "from B" });
    const v0 = await merge(kora.url, ["probe"], 0);

    // Offline writes in both tabs, then both reloaded while still offline.
    await a.evaluate(() => (window as unknown as W).kora.disconnect());
    await statusIs(a, "offline");
    await statusIs(b, "offline");
    void a.evaluate(() => void (window as unknown as W).kora.merge(["tabs", "a2"], "A offline"));
    void b.evaluate(() => void (window as unknown as W).kora.merge(["tabs", "b2"], "B offline"));
    await valueIn(a, "b2", "B offline");
    await valueIn(b, "a2", "A offline");
    // Both stored by the leader (nothing left only in a tab's memory) before the reload.
    for (const p of [a, b]) await p.waitForFunction(() => (window as unknown as W).kora.pending.value === 2 && (window as unknown as W).kora.queued().length === ((window as unknown as W).kora.leader.value ? 2 : 0));
    await a.goto(url(true));
    await b.goto(url(true));
    await ready(a);
    await ready(b);
    await valueIn(a, "b2", "B offline");
    await valueIn(b, "a2", "A offline");
    expect(await read(kora.url, ["tabs", "a2"])).toBeNull();

    await b.evaluate(() => (window as unknown as W).kora.connect());
    await statusIs(a, "online");
    await statusIs(b, "online");
    expect(await read(kora.url, ["tabs"])).toEqual({ a1: "from A", b1: "from B", a2: "A offline", b2: "B offline" });
    // Each offline write committed once: the next probe is two versions later plus itself.
    expect(await merge(kora.url, ["probe"], 1)).toBe(v0 + 3);

    // Close the leader tab: the other takes over the connection and the writes.
    const leader = (await a.evaluate(() => (window as unknown as W).kora.leader.value)) ? a : b;
    const other = leader === a ? b : a;
    await leader.close();
    await other.waitForFunction(() => (window as unknown as W).kora.leader.value, undefined, { timeout: 15_000 });
    await statusIs(other, "online");
    await other.evaluate(() => (window as unknown as W).kora.merge(["tabs", "after"], "handed over"));
    expect(await read(kora.url, ["tabs", "after"])).toBe("handed over");
  }, 120_000);
});
