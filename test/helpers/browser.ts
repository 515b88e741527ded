/** Debian's Chromium for the browser suites, launched headless through playwright-core. */
import { existsSync } from "node:fs";
import { type Browser, chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/**
 * Whether the browser suites run: under CI the browser must be there (.ci/run installs it, and a
 * miss fails); elsewhere its absence skips them, with a warning.
 */
export function browserAvailable(suite: string): boolean {
  const available = existsSync(CHROMIUM) || Boolean(process.env.CI);
  if (!available) console.warn(`${suite}: ${CHROMIUM} is missing (apt-get install chromium); skipped`);
  return available;
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}
