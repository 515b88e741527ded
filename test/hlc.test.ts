import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Hlc, compareStamps, formatStamp, isStamp, parseStamp } from "../core/hlc.ts";

describe("hybrid logical clock", () => {
  it("stamps strictly increase, even when the wall clock stands still or goes back", () => {
    let t = 1000;
    const clock = new Hlc("a", { clock: () => t });
    const seen: string[] = [];
    for (const step of [0, 0, 5, -3, 0, 10, -100, 0]) {
      t += step;
      seen.push(clock.now());
    }
    for (let i = 1; i < seen.length; i++) expect(compareStamps(seen[i - 1] as string, seen[i] as string)).toBeLessThan(0);
  });

  it("moves past every stamp it receives", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e12 }), fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: 1e12 }), (wall, counter, local) => {
        const clock = new Hlc("b", { clock: () => local });
        const other = formatStamp(wall, counter, "zzz");
        clock.receive(other);
        expect(clock.now() > other).toBe(true);
      }),
    );
  });

  it("formats sortable, parseable stamps; ties between nodes are broken by node id", () => {
    const a = formatStamp(1_700_000_000_000, 3, "nodeA");
    expect(isStamp(a)).toBe(true);
    expect(parseStamp(a)).toEqual({ wall: 1_700_000_000_000, counter: 3, node: "nodeA" });
    expect(formatStamp(9, 0, "x") < formatStamp(10, 0, "a")).toBe(true);
    expect(compareStamps(formatStamp(5, 1, "a"), formatStamp(5, 1, "b"))).toBeLessThan(0);
    expect(isStamp("nope")).toBe(false);
  });

  it("resumes from a persisted state without going back", () => {
    const c1 = new Hlc("c", { clock: () => 50 });
    c1.receive(formatStamp(100, 7, "d"));
    const s1 = c1.now();
    const c2 = new Hlc("c", { clock: () => 50, state: c1.current });
    expect(c2.now() > s1).toBe(true);
  });
});
