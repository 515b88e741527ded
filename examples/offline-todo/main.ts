/**
 * A shared todo list on kora/client. Works offline: the replica and the unsent writes live in
 * IndexedDB, a service worker serves the page itself, and writes sync when the network is back.
 * URL parameters: `kora` (the WebSocket URL of Kora's /graphql) and `list` (which list).
 */
import { createClient, indexedDbStorage } from "../../client/index.ts";

const params = new URLSearchParams(location.search);
const url = params.get("kora") ?? `ws://${location.hostname}:4000/graphql`;
const list = params.get("list") ?? "shared";
const path = ["todos", list];

const client = createClient({
  url,
  storage: indexedDbStorage(`kora-todo:${list}`),
  startOffline: !navigator.onLine,
  backoff: { initialMs: 200, maxMs: 5000 },
});
addEventListener("offline", () => client.disconnect());
addEventListener("online", () => client.connect());

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const statusEl = $("status");
client.status.subscribe((s) => {
  statusEl.textContent = s;
  statusEl.dataset.status = s;
});
client.pending.subscribe((n) => {
  $("pending").textContent = String(n);
});
client.onError(({ error }) => {
  $("errors").textContent = `A change was refused and undone: ${error.message}`;
});

interface Todo {
  text: string;
  done?: boolean;
}

client.watch(path, (value) => {
  const ul = $<HTMLUListElement>("list");
  ul.replaceChildren();
  const todos = (value ?? {}) as unknown as Record<string, Todo>;
  for (const id of Object.keys(todos).sort()) {
    const todo = todos[id] as Todo;
    const li = document.createElement("li");
    li.className = todo.done ? "done" : "";
    li.dataset.id = id;
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = todo.done === true;
    box.onchange = () => void client.merge([...path, id, "done"], box.checked);
    const text = document.createElement("span");
    text.textContent = ` ${todo.text} `;
    const remove = document.createElement("button");
    remove.textContent = "×";
    remove.onclick = () => void client.delete([...path, id]);
    li.append(box, text, remove);
    ul.append(li);
  }
});

$<HTMLFormElement>("add").onsubmit = (event) => {
  event.preventDefault();
  const input = $<HTMLInputElement>("text");
  const text = input.value.trim();
  if (!text) return;
  // Time-ordered ids: the list reads in the order items were added, on every device.
  const id = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  void client.merge([...path, id], { text, done: false });
  input.value = "";
};

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
