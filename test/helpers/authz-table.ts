/**
 * The authorization table of the todo example's rules (examples/todo/kora.rules.yaml): who may
 * read and write what. test/authz.test.ts runs it over every transport; test/cli.rules.test.ts
 * checks that the rules simulator gives the same verdicts.
 */
import { expect } from "vitest";

export const PATH = `query($path: [String!]!, $limit: Int) { path(path: $path, limit: $limit) }`;
export const MERGE = `mutation($path: [String!]!, $value: JSON!) { merge(path: $path, value: $value) { version } }`;
export const DELETE = `mutation($path: [String!]!) { delete(path: $path) { version } }`;
export const MUTATE = `mutation($merge: JSONObject, $delete: JSONObject) { mutate(merge: $merge, delete: $delete) { version } }`;
export const WATCH = `subscription($path: [String!]!) { watch(path: $path) { version snapshot merge delete } }`;

export type Who = "dax" | "yousef" | "admin" | "anonymous";
export interface Case {
  who: Who;
  what: string;
  query: string;
  variables?: Record<string, unknown>;
  /** An error code the (first) error must carry, or the data expected. */
  expect: { code: string; at?: string; also?: string } | { data: Record<string, unknown> };
}

export const SEED = {
  todos: {
    dax: { t1: { title: "Dax's first" }, t2: { title: "Dax's second", done: true } },
    yousef: { t1: { title: "Yousef's secret plan" } },
  },
  public: { motd: "hello" },
  admin: { stats: { users: 2 } },
  secret: { key: "hunter2" },
};

export const readCases: Case[] = [
  { who: "dax", what: "own list", query: PATH, variables: { path: ["todos", "dax"] }, expect: { data: { path: SEED.todos.dax } } },
  { who: "dax", what: "another user's list", query: PATH, variables: { path: ["todos", "yousef"] }, expect: { code: "FORBIDDEN" } },
  { who: "anonymous", what: "a user's list", query: PATH, variables: { path: ["todos", "dax"] }, expect: { code: "FORBIDDEN" } },
  { who: "dax", what: "own leaf", query: PATH, variables: { path: ["todos", "dax", "t1", "title"] }, expect: { data: { path: "Dax's first" } } },
  { who: "dax", what: "another user's leaf", query: PATH, variables: { path: ["todos", "yousef", "t1", "title"] }, expect: { code: "FORBIDDEN" } },
  { who: "dax", what: "the parent: others left out", query: PATH, variables: { path: ["todos"] }, expect: { data: { path: { dax: SEED.todos.dax } } } },
  { who: "anonymous", what: "the parent: everything left out", query: PATH, variables: { path: ["todos"] }, expect: { data: { path: null } } },
  { who: "dax", what: "the root: only what dax may read", query: PATH, variables: { path: [] }, expect: { data: { path: { todos: { dax: SEED.todos.dax }, public: SEED.public } } } },
  { who: "anonymous", what: "the root: only public", query: PATH, variables: { path: [] }, expect: { data: { path: { public: SEED.public } } } },
  { who: "admin", what: "the root: admin data too", query: PATH, variables: { path: [] }, expect: { data: { path: { public: SEED.public, admin: SEED.admin } } } },
  { who: "anonymous", what: "public data", query: PATH, variables: { path: ["public", "motd"] }, expect: { data: { path: "hello" } } },
  { who: "dax", what: "a path no rule covers", query: PATH, variables: { path: ["secret"] }, expect: { code: "FORBIDDEN" } },
  { who: "admin", what: "admin data", query: PATH, variables: { path: ["admin"] }, expect: { data: { path: SEED.admin } } },
  { who: "dax", what: "admin data without the role", query: PATH, variables: { path: ["admin", "stats"] }, expect: { code: "FORBIDDEN" } },
  { who: "dax", what: "a limited selection of the parent", query: PATH, variables: { path: ["todos"], limit: 5 }, expect: { data: { path: { dax: SEED.todos.dax } } } },
  {
    who: "dax",
    what: "batched fields: each checked",
    query: `{ mine: path(path: ["todos", "dax", "t1"]) theirs: path(path: ["todos", "yousef"]) }`,
    expect: { code: "FORBIDDEN", at: "theirs", also: "mine" },
  },
  {
    who: "dax",
    what: "an alias of a forbidden path",
    query: `{ harmless: path(path: ["secret", "key"]) }`,
    expect: { code: "FORBIDDEN", at: "harmless" },
  },
  {
    who: "dax",
    what: "a fragment spread",
    query: `query { ...F } fragment F on Query { sneaky: path(path: ["todos", "yousef", "t1"]) }`,
    expect: { code: "FORBIDDEN", at: "sneaky" },
  },
  {
    who: "dax",
    what: "an inline fragment",
    query: `query { ... on Query { path(path: ["admin"]) } }`,
    expect: { code: "FORBIDDEN", at: "path" },
  },
];

