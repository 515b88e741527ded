/**
 * The effect runner: takes due tasks from the store's outbox and runs them with the `runEffect`
 * of the interceptor that declared them, retrying with exponential backoff until they succeed or
 * run out of attempts. Tasks are leased, so several gateway processes share the work; a process
 * that dies mid-run leaves its lease to expire and the task runs again (at least once).
 */
import type { Logger } from "../core/gateway.ts";
import type { Outbox, OutboxTask } from "../core/store.ts";
import type { Interceptor, MutationInput } from "./types.ts";

export interface EffectRunnerOptions {
  outbox: Outbox;
  /** Interceptors by name. */
  handlers: ReadonlyMap<string, Interceptor>;
  log: Logger;
  /** How often to look for due tasks recorded by other processes, in ms. */
  pollMs: number;
  /** An internal write through the whole pipeline. */
  commit(mutation: MutationInput): Promise<{ version: number }>;
  /** How long a claimed task is leased before another process may run it again. Default 60 s. */
  leaseMs?: number;
  /** Tasks claimed per round. Default 16. */
  batch?: number;
}

export interface EffectRunner {
  start(): void;
  /** Looks for due tasks now (called after a commit that recorded some). */
  kick(): void;
  /** Resolves when no task is due or running (tests; retries waiting for later count as idle). */
  idle(): Promise<void>;
  close(): Promise<void>;
}

/** Delay before attempt `attempt + 1`, in ms. */
export function backoff(attempt: number, retry: Interceptor["effectRetry"]): number {
  const base = retry?.baseMs ?? 500;
  const max = retry?.maxMs ?? 60_000;
  return Math.min(max, base * 2 ** Math.max(0, attempt - 1));
}

export function createEffectRunner(options: EffectRunnerOptions): EffectRunner {
  const { outbox, handlers, log } = options;
  const leaseMs = options.leaseMs ?? 60_000;
  const batch = options.batch ?? 16;
  let closed = false;
  let ticking: Promise<void> | undefined;
  let again = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let idleWaiters: (() => void)[] = [];

  async function run(task: OutboxTask): Promise<void> {
    const interceptor = handlers.get(task.interceptor);
    try {
      if (!interceptor?.runEffect) throw new Error(`no interceptor named ${JSON.stringify(task.interceptor)} with runEffect is configured`);
      await interceptor.runEffect(task.payload, { version: task.version, attempt: task.attempts, commit: options.commit });
      await outbox.complete(task.id);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      const last = task.attempts >= task.maxAttempts;
      const retryAt = last ? null : new Date(Date.now() + backoff(task.attempts, interceptor?.effectRetry));
      log.warn(
        { err: error, task: task.id, interceptor: task.interceptor, attempt: task.attempts, retryAt },
        last ? "effect failed for good; its task is marked failed" : "effect failed; it will be retried",
      );
      await outbox.fail(task.id, message, retryAt);
    }
  }

  async function tick(): Promise<void> {
    for (;;) {
      again = false;
      const tasks = await outbox.claim(batch, leaseMs);
      await Promise.all(tasks.map(run));
      if (closed || (tasks.length < batch && !again)) break;
    }
    await schedule();
  }

  async function schedule(): Promise<void> {
    if (closed) return;
    const due = await outbox.nextDue();
    const wait = due === undefined ? options.pollMs : Math.max(0, Math.min(options.pollMs, due.getTime() - Date.now()));
    if (due === undefined || due.getTime() > Date.now()) {
      const waiters = idleWaiters;
      idleWaiters = [];
      for (const w of waiters) w();
    }
    if (timer) clearTimeout(timer);
    timer = setTimeout(kick, wait);
    timer.unref?.();
  }

  function kick(): void {
    if (closed) return;
    if (ticking) {
      again = true;
      return;
    }
    ticking = tick()
      .catch((error) => {
        log.error({ err: error }, "the effect runner could not read the outbox; retrying");
        if (!closed) {
          if (timer) clearTimeout(timer);
          timer = setTimeout(kick, options.pollMs);
          timer.unref?.();
        }
      })
      .finally(() => {
        ticking = undefined;
        if (again) kick();
      });
  }

  return {
    start: kick,
    kick,
    idle() {
      return new Promise((resolve) => {
        idleWaiters.push(resolve);
        kick();
      });
    },
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      await ticking;
      for (const w of idleWaiters.splice(0)) w();
    },
  };
}
