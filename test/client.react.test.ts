// @vitest-environment happy-dom
/**
 * kora/react (client/react.ts) with React Testing Library: `useWatch` renders local data at once,
 * live changes from the server, and offline writes made through `useMutation`; `useStatus` and
 * `usePending` follow the client; server rendering gives the empty snapshot without touching it.
 */
import { act, cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { createElement as h } from "react";
import { renderToString } from "react-dom/server";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { memoryStorage } from "../client/index.ts";
import { KoraProvider, type ReactiveClient, useMutation, usePending, useStatus, useWatch } from "../client/react.ts";
import { pgliteTarget } from "./helpers/db.ts";
import { offlineClients } from "./helpers/offline.ts";
import { merge, read, startTestServer, type TestServer } from "./helpers/server.ts";

let server: TestServer;
beforeAll(async () => {
  // The components run in happy-dom's page, whose origin is not the server's: allowlisted, as a
  // browser app served from its own host is (docs/security.md).
  server = await startTestServer(pgliteTarget, { cors: { origins: [window.location.origin] } });
});
afterAll(async () => {
  await server?.close();
});
const { client, closeAll } = offlineClients(() => server.wsUrl);
afterEach(async () => {
  cleanup();
  await closeAll();
});

function Todos({ list }: { list: string }) {
  const { value, loading } = useWatch<Record<string, { text: string }>>(["rtodos", list]);
  const status = useStatus();
  const pending = usePending();
  const { merge: write, waiting } = useMutation();
  return h(
    "div",
    null,
    h("p", { "data-testid": "status" }, status),
    h("p", { "data-testid": "pending" }, String(pending)),
    h("p", { "data-testid": "waiting" }, String(waiting)),
    h("p", { "data-testid": "loading" }, String(loading)),
    h("ul", null, ...Object.keys(value ?? {}).sort().map((id) => h("li", { key: id }, value?.[id]?.text))),
    h("button", { type: "button", onClick: () => void write(["rtodos", list, "local"], { text: "written offline" }) }, "add"),
  );
}

const items = () => screen.queryAllByRole("listitem").map((li) => li.textContent);
const app = (c: ReactiveClient, list: string) => h(KoraProvider, { client: c }, h(Todos, { list }));

describe("kora/react", () => {
  it("renders local data at once, then live changes and offline writes", async () => {
    const storage = memoryStorage();
    const first = client({ storage, startOffline: true });
    await first.ready;
    void first.merge(["rtodos", "one", "a"], { text: "stored" });
    await first.close();

    const c = client({ storage, startOffline: true });
    await c.ready;
    render(app(c, "one"));
    // The first render already shows the stored data: no loading frame without it.
    expect(items()).toEqual(["stored"]);
    expect(screen.getByTestId("status").textContent).toBe("offline");
    expect(screen.getByTestId("pending").textContent).toBe("1");

    c.connect();
    await waitFor(() => expect(screen.getByTestId("status").textContent).toBe("online"), { timeout: 10_000 });
    expect(screen.getByTestId("pending").textContent).toBe("0");
    await merge(server.url, ["rtodos", "one", "b"], { text: "from the server" });
    await waitFor(() => expect(items()).toEqual(["stored", "from the server"]), { timeout: 10_000 });

    c.disconnect();
    await waitFor(() => expect(screen.getByTestId("status").textContent).toBe("offline"));
    act(() => {
      fireEvent.click(screen.getByText("add"));
    });
    // Applied at once, offline, and counted as waiting.
    expect(items()).toEqual(["stored", "from the server", "written offline"]);
    expect(screen.getByTestId("pending").textContent).toBe("1");
    expect(screen.getByTestId("waiting").textContent).toBe("1");
    c.connect();
    await waitFor(() => expect(screen.getByTestId("waiting").textContent).toBe("0"), { timeout: 10_000 });
    expect(await read(server.url, ["rtodos", "one", "local"])).toEqual({ text: "written offline" });
  });

  it("renders on the server with the fixed server snapshots", () => {
    const html = renderToString(h(KoraProvider, { client: client({ startOffline: true }) }, h(Todos, { list: "ssr" })));
    expect(html).toContain('data-testid="status">offline<');
    expect(html).toContain('data-testid="loading">true<');
  });
});