export function writeCases(tag: string): Case[] {
  return [
    { who: "dax", what: "a new own todo", query: MERGE, variables: { path: ["todos", "dax", tag], value: { title: "new" } }, expect: { data: { merge: { version: expect.any(String) } } } },
    { who: "dax", what: "into another user's list", query: MERGE, variables: { path: ["todos", "yousef", tag], value: { title: "x" } }, expect: { code: "FORBIDDEN" } },
    { who: "anonymous", what: "into a user's list", query: MERGE, variables: { path: ["todos", "dax", tag], value: { title: "x" } }, expect: { code: "FORBIDDEN" } },
    { who: "dax", what: "a todo failing the schema (empty title)", query: MERGE, variables: { path: ["todos", "dax", `${tag}-bad`], value: { title: "" } }, expect: { code: "BAD_USER_INPUT" } },
    { who: "dax", what: "a todo failing the schema (extra key)", query: MERGE, variables: { path: ["todos", "dax", `${tag}-bad`], value: { title: "ok", owner: "yousef" } }, expect: { code: "BAD_USER_INPUT" } },
    { who: "dax", what: "a leaf that breaks an existing todo", query: MERGE, variables: { path: ["todos", "dax", "t1", "done"], value: "yes" }, expect: { code: "BAD_USER_INPUT" } },
    {
      who: "dax",
      what: "one mutation touching own and another's list",
      query: MUTATE,
      variables: { merge: { todos: { dax: { [`${tag}-m`]: { title: "a" } }, yousef: { [`${tag}-m`]: { title: "b" } } } } },
      expect: { code: "FORBIDDEN" },
    },
    { who: "dax", what: "a delete of another user's todo", query: DELETE, variables: { path: ["todos", "yousef", "t1"] }, expect: { code: "FORBIDDEN" } },
    { who: "dax", what: "a delete of the whole parent", query: DELETE, variables: { path: ["todos"] }, expect: { code: "FORBIDDEN" } },
    { who: "dax", what: "a merge at the root reaching only own data", query: MUTATE, variables: { merge: { todos: { dax: { [`${tag}-r`]: { title: "root" } } } } }, expect: { data: { mutate: { version: expect.any(String) } } } },
    { who: "anonymous", what: "the public board", query: MERGE, variables: { path: ["public", tag], value: "hi" }, expect: { code: "FORBIDDEN" } },
    { who: "dax", what: "the public board, signed in", query: MERGE, variables: { path: ["public", tag], value: "hi" }, expect: { data: { merge: { version: expect.any(String) } } } },
    { who: "dax", what: "a path no rule covers", query: MERGE, variables: { path: ["secret", tag], value: 1 }, expect: { code: "FORBIDDEN" } },
    { who: "dax", what: "a delete of an own todo", query: DELETE, variables: { path: ["todos", "dax", `${tag}-r`] }, expect: { data: { delete: { version: expect.any(String) } } } },
    { who: "admin", what: "admin data with the role", query: MERGE, variables: { path: ["admin", tag], value: 1 }, expect: { data: { merge: { version: expect.any(String) } } } },
  ];
}

