/**
 * Rules files: mistakes fail loading (and `npm start`) with file, line, column and pattern;
 * a changed file is reloaded; a broken edit keeps the previous rules.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { RulesError, createRulesEngine, loadRules, parseRules } from "../interceptors/rules.ts";
import { runCliToExit } from "./helpers/server.ts";

function tempFile(name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), "kora-rules-"));
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

describe("loading rules files", () => {
  it.each([
    ["a YAML syntax error", "rules:\n  todos/$uid: [\n", /^r\.yaml:\d+:\d+: syntax error: Flow sequence/],
    ["an unknown top-level key", "rule:\n  a: { read: 'true' }\n", /^r\.yaml:1:1: unknown key "rule"/],
    ["an unknown rule key", "rules:\n  todos/$uid:\n    read: 'true'\n    wirte: 'true'\n", /^r\.yaml:4:5: rule "todos\/\$uid": unknown key "wirte"/],
    ["a CEL syntax error", "rules:\n  todos/$uid:\n    read: auth.sub ==\n", /^r\.yaml:3:11: rule "todos\/\$uid": read is not valid CEL/],
    ["an unknown variable in CEL", "rules:\n  todos/$uid:\n    write: auth.sub == owner\n", /^r\.yaml:3:12: rule "todos\/\$uid": write is not valid CEL/],
    ["a non-boolean rule", "rules:\n  a:\n    read: '1 + 2'\n", /^r\.yaml:3:11: rule "a": read must be a boolean expression/],
    ["a bad pattern", "rules:\n  a/**/b:\n    read: 'true'\n", /^r\.yaml:2:3: rule "a\/\*\*\/b": .*"\*\*" may only be the last key/],
    ["a bad JSON Schema", "rules:\n  a:\n    schema: { type: strin }\n", /^r\.yaml:3:13: rule "a": schema is not a valid JSON Schema/],
    ["a denormalize path using an unknown capture", "rules:\n  u/$uid/c:\n    denormalize:\n      - path: 'x/$who'\n", /^r\.yaml:4:15: rule "u\/\$uid\/c": denormalize path uses \$who/],
    ["a duplicate pattern", "rules:\n  a: { read: 'true' }\n  a: { write: 'true' }\n", /^r\.yaml:3:\d+: syntax error: Map keys must be unique/],
  ])("%s", (_what, text, message) => {
    expect(() => parseRules(text, "r.yaml")).toThrow(RulesError);
    expect(() => parseRules(text, "r.yaml")).toThrow(message);
  });

  it("JSON files load with the same checks and line numbers", () => {
    const ok = parseRules('{"rules": {"a/$x": {"read": "x == \\"1\\""}}}', "r.json");
    expect(ok.rules.length).toBe(1);
    expect(() => parseRules('{\n  "rules": {\n    "a": {"read": "("}\n  }\n}', "r.json")).toThrow(/^r\.json:3:19: rule "a": read is not valid CEL/);
  });

  it("the examples load", () => {
    expect(loadRules("examples/todo/kora.rules.yaml").rules.length).toBeGreaterThan(3);
    expect(loadRules("examples/company/kora.rules.yaml").rules.length).toBe(2);
  });

  it("reloads a changed file; a broken edit keeps the previous rules", async () => {
    const file = tempFile("kora.rules.yaml", "rules:\n  a: { read: 'true' }\n");
    let reloaded: () => void = () => {};
    let failed: (msg: string) => void = () => {};
    const log = {
      info: () => reloaded(),
      warn: () => {},
      error: (_o: object | string, msg?: string) => failed(msg ?? ""),
    };
    const engine = createRulesEngine({ file, log });
    try {
      expect(engine.ruleset.rules.map((r) => r.source)).toEqual(["a"]);
      const reload = new Promise<void>((resolve) => {
        reloaded = resolve;
      });
      writeFileSync(file, "rules:\n  a: { read: 'true' }\n  b: { write: 'true' }\n");
      await reload;
      expect(engine.ruleset.rules.map((r) => r.source)).toEqual(["a", "b"]);
      const failure = new Promise<string>((resolve) => {
        failed = resolve;
      });
      writeFileSync(file, "rules:\n  a: { read: 'nope(' }\n");
      expect(await failure).toMatch(/kora\.rules\.yaml:2:\d+: rule "a": read is not valid CEL/);
      expect(engine.ruleset.rules.map((r) => r.source)).toEqual(["a", "b"]);
    } finally {
      engine.close();
    }
  });

  it("npm start fails with the precise message when the rules file is bad", async () => {
    const rules = tempFile("kora.rules.yaml", "rules:\n  todos/$uid:\n    read: auth.sub == \n");
    const config = join(rules, "..", "kora.config.ts");
    writeFileSync(config, `export default { rules: "kora.rules.yaml" };\n`);
    const { code, stderr } = await runCliToExit(["--config", config], { PORT: "0", LOG_LEVEL: "fatal", KORA_DATA_DIR: join(rules, "..", "data") });
    expect(code).toBe(1);
    expect(stderr).toMatch(/Kora failed to start: .*kora\.rules\.yaml:3:11: rule "todos\/\$uid": read is not valid CEL/);
  });
});
