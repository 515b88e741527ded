/**
 * Progress of a long CLI command on stderr (stdout may carry the data): a bar (cli-progress) on a
 * terminal, plain lines elsewhere (logs, CI), at most one per tenth of the work or per 2 s.
 */
import type { ProgressSink } from "./treefile.ts";

export async function createProgress(label: string, options: { quiet?: boolean; stream?: NodeJS.WriteStream } = {}): Promise<ProgressSink> {
  const stream = options.stream ?? process.stderr;
  if (options.quiet) return { start() {}, advance() {}, stop() {} };
  if (stream.isTTY) {
    const { SingleBar, Presets } = (await import("cli-progress")).default;
    let bar: InstanceType<typeof SingleBar> | undefined;
    let value = 0;
    return {
      start(total, unit) {
        bar = new SingleBar(
          {
            stream,
            format: `${label} [{bar}] {percentage}% | {value}/{total} ${unit} | {eta_formatted} left`,
            hideCursor: true,
            clearOnComplete: false,
          },
          Presets.shades_classic,
        );
        bar.start(total ?? 0, 0);
      },
      advance(by) {
        value += by;
        bar?.update(value);
      },
      stop() {
        bar?.stop();
      },
    };
  }
  let total: number | undefined;
  let unit = "";
  let value = 0;
  let lastShown = 0;
  let lastAt = Date.now();
  const show = () => {
    const of = total ? ` of ${total.toLocaleString("en-US")} (${Math.floor((value / total) * 100)}%)` : "";
    stream.write(`${label}: ${value.toLocaleString("en-US")}${of} ${unit}\n`);
    lastShown = value;
    lastAt = Date.now();
  };
  return {
    start(t, u) {
      total = t;
      unit = u;
    },
    advance(by) {
      value += by;
      const step = total ? total / 10 : Number.POSITIVE_INFINITY;
      if (value - lastShown >= step || Date.now() - lastAt >= 2000) show();
    },
    stop() {
      if (value !== lastShown || value === 0) show();
    },
  };
}
