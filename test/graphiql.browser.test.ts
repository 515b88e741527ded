/**
 * GraphiQL in a real browser (Debian's Chromium driven by playwright-core): a `watch` run from
 * GraphiQL shows its snapshot, then a merge made over HTTP shows up live in the result pane, and
 * no request leaves the server's origin (GraphiQL's page, scripts and styles are Kora's own).
 */
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { browserAvailable, launchChromium } from "./helpers/browser.ts";
import { pgliteTarget } from "./helpers/db.ts";
import { type TestServer, merge, startTestServer } from "./helpers/server.ts";

const available = browserAvailable("graphiql.browser.test");

describe.runIf(available)("GraphiQL in Chromium", () => {
  let server: TestServer;
  let browser: Browser;
  beforeAll(async () => {
    server = await startTestServer(pgliteTarget);
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it("opens on the README's example operations, not GraphiQL's welcome text", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(server.url);
    const editorText = () => page.evaluate(() => (document.body.textContent ?? "").replace(/\u00a0/g, " "));
    await page.waitForFunction(() => (document.body.textContent ?? "").includes("MergeDax"), undefined, { timeout: 30_000 });
    const text = await editorText();
    expect(text).toContain('merge(path: ["user:info", "dax"]');
    expect(text).toContain("subscription WatchUsers");
    expect(text).not.toMatch(/in-browser tool for writing, validating, and testing GraphQL/);
    await context.close();
  });

  it("runs a watch, shows the snapshot, then a live merge, with every request on the server's origin", async () => {
    await merge(server.url, ["todo", "first"], "snapshot item");
    const context = await browser.newContext();
    const page = await context.newPage();
    const origin = new URL(server.url).origin;
    const requests: string[] = [];
    const foreign: string[] = [];
    const sameOrigin = (url: string, allowed: string) =>
      url.startsWith("blob:") || url.startsWith("data:") || new URL(url).origin === allowed;
    page.on("request", (request) => {
      requests.push(request.url());
      if (!sameOrigin(request.url(), origin)) foreign.push(request.url());
    });
    // WebSockets are not "requests" to playwright: check them too (GraphiQL's subscriptions use SSE).
    page.on("websocket", (socket) => {
      if (!sameOrigin(socket.url(), origin.replace(/^http/, "ws"))) foreign.push(socket.url());
    });
    const query = 'subscription { watch(path: ["todo"]) { version snapshot merge delete value } }';
    await page.goto(`${server.url}?query=${encodeURIComponent(query)}`);
    await page.locator(".graphiql-execute-button").click();
    const resultHas = (text: string) =>
      page.waitForFunction(
        // The result pane is a Monaco editor: it renders spaces as U+00A0.
        (t) =>
          (document.querySelector('[aria-label="Result Window"]')?.textContent ?? "")
            .replace(/\u00a0/g, " ")
            .includes(t),
        text,
        { timeout: 30_000 },
      );
    await resultHas('"snapshot": true');
    await resultHas("snapshot item");
    await merge(server.url, ["todo", "a"], "hello");
    await resultHas('"hello"');
    // KORA_SCREENSHOT=/tmp/graphiql.png saves what the browser shows, to check by eye.
    if (process.env.KORA_SCREENSHOT) await page.screenshot({ path: process.env.KORA_SCREENSHOT });
    expect(requests.length).toBeGreaterThan(0);
    expect(foreign).toEqual([]);
    await context.close();
  });
});
