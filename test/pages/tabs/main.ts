/**
 * The page test/client.tabs.test.ts drives in Chromium: a tab client on `?kora=<ws url>&name=<replica>`
 * (`&offline=1` starts offline), exposed as `window.kora` for the test to call.
 */
import { createTabClient } from "../../../client/tabs.ts";

const params = new URLSearchParams(location.search);
const kora = createTabClient({
  url: params.get("kora") as string,
  name: params.get("name") as string,
  startOffline: params.get("offline") === "1",
  backoff: { initialMs: 50, maxMs: 500 },
});
kora.watch(["tabs"], () => {});
(window as unknown as { kora: typeof kora }).kora = kora;
