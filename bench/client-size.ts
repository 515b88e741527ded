/**
 * The browser bundle size of `kora/client` (minified and gzipped, graphql-ws included): what an
 * app ships for it. Builds the package entry with Vite for the browser, fails if a Node-only
 * module got in, and prints one line. Run `tsx bench/client-size.ts` (the bench can call
 * `clientBundleSize()`); docs/client.md quotes the figure.
 */
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { build } from "vite";

export interface BundleSize {
  minifiedBytes: number;
  gzipBytes: number;
}

const ENTRY = fileURLToPath(new URL("../client/index.ts", import.meta.url));

/**
 * Bundles what `names` of client/index.ts an app uses (default: every export) for browsers;
 * tree-shaking drops the rest, as in the app's own build.
 */
export async function clientBundleSize(names?: string[]): Promise<BundleSize> {
  const out = await mkdtemp(join(tmpdir(), "kora-size-"));
  try {
    const warnings: string[] = [];
    const app = join(out, "app.js");
    await writeFile(app, names ? `export { ${names.join(", ")} } from ${JSON.stringify(ENTRY)};\n` : `export * from ${JSON.stringify(ENTRY)};\n`);
    await build({
      configFile: false,
      logLevel: "silent",
      customLogger: {
        info() {},
        warn: (m: string) => warnings.push(m),
        warnOnce: (m: string) => warnings.push(m),
        error: (m: string) => warnings.push(m),
        clearScreen() {},
        hasErrorLogged: () => false,
        hasWarned: false,
      },
      build: {
        outDir: join(out, "dist"),
        emptyOutDir: true,
        minify: true,
        target: "es2022",
        lib: { entry: app, formats: ["es"], fileName: "client" },
        rollupOptions: {
          onwarn(warning) {
            warnings.push(String(warning.message));
          },
        },
      },
    });
    const nodeOnly = warnings.filter((w) => /node:|externalized for browser/i.test(w));
    if (nodeOnly.length) throw new Error(`the browser bundle pulls Node-only modules:\n${nodeOnly.join("\n")}`);
    const files = (await readdir(join(out, "dist"))).filter((f) => f.endsWith(".js"));
    let minifiedBytes = 0;
    let gzipBytes = 0;
    for (const f of files) {
      const code = await readFile(join(out, "dist", f));
      if (/from\s*["']node:|require\(["']node:/.test(code.toString())) throw new Error(`${f} imports a node: module`);
      minifiedBytes += code.length;
      gzipBytes += gzipSync(code, { level: 9 }).length;
    }
    return { minifiedBytes, gzipBytes };
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const kb = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
  const show = (what: string, size: BundleSize) => console.log(`kora/client browser bundle, ${what} (graphql-ws included): ${kb(size.minifiedBytes)} minified, ${kb(size.gzipBytes)} gzip`);
  show("createClient + indexedDbStorage", await clientBundleSize(["createClient", "indexedDbStorage"]));
  show("with createTabClient", await clientBundleSize(["createTabClient"]));
  show("every export", await clientBundleSize());
}
