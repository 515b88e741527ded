/**
 * The browser example (examples/offline-todo) in Debian's Chromium through playwright-core:
 * go offline (the page's network emulation), add todos, reload the page while offline and still
 * see them, go online, and see them on a second page (another browser context: another device).
 */
import { mkdtemp, rm } from "node:fs/promises";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser } from "playwright-core";
import { build } from "vite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { browserAvailable, launchChromium } from "./helpers/browser.ts";
import { serveFolder } from "./helpers/static.ts";
import { pgliteTarget } from "./helpers/db.ts";
import { read, startTestServer, type TestServer } from "./helpers/server.ts";


let kora: TestServer;
let dist: string;
let web: Server;
let origin: string;
let browser: Browser;

beforeAll(async () => {
  dist = await mkdtemp(join(tmpdir(), "kora-todo-"));
  await build({
    configFile: new URL("../examples/offline-todo/vite.config.ts", import.meta.url).pathname,
    logLevel: "warn",
    build: { outDir: dist },
  });
  ({ server: web, origin } = await serveFolder(dist));
  // The page's origin is not Kora's: it must be allowed (docs/security.md).
  kora = await startTestServer(pgliteTarget, { cors: { origins: [origin] } });
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  web?.close();
  await kora?.close();
  if (dist) await rm(dist, { recursive: true, force: true });
});

describe.runIf(browserAvailable("client.browser.test"))("offline todo example in Chromium", () => {
  it("adds todos offline, keeps them across an offline reload, and syncs them to another page", async () => {
    const page0 = `${origin}/?list=groceries&kora=${encodeURIComponent(kora.wsUrl)}`;
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(page0);
    await page.waitForSelector('#status[data-status="online"]');
    await page.evaluate(() => (window as unknown as { shellCached: Promise<void> }).shellCached);

    await context.setOffline(true);
    await page.waitForSelector('#status[data-status="offline"]');
    for (const text of ["milk", "eggs"]) {
      await page.fill("#text", text);
      await page.click("button[type=submit]");
    }
    await page.waitForFunction(() => document.querySelectorAll("#list li").length === 2);
    expect(await page.textContent("#pending")).toBe("2");

    await page.reload();
    await page.waitForFunction(() => document.querySelectorAll("#list li").length === 2);
    expect(await page.textContent("#status")).toBe("offline");
    expect(await page.textContent("#pending")).toBe("2");
    expect(await read(kora.url, ["todos", "groceries"])).toBeNull();

    await context.setOffline(false);
    await page.waitForSelector('#status[data-status="online"]', { timeout: 15_000 });
    const stored = (await read(kora.url, ["todos", "groceries"])) as Record<string, { text: string }>;
    expect(Object.values(stored).map((t) => t.text).sort()).toEqual(["eggs", "milk"]);

    const other = await (await browser.newContext()).newPage();
    await other.goto(page0);
    await other.waitForFunction(() => document.querySelectorAll("#list li").length === 2);
    const texts = await other.$$eval("#list li span", (spans) => spans.map((s) => s.textContent?.trim()));
    expect(texts.sort()).toEqual(["eggs", "milk"]);
    await context.close();
  }, 90_000);
});
