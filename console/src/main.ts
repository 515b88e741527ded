/**
 * The Kora console (docs/console.md): the tree as a lazily loaded outline, live, editable, with
 * the rules simulator and the effects outbox. Reads, watches and edits are ordinary GraphQL
 * requests to /graphql as the signed-in user (rules apply); the simulator and the outbox use
 * the admin API at /console/api (server/console.ts). Preact with `h` calls: no JSX build step.
 */
import { type Client, createClient } from "graphql-ws";
import { h, render } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import "./style.css";

type Json = string | number | boolean | null | Json[] | { [k: string]: Json };
type Path = string[];
const PAGE = 50;

// ---------------------------------------------------------------------------------------------
// Session: the JWT used for GraphQL, the admin credential for the console API.

const session = {
  jwt: sessionStorage.getItem("kora.jwt") ?? "",
  admin: sessionStorage.getItem("kora.admin") ?? "",
};

let wsClient: Client | undefined;
function ws(): Client {
  wsClient ??= createClient({
    url: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/graphql`,
    connectionParams: () => (session.jwt ? { authorization: `Bearer ${session.jwt}` } : {}),
    retryAttempts: Number.POSITIVE_INFINITY,
    shouldRetry: () => true,
  });
  return wsClient;
}

class GraphQLFailure extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

async function gql<T>(query: string, variables: Record<string, unknown>): Promise<T> {
  const res = await fetch("/graphql", {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/graphql-response+json, application/json",
      ...(session.jwt ? { authorization: `Bearer ${session.jwt}` } : {}),
    },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: T; errors?: { message: string; extensions?: { code?: string } }[] };
  const error = body.errors?.[0];
  if (error) throw new GraphQLFailure(error.message, error.extensions?.code);
  return body.data as T;
}

async function adminApi<T>(path: string, body?: unknown): Promise<T> {
  const res = await fetch(`/console/api/${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { "content-type": "application/json", ...(session.admin ? { authorization: `Bearer ${session.admin}` } : {}) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const out = (await res.json()) as T & { error?: { code: string; message: string } };
  if (out.error) throw new GraphQLFailure(out.error.message, out.error.code);
  return out;
}

// Children are listed with `keys` (each child's key and type, a small leaf's value; nothing
// below a child is read or sent): opening the parent of a node with 100,000 children costs what
// opening a node with ten does. `path` reads one leaf too large to come with its listing.
const KEYS = "query($path: [String!]!, $after: String, $limit: Int) { keys(path: $path, after: $after, limit: $limit) { version type next children { key type value size } } }";
const READ = "query($path: [String!]!) { path(path: $path) }";
const MERGE = "mutation($path: [String!]!, $value: JSON!) { merge(path: $path, value: $value) { version } }";
const DELETE = "mutation($path: [String!]!) { delete(path: $path) { version } }";
// Watches start at the listing's version (`since`): the server sends only later changes, not a
// snapshot of the whole subtree (which could be 100,000 leaves) as a watch without `since` does.
const WATCH = "subscription($path: [String!]!, $since: String) { watch(path: $path, since: $since) { version snapshot merge delete } }";

// ---------------------------------------------------------------------------------------------
// Tree state: loaded pages of children per expanded path, and watches of every expanded node.

const keyOf = (path: Path) => JSON.stringify(path);
const isObject = (v: unknown): v is Record<string, Json> => typeof v === "object" && v !== null && !Array.isArray(v);

/** A child as `keys` lists it: an object (`type` "OBJECT") or a leaf, whose value comes when small. */
interface ChildKey {
  key: string;
  type: "OBJECT" | "STRING" | "NUMBER" | "BOOLEAN" | "ARRAY";
  value: Json;
  size: number | null;
}

interface Loaded {
  /** Children in byte order (the server's order). */
  children: ChildKey[];
  /** The key to list on from, when more children follow. */
  next: string | null;
  /** The version the first page was read at: where the watch starts. */
  version: string;
}

/** Lists up to PAGE children of `path` after `after` (exclusive), or from the start. */
async function loadChildren(path: Path, after?: string): Promise<Loaded> {
  const data = await gql<{ keys: (Loaded & { type: string }) | null }>(KEYS, { path, limit: PAGE, ...(after !== undefined ? { after } : {}) });
  const page = data.keys;
  if (page === null) return { children: [], next: null, version: "" };
  return { children: page.children, next: page.next, version: page.version };
}

/** A leaf's whole value: the one that came with its listing, else read with `path`. */
async function leafValue(path: Path, child: ChildKey): Promise<Json | undefined> {
  if (child.value !== null) return child.value;
  return (await gql<{ path: Json }>(READ, { path })).path ?? undefined;
}

/** Keys directly under `path` that a watch event's merge or delete touches. */
function changedKeys(event: { merge: Json; delete: Json }, path: Path): string[] {
  const at = (tree: Json): Json | undefined => {
    let node: Json | undefined = tree;
    for (const k of path) {
      if (!isObject(node)) return node;
      node = node[k];
    }
    return node;
  };
  const keys = new Set<string>();
  for (const t of [at(event.merge), at(event.delete)]) if (isObject(t)) for (const k of Object.keys(t)) keys.add(k);
  return [...keys];
}

// ---------------------------------------------------------------------------------------------
// Components

function valueView(child: ChildKey) {
  const type = child.type.toLowerCase();
  if (child.type === "OBJECT") return h("span", { class: "value type-object" }, "{…}");
  if (child.value === null) return h("span", { class: `value type-${type}`, title: `${child.size} bytes` }, `${type}, ${child.size} bytes…`);
  const text = JSON.stringify(child.value);
  return h("span", { class: `value type-${type}`, title: text }, text.length > 120 ? `${text.slice(0, 120)}…` : text);
}

interface TreeProps {
  path: Path;
  selected: Path | undefined;
  onSelect: (path: Path, value: Json | undefined) => void;
  /** Bumped after an edit made here: reload. */
  epoch: number;
}

function Node(props: TreeProps & { child: ChildKey; flash: number }) {
  const { path, child } = props;
  const [open, setOpen] = useState(false);
  const rowRef = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (props.flash === 0 || !rowRef.current) return;
    const row = rowRef.current;
    row.classList.remove("flash");
    void row.offsetWidth; // restart the animation
    row.classList.add("flash");
  }, [props.flash]);
  const object = child.type === "OBJECT";
  const selected = props.selected !== undefined && keyOf(props.selected) === keyOf(path);
  const select = () => {
    if (object) return props.onSelect(path, undefined);
    leafValue(path, child).then(
      (v) => props.onSelect(path, v),
      () => props.onSelect(path, undefined),
    );
  };
  return h(
    "div",
    { class: "node" },
    h(
      "div",
      { ref: rowRef, class: `row${selected ? " selected" : ""}`, "data-path": keyOf(path) },
      h("span", { class: "toggle", onClick: () => object && setOpen(!open) }, object ? (open ? "▾" : "▸") : ""),
      h("span", { class: "key", onClick: select }, child.key),
      object && open ? null : valueView(child),
    ),
    object && open ? h(Children, { path, selected: props.selected, onSelect: props.onSelect, epoch: props.epoch }) : null,
  );
}

function Children(props: TreeProps) {
  const { path } = props;
  const [loaded, setLoaded] = useState<Loaded | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [flash, setFlash] = useState<Record<string, number>>({});
  const pages = useRef(1);
  // Where the watch starts: the version of the first listing (set once).
  const [since, setSince] = useState<string | undefined>();

  const reloadNow = useCallback(async () => {
    try {
      // Reload as many pages as are shown, so "more" pages stay in view after a change.
      let all: Loaded = await loadChildren(path);
      for (let p = 1; p < pages.current && all.next !== null; p++) {
        const next = await loadChildren(path, all.next);
        all = { children: [...all.children, ...next.children], next: next.next, version: all.version };
      }
      setLoaded(all);
      setSince((s) => s ?? all.version);
      setError(undefined);
    } catch (e) {
      setError((e as Error).message);
    }
  }, [keyOf(path)]);

  // Events arriving while a reload runs (a burst, a replay after reconnecting) cost one more
  // reload, not one each.
  const running = useRef<Promise<void> | undefined>();
  const again = useRef(false);
  const reload = useCallback((): Promise<void> => {
    if (running.current) {
      again.current = true;
      return running.current;
    }
    const run = (async () => {
      do {
        again.current = false;
        await reloadNow();
      } while (again.current);
      running.current = undefined;
    })();
    running.current = run;
    return run;
  }, [reloadNow]);

  useEffect(() => {
    void reload();
  }, [reload, props.epoch]);

  // Live: this expanded node is watched from its listing's version; a change reloads it and
  // flashes where it happened. A snapshot (the server could not replay from `since`) reloads too.
  useEffect(() => {
    if (since === undefined) return;
    const stop = ws().subscribe<{ watch: { snapshot: boolean; merge: Json; delete: Json } }>(
      { query: WATCH, variables: { path, ...(since ? { since } : {}) } },
      {
        next: (r) => {
          // An event the server refused (e.g. over the read bound) comes as errors.
          const refused = (r as { errors?: readonly { message: string }[] }).errors;
          if (refused?.length) setError(refused.map((x) => x.message).join("; "));
          const event = r.data?.watch;
          if (!event) return;
          const keys = event.snapshot ? [] : changedKeys(event, path);
          void reload().then(() => setFlash((f) => Object.fromEntries([...Object.entries(f), ...keys.map((k) => [k, (f[k] ?? 0) + 1])])));
        },
        error: (e) => setError(Array.isArray(e) ? (e as { message: string }[]).map((x) => x.message).join("; ") : String(e)),
        complete: () => {},
      },
    );
    return stop;
  }, [keyOf(path), since]);

  if (error) return h("div", { class: "children error" }, error);
  if (!loaded) return h("div", { class: "children" }, "…");
  if (loaded.children.length === 0) return h("div", { class: "children" }, h("em", null, "(nothing here)"));
  return h(
    "div",
    { class: "children" },
    loaded.children.map((c) =>
      h(Node, { key: c.key, path: [...path, c.key], child: c, selected: props.selected, onSelect: props.onSelect, epoch: props.epoch, flash: flash[c.key] ?? 0 }),
    ),
    loaded.next !== null
      ? h(
          "button",
          {
            class: "more",
            onClick: async () => {
              if (loaded.next === null) return;
              const next = await loadChildren(path, loaded.next);
              pages.current++;
              setLoaded({ children: [...loaded.children, ...next.children], next: next.next, version: loaded.version });
            },
          },
          `more after ${JSON.stringify(loaded.next)}…`,
        )
      : null,
  );
}

function Editor(props: { path: Path; value: Json | undefined; onChanged: () => void; onSelect: (p: Path) => void }) {
  const { path } = props;
  const [text, setText] = useState(props.value === undefined ? "" : JSON.stringify(props.value));
  const [childKey, setChildKey] = useState("");
  const [childValue, setChildValue] = useState("");
  const [message, setMessage] = useState<{ ok: boolean; text: string } | undefined>();
  useEffect(() => {
    setText(props.value === undefined ? "" : JSON.stringify(props.value));
    setMessage(undefined);
  }, [keyOf(path), JSON.stringify(props.value)]);
  const run = async (what: string, fn: () => Promise<{ version: string }>) => {
    try {
      const r = await fn();
      setMessage({ ok: true, text: `${what}: committed as version ${r.version}` });
      props.onChanged();
    } catch (e) {
      const code = (e as GraphQLFailure).code;
      setMessage({ ok: false, text: `${what} refused${code ? ` (${code})` : ""}: ${(e as Error).message}` });
    }
  };
  const parse = (t: string): Json => JSON.parse(t) as Json;
  const copy = () => void navigator.clipboard?.writeText(keyOf(path)).catch(() => {});
  return h(
    "section",
    { id: "editor" },
    h("h2", null, "Selected"),
    h(
      "div",
      { class: "crumbs", id: "breadcrumb" },
      h("button", { onClick: () => props.onSelect([]) }, "root"),
      path.map((k, i) => h("span", { key: i }, " / ", h("button", { onClick: () => props.onSelect(path.slice(0, i + 1)) }, k))),
    ),
    h("div", { class: "actions" }, h("code", { class: "path", id: "path" }, keyOf(path)), h("button", { onClick: copy }, "Copy path")),
    path.length > 0
      ? [
          h("label", null, "Value (JSON; merged at this path: a leaf replaces, an object merges)"),
          h("textarea", { id: "value", value: text, onInput: (e: Event) => setText((e.target as HTMLTextAreaElement).value) }),
          h(
            "div",
            { class: "actions" },
            h("button", { id: "set", onClick: () => run("set", async () => (await gql<{ merge: { version: string } }>(MERGE, { path, value: parse(text) })).merge) }, "Set value"),
            h(
              "button",
              {
                id: "delete",
                onClick: () => {
                  if (!confirm(`Delete ${keyOf(path)} and everything under it?`)) return;
                  void run("delete", async () => (await gql<{ delete: { version: string } }>(DELETE, { path })).delete);
                },
              },
              "Delete subtree…",
            ),
          ),
        ]
      : null,
    h("label", null, "Add a child"),
    h(
      "div",
      { class: "actions" },
      h("input", { id: "child-key", placeholder: "key", value: childKey, onInput: (e: Event) => setChildKey((e.target as HTMLInputElement).value) }),
      h("input", { id: "child-value", placeholder: "JSON value", value: childValue, onInput: (e: Event) => setChildValue((e.target as HTMLInputElement).value) }),
      h(
        "button",
        { id: "add", onClick: () => run("add", async () => (await gql<{ merge: { version: string } }>(MERGE, { path: [...path, childKey], value: parse(childValue) })).merge) },
        "Add",
      ),
    ),
    message ? h("div", { id: "message", class: message.ok ? "ok" : "error" }, message.text) : null,
  );
}

interface VerdictView {
  allowed: boolean;
  code?: string;
  message?: string;
  decidedBy?: { rule?: string; expression?: string; kind: string; path: Path };
}

function Simulator(props: { path: Path }) {
  const [claims, setClaims] = useState('{"sub": "dax"}');
  const [op, setOp] = useState("read");
  const [value, setValue] = useState('"x"');
  const [result, setResult] = useState<{ ok: boolean; text: string } | undefined>();
  const runIt = async () => {
    try {
      const as = claims.trim() === "" || claims.trim() === "null" ? null : JSON.parse(claims);
      const body = op === "read" ? { as, read: props.path } : op === "write" ? { as, write: props.path, value: JSON.parse(value) } : { as, delete: props.path };
      const v = await adminApi<VerdictView>("simulate", body);
      const by = v.decidedBy?.rule ? ` — by rule "${v.decidedBy.rule}" (${v.decidedBy.kind}: ${v.decidedBy.expression})` : "";
      setResult({ ok: v.allowed, text: v.allowed ? `ALLOWED${by}` : `DENIED (${v.code}): ${v.message}` });
    } catch (e) {
      setResult({ ok: false, text: (e as Error).message });
    }
  };
  return h(
    "section",
    { id: "simulator" },
    h("h2", null, `Rules simulator: may these claims ${op} ${keyOf(props.path)}?`),
    h("label", null, "Claims (JSON, or null for anonymous)"),
    h("textarea", { id: "sim-claims", value: claims, onInput: (e: Event) => setClaims((e.target as HTMLTextAreaElement).value) }),
    h(
      "div",
      { class: "actions" },
      h(
        "select",
        { id: "sim-op", value: op, onChange: (e: Event) => setOp((e.target as HTMLSelectElement).value) },
        ["read", "write", "delete"].map((o) => h("option", { key: o, value: o }, o)),
      ),
      op === "write" ? h("input", { id: "sim-value", value, onInput: (e: Event) => setValue((e.target as HTMLInputElement).value) }) : null,
      h("button", { id: "sim-run", onClick: runIt }, "Simulate"),
    ),
    result ? h("div", { id: "sim-result", class: result.ok ? "ok" : "error" }, result.text) : null,
  );
}

interface Task {
  id: number;
  interceptor: string;
  state: string;
  attempts: number;
  maxAttempts: number;
  lastError: string | null;
  nextAt: string;
}

function Effects(props: { epoch: number }) {
  const [tasks, setTasks] = useState<Task[]>([]);
  const [error, setError] = useState<string | undefined>();
  const [tick, setTick] = useState(0);
  useEffect(() => {
    adminApi<{ tasks: Task[] }>("effects").then(
      (r) => {
        setTasks(r.tasks.filter((t) => t.state !== "done"));
        setError(undefined);
      },
      (e: Error) => setError(e.message),
    );
  }, [tick, props.epoch]);
  return h(
    "section",
    { id: "effects" },
    h("h2", null, "Effects outbox ", h("button", { onClick: () => setTick(tick + 1) }, "Refresh")),
    error ? h("div", { class: "error" }, error) : null,
    tasks.length === 0
      ? h("em", null, "no pending, running or failed tasks")
      : h(
          "table",
          null,
          h("tr", null, ["id", "interceptor", "state", "attempts", "last error", ""].map((c) => h("th", { key: c }, c))),
          tasks.map((t) =>
            h(
              "tr",
              { key: t.id, "data-task": t.id },
              h("td", null, t.id),
              h("td", null, t.interceptor),
              h("td", null, t.state),
              h("td", null, `${t.attempts}/${t.maxAttempts}`),
              h("td", { class: "error" }, t.lastError ?? ""),
              h(
                "td",
                null,
                t.state === "failed"
                  ? h("button", { class: "retry", onClick: () => adminApi("effects/retry", { id: t.id }).then(() => setTick(tick + 1), (e: Error) => setError(e.message)) }, "Retry")
                  : null,
              ),
            ),
          ),
        ),
  );
}

function App() {
  const [jwt, setJwt] = useState(session.jwt);
  const [admin, setAdmin] = useState(session.admin);
  const [epoch, setEpoch] = useState(0);
  const [signedIn, setSignedIn] = useState(0);
  const [selected, setSelected] = useState<{ path: Path; value: Json | undefined }>({ path: [], value: undefined });
  const [info, setInfo] = useState<{ description: string; version: string; admin: boolean } | undefined>();
  useEffect(() => {
    adminApi<{ description: string; version: string; admin: boolean }>("info").then(setInfo, () => {});
  }, [epoch]);
  const signIn = () => {
    session.jwt = jwt.trim();
    session.admin = admin.trim();
    sessionStorage.setItem("kora.jwt", session.jwt);
    sessionStorage.setItem("kora.admin", session.admin);
    // Watches reconnect with the new token.
    void wsClient?.dispose();
    wsClient = undefined;
    setSignedIn(signedIn + 1);
    setEpoch(epoch + 1);
  };
  const select = (path: Path, value?: Json) => setSelected({ path, value });
  return h(
    "div",
    null,
    h(
      "header",
      null,
      h("h1", null, "Kora console"),
      h("input", { id: "jwt", placeholder: "JWT (for GraphQL; rules apply)", value: jwt, onInput: (e: Event) => setJwt((e.target as HTMLInputElement).value) }),
      h("input", { id: "admin", type: "password", placeholder: "admin credential (console API)", value: admin, onInput: (e: Event) => setAdmin((e.target as HTMLInputElement).value) }),
      h("button", { id: "signin", onClick: signIn }, "Sign in"),
      h("span", { class: "status" }, info ? `${info.description} · version ${info.version}${info.admin ? " · admin" : ""}` : ""),
    ),
    h(
      "main",
      null,
      h(
        "section",
        { class: "tree", id: "tree" },
        h("h2", null, "Tree"),
        h("div", { class: `row${selected.path.length === 0 ? " selected" : ""}`, "data-path": "[]" }, h("span", { class: "key", onClick: () => select([]) }, "(root)")),
        h(Children, { key: `root-${signedIn}`, path: [], selected: selected.path, onSelect: select, epoch }),
      ),
      h(
        "div",
        null,
        h(Editor, { path: selected.path, value: selected.value, onChanged: () => setEpoch((e) => e + 1), onSelect: (p) => select(p) }),
        h(Simulator, { path: selected.path }),
        h(Effects, { epoch }),
      ),
    ),
  );
}

render(h(App, null), document.getElementById("app") as HTMLElement);
