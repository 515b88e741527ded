import { unavailable } from "./errors.ts";

/**
 * `work`, or UNAVAILABLE once `ms` pass (0: no deadline). The work itself goes on (a statement
 * cannot be recalled from the database) under the store's own timeouts; its result is dropped.
 */
export function withDeadline<T>(work: Promise<T>, ms: number, message: () => string): Promise<T> {
  if (!(ms > 0)) return work;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(unavailable(message())), ms);
  });
  work.catch(() => {}); // a late failure after the deadline answered has nobody left to hear it
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}
