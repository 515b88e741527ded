/**
 * A shared todo list on kora/client and kora/react. Works offline: the replica and the unsent
 * writes live in IndexedDB, a service worker serves the page itself, and writes sync when the
 * network is back. Tabs of this page share one replica and one connection (createTabClient).
 * URL parameters: `kora` (the WebSocket URL of Kora's /graphql) and `list` (which list).
 * Written with `createElement` (as `h`) so it builds with no JSX setup.
 */
import { type FormEvent, createElement as h, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { createTabClient } from "../../client/index.ts";
import { KoraProvider, useKora, useMutation, usePending, useStatus, useWatch } from "../../client/react.ts";

const params = new URLSearchParams(location.search);
const url = params.get("kora") ?? `ws://${location.hostname}:4000/graphql`;
const list = params.get("list") ?? "shared";
const path = ["todos", list];

const client = createTabClient({
  url,
  name: `kora-todo:${list}`,
  startOffline: !navigator.onLine,
  backoff: { initialMs: 200, maxMs: 5000 },
});
addEventListener("offline", () => client.disconnect());
addEventListener("online", () => client.connect());

interface Todo {
  text: string;
  done?: boolean;
}

function Bar() {
  const status = useStatus();
  const pending = usePending();
  return h(
    "div",
    { id: "bar" },
    h("span", null, "status: ", h("b", { id: "status", "data-status": status }, status)),
    h("span", null, "unsent: ", h("b", { id: "pending" }, String(pending))),
  );
}

function Todos() {
  const { value } = useWatch<Record<string, Todo>>(path);
  const write = useMutation();
  const todos = value ?? {};
  return h(
    "ul",
    { id: "list" },
    ...Object.keys(todos)
      .sort()
      .map((id) => {
        const todo = todos[id] as Todo;
        return h(
          "li",
          { key: id, className: todo.done ? "done" : "", "data-id": id },
          h("input", { type: "checkbox", checked: todo.done === true, onChange: (e: { target: { checked: boolean } }) => void write.merge([...path, id, "done"], e.target.checked) }),
          h("span", null, ` ${todo.text} `),
          h("button", { type: "button", onClick: () => void write.delete([...path, id]) }, "×"),
        );
      }),
  );
}

function AddTodo() {
  const [text, setText] = useState("");
  const write = useMutation();
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const t = text.trim();
    if (!t) return;
    // Time-ordered ids: the list reads in the order items were added, on every device.
    const id = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    void write.merge([...path, id], { text: t, done: false });
    setText("");
  };
  return h(
    "form",
    { id: "add", onSubmit: submit },
    h("input", { id: "text", placeholder: "What needs doing?", autoComplete: "off", required: true, value: text, onChange: (e: { target: { value: string } }) => setText(e.target.value) }),
    h("button", { type: "submit" }, "Add"),
  );
}

function Errors() {
  const kora = useKora() as typeof client;
  const [message, setMessage] = useState("");
  useEffect(() => kora.onError(({ error }) => setMessage(`A change was refused and undone: ${error.message}`)), [kora]);
  return h("p", { id: "errors" }, message);
}

function App() {
  return h(KoraProvider, { client }, h("h1", null, "Todos"), h(Bar), h(AddTodo), h(Todos), h(Errors));
}

createRoot(document.getElementById("app") as HTMLElement).render(h(App));

// The page itself offline: a service worker answers from a cache that holds this page's files.
async function cacheShell(): Promise<void> {
  if (!("serviceWorker" in navigator)) return;
  await navigator.serviceWorker.register("./sw.js");
  // The page and the scripts and styles it loaded (not e.g. a missing favicon).
  const files = [
    location.pathname,
    ...performance
      .getEntriesByType("resource")
      .filter((e) => ["script", "link", "css"].includes((e as PerformanceResourceTiming).initiatorType))
      .map((e) => e.name)
      .filter((u) => new URL(u).origin === location.origin),
  ];
  const cache = await caches.open("kora-todo-shell");
  for (const file of new Set(files)) {
    for (let attempt = 1; ; attempt++) {
      try {
        await cache.add(file);
        break;
      } catch (error) {
        if (attempt >= 5) throw new Error(`caching ${file} failed: ${error}`);
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
  }
  await navigator.serviceWorker.ready;
}
(window as unknown as { shellCached: Promise<void> }).shellCached = cacheShell();
