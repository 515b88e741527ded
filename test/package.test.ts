/**
 * Kora ships as JavaScript (docs/client.md, "Installing"): `npm pack` (which builds dist/ through
 * `prepare`), install the tarball into a temporary plain-JavaScript project, and use it as users
 * do: the `kora` bin serves, a Node ESM program syncs through `kora/client` and `kora/client/file`,
 * a Vite build with no TypeScript config bundles `kora/client` for the browser, and `tsc` on a
 * small TypeScript consumer resolves the `types` conditions.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { build } from "vite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const repo = fileURLToPath(new URL("..", import.meta.url));
let dir: string;
let app: string;
let server: ChildProcess | undefined;
let serverUrl: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kora-pack-"));
  const { stdout } = await run("npm", ["pack", "--pack-destination", dir, "--silent"], { cwd: repo, maxBuffer: 1 << 24 });
  const tarball = join(dir, stdout.trim().split("\n").pop() as string);
  app = join(dir, "app");
  await mkdir(app);
  await writeFile(join(app, "package.json"), JSON.stringify({ name: "plain-js-app", private: true, type: "module" }));
  // The dependencies come from npm's cache when present (the repository's own `npm ci` filled it).
  await run("npm", ["install", tarball, "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: app, maxBuffer: 1 << 24 });

  server = spawn(process.execPath, ["node_modules/kora/dist/server/cli.js"], {
    cwd: app,
    env: { ...process.env, PORT: "0", HOST: "127.0.0.1", KORA_DATA_DIR: join(dir, "data"), DATABASE_URL: "" },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let out = "";
  serverUrl = await new Promise<string>((resolve, reject) => {
    server?.stdout?.setEncoding("utf8").on("data", (c: string) => {
      out += c;
      const m = /GraphiQL at (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1] as string);
    });
    server?.stderr?.setEncoding("utf8").on("data", (c: string) => {
      out += c;
    });
    server?.on("exit", (code) => reject(new Error(`kora exited with ${code}: ${out}`)));
  });
}, 240_000);

afterAll(async () => {
  if (server?.pid && server.exitCode === null) {
    const exited = new Promise((r) => server?.once("exit", r));
    process.kill(-server.pid, "SIGTERM");
    await exited;
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("the packed package", () => {
  it("has no TypeScript sources in its exports and serves from its bin", async () => {
    const pkg = JSON.parse(await readFile(join(app, "node_modules/kora/package.json"), "utf8")) as { exports: Record<string, unknown> };
    expect(JSON.stringify(pkg.exports)).not.toMatch(/(?<!\.d)\.ts"/);
    // kora/react ships too (React is an optional peer: this app has none, and needs none for the rest).
    expect(Object.keys(pkg.exports)).toContain("./react");
    await readFile(join(app, "node_modules/kora/dist/client/react.js"), "utf8");
    const res = await fetch(`${serverUrl.replace(/\/graphql$/, "")}/healthz`);
    expect(res.status).toBe(200);
  });

  it("works from a plain-JavaScript Node ESM program", async () => {
    const program = `
import WebSocket from "ws";
import { createClient } from "kora/client";
import { fileStorage } from "kora/client/file";
const url = process.argv[2];
const client = createClient({ url, webSocketImpl: WebSocket, storage: fileStorage("./state") });
const seen = [];
client.watch(["pack"], (v) => seen.push(v));
await client.merge(["pack", "hello"], "from plain JavaScript");
await client.synced();
console.log(JSON.stringify({ value: client.get(["pack"]), status: client.status.value }));
await client.close();
`;
    await writeFile(join(app, "program.js"), program);
    const { stdout } = await run(process.execPath, ["program.js", serverUrl.replace(/^http/, "ws")], { cwd: app });
    expect(JSON.parse(stdout)).toEqual({ value: { hello: "from plain JavaScript" }, status: "online" });
  }, 60_000);

  it("bundles kora/client with Vite and no TypeScript config, without Node-only modules", async () => {
    const web = join(app, "web");
    await mkdir(web);
    await writeFile(join(web, "index.html"), `<!doctype html><script type="module" src="./main.js"></script>`);
    await writeFile(
      join(web, "main.js"),
      `import { createClient, indexedDbStorage } from "kora/client";\nwindow.client = createClient({ url: "ws://localhost:4000/graphql", storage: indexedDbStorage("x") });\n`,
    );
    const warnings: string[] = [];
    await build({
      configFile: false,
      root: web,
      logLevel: "silent",
      build: {
        outDir: join(web, "dist"),
        rollupOptions: {
          onwarn(w) {
            warnings.push(String(w.message));
          },
        },
      },
    });
    expect(warnings.filter((w) => /node:|externalized/i.test(w))).toEqual([]);
    const assets = await readdir(join(web, "dist", "assets"));
    const js = await readFile(join(web, "dist", "assets", assets.find((f) => f.endsWith(".js")) as string), "utf8");
    expect(js).toContain("graphql-transport-ws"); // graphql-ws is in the bundle
    expect(js).not.toMatch(/["']node:/);
  }, 60_000);

  it("resolves types for a TypeScript consumer", async () => {
    const ts = join(app, "ts");
    await mkdir(ts);
    await writeFile(
      join(ts, "tsconfig.json"),
      JSON.stringify({ compilerOptions: { strict: true, module: "NodeNext", moduleResolution: "NodeNext", target: "ES2022", noEmit: true, skipLibCheck: true, types: [] }, include: ["*.ts"] }),
    );
    await writeFile(
      join(ts, "consumer.ts"),
      `import { createClient, memoryStorage, type PendingWrite, type Status } from "kora/client";
import { fileStorage } from "kora/client/file";
import { startKora } from "kora";
const client = createClient({ url: "ws://localhost:4000/graphql", storage: memoryStorage() });
const status: Status = client.status.value;
const pending: number = client.pending.value;
const write: Promise<PendingWrite> = client.merge(["a"], 1);
// @ts-expect-error: the types are real (a status is not a number)
const wrong: number = client.status.value;
export { status, pending, write, wrong, fileStorage, startKora };
`,
    );
    const tsc = join(repo, "node_modules/typescript/bin/tsc");
    const result = await run(process.execPath, [tsc, "-p", ts], { cwd: ts }).then(
      () => "",
      (e: { stdout?: string }) => e.stdout ?? String(e),
    );
    expect(result).toBe("");
  }, 60_000);
});
