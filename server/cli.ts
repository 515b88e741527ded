#!/usr/bin/env node
/**
 * The `kora` command (docs/cli.md): `serve` (the default, what `npm start` runs), `export`,
 * `import`, `backup`, `restore`, `rules check` and `rules test`. Every subcommand is imported only
 * when it runs, so a command (or a mistake) does not pay for the server's modules.
 * The store comes from the environment as for `serve`: DATABASE_URL, else PGlite in KORA_DATA_DIR;
 * KORA_SCHEMA names the schema.
 */
import { Command, Option } from "commander";
import { type EnvSettings, settingsFromEnv } from "./settings.ts";

let env: EnvSettings;
try {
  env = settingsFromEnv();
} catch (error) {
  // (The words `npm start` users and their scripts already know.)
  console.error(`Kora failed to start: ${(error as Error).message}`);
  process.exit(1);
}

const program = new Command("kora")
  .description("Kora: a programmable realtime JSON tree on PostgreSQL, served over GraphQL")
  .showHelpAfterError()
  .configureOutput({ outputError: (text, write) => write(`kora: ${text.replace(/^error: /, "")}`) });

program
  .command("serve", { isDefault: true })
  .description("serve GraphQL (HTTP, SSE, WebSocket), GraphiQL and the console (the default command)")
  .option("--config <file>", "config file (default ./kora.config.ts, or KORA_CONFIG)")
  .action(async (options: { config?: string }) => {
    const { serve } = await import("./serve.ts");
    await serve(env, options);
  });

const quiet = () => new Option("-q, --quiet", "no progress output");

program
  .command("export")
  .description("write the subtree at PATH (default the whole tree) as JSON, from one consistent snapshot")
  .argument("[path]", 'the path as a JSON array, e.g. \'["user:info"]\'', "[]")
  .option("-o, --out <file>", "write to this file instead of stdout")
  .addOption(quiet())
  .action(async (path: string, options: { out?: string; quiet?: boolean }) => {
    const { exportCommand } = await import("./commands.ts");
    await exportCommand(env, path, options);
  });

program
  .command("import")
  .description("merge a JSON file into the tree (at --at), all of it in one transaction or nothing")
  .argument("<file>", "a JSON file, or - for stdin")
  .option("--at <path>", "where to merge it, as a JSON array", "[]")
  .option("--dry-run", "check the file (JSON, keys, depth, no null) without writing")
  .addOption(quiet())
  .action(async (file: string, options: { at: string; dryRun?: boolean; quiet?: boolean }) => {
    const { importCommand } = await import("./commands.ts");
    await importCommand(env, file, options);
  });

program
  .command("backup")
  .description("write a consistent snapshot of the store (leaves, stamps, tombstones) with its version")
  .option("-o, --out <file>", "write to this file instead of stdout")
  .addOption(quiet())
  .action(async (options: { out?: string; quiet?: boolean }) => {
    const { backupCommand } = await import("./commands.ts");
    await backupCommand(env, options);
  });

program
  .command("restore")
  .description("load a backup into an empty store, at the backup's version")
  .argument("<file>", "a file written by kora backup, or - for stdin")
  .addOption(quiet())
  .action(async (file: string, options: { quiet?: boolean }) => {
    const { restoreCommand } = await import("./commands.ts");
    await restoreCommand(env, file, options);
  });

const rules = program.command("rules").description("check rules files and simulate requests against them");

rules
  .command("check")
  .description("load a rules file and report its first mistake (file, line, column, pattern)")
  .argument("<file>", "a rules file (YAML or JSON)")
  .action(async (file: string) => {
    const { rulesCheckCommand } = await import("./commands.ts");
    await rulesCheckCommand(file);
  });

rules
  .command("test")
  .description("may a caller with these claims read or write here? Runs the real pipeline; nothing is written")
  .argument("<file>", "the rules file")
  .option("--as <claims>", "the caller's token claims as JSON, or null for anonymous", "null")
  .option("--read <path>", "simulate a read of this path (JSON array)")
  .option("--write <path-and-value...>", "simulate a merge: PATH VALUE (both JSON)")
  .option("--delete <path>", "simulate a delete of this path (JSON array)")
  .option("--cases <file>", "a JSON list of cases ({as, read | write+value | delete, expect?: allow|deny}) run in one go")
  .option("--tree <file>", "run against an in-memory store holding this JSON tree instead of the configured store")
  .option("--config <file>", "config whose interceptors run too (default ./kora.config.ts, or KORA_CONFIG)")
  .option("--json", "print verdicts as JSON")
  .action(async (file: string, options: Record<string, unknown>) => {
    const { rulesTestCommand } = await import("./commands.ts");
    await rulesTestCommand(env, file, options);
  });

program.parseAsync(process.argv).catch((error: unknown) => {
  console.error(`kora: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
