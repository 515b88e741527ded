/** The store's outbox: tasks recorded with their mutation, aborted with it, leased, retried. */
import { afterEach, describe, expect, it } from "vitest";
import { emptyMutation, mergeAt } from "../core/tree.ts";
import { type StoreTarget, storeTargets } from "./helpers/db.ts";

describe.each(storeTargets().map((t) => [t.name, t] as [string, StoreTarget]))("outbox on %s", (_name, target) => {
  let dispose: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await dispose?.();
    dispose = undefined;
  });

  it("records tasks in the commit's transaction, drops them with an aborted mutation, leases and retries", async () => {
    const created = await target.create();
    dispose = created.dispose;
    const { store } = created;
    const outbox = store.outbox!;
    const r = await store.commit(async (tx) => {
      tx.enqueue?.({ interceptor: "mail", payload: { to: "dax" }, maxAttempts: 3 });
      return mergeAt(["a"], 1);
    });
    await expect(
      store.commit(async (tx) => {
        tx.enqueue?.({ interceptor: "mail", payload: { to: "nobody" }, maxAttempts: 3 });
        throw new Error("rejected");
      }),
    ).rejects.toThrow("rejected");
    const all = await outbox.list();
    expect(all.map((t) => [t.version, t.payload, t.state])).toEqual([[r.version, { to: "dax" }, "pending"]]);
    const [task] = await outbox.claim(10, 60_000);
    expect(task?.attempts).toBe(1);
    expect(await outbox.claim(10, 60_000)).toEqual([]); // leased
    await outbox.fail(task!.id, "boom", new Date(Date.now() - 1));
    const [again] = await outbox.claim(10, 60_000);
    expect([again?.attempts, again?.state]).toEqual([2, "running"]);
    await outbox.complete(again!.id);
    expect((await outbox.list({ state: "done" })).length).toBe(1);
    expect(await outbox.nextDue()).toBeUndefined();
    await store.commit(async () => emptyMutation());
  });
});
