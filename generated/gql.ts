/* eslint-disable */
import * as types from './graphql.js';
import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';

/**
 * Map of all GraphQL operations in the project.
 *
 * This map has several performance disadvantages:
 * 1. It is not tree-shakeable, so it will include all operations in the project.
 * 2. It is not minifiable, so the string of a GraphQL query will be multiple times inside the bundle.
 * 3. It does not support dead code elimination, so it will add unused operations.
 *
 * Therefore it is highly recommended to use the babel or swc plugin for production.
 * Learn more about it here: https://the-guild.dev/graphql/codegen/plugins/presets/preset-client#reducing-bundle-size
 */
type Documents = {
    "subscription KoraWatch($path: [String!]!, $since: String) {\n  watch(path: $path, since: $since) {\n    version\n    snapshot\n    merge\n    delete\n  }\n}\n\nmutation KoraMutate($merge: JSONObject, $delete: JSONObject, $ts: String, $writeId: String) {\n  mutate(merge: $merge, delete: $delete, ts: $ts, writeId: $writeId) {\n    version\n    merge\n    delete\n    ts\n    lost {\n      path\n      winnerTs\n    }\n  }\n}": typeof types.KoraWatchDocument,
    "query TypedPath($path: [String!]!) {\n  path(path: $path)\n}\n\nmutation TypedMerge($path: [String!]!, $value: JSON!, $ts: String, $writeId: String) {\n  merge(path: $path, value: $value, ts: $ts, writeId: $writeId) {\n    version\n    merge\n    delete\n    ts\n  }\n}\n\nsubscription TypedWatch($path: [String!]!) {\n  watch(path: $path) {\n    version\n    snapshot\n    merge\n    delete\n    value\n  }\n}": typeof types.TypedPathDocument,
    "query ReadPath($path: [String!]!, $min: String, $max: String, $limit: Int, $reverse: Boolean) {\n  path(path: $path, min: $min, max: $max, limit: $limit, reverse: $reverse)\n}\n\nmutation Merge($path: [String!]!, $value: JSON!) {\n  merge(path: $path, value: $value) {\n    version\n    merge\n    delete\n  }\n}\n\nmutation Delete($path: [String!]!) {\n  delete(path: $path) {\n    version\n    merge\n    delete\n  }\n}\n\nmutation Mutate($merge: JSONObject, $delete: JSONObject) {\n  mutate(merge: $merge, delete: $delete) {\n    version\n    merge\n    delete\n  }\n}\n\nsubscription Watch($path: [String!]!, $since: String) {\n  watch(path: $path, since: $since) {\n    version\n    snapshot\n    merge\n    delete\n  }\n}": typeof types.ReadPathDocument,
};
const documents: Documents = {
    "subscription KoraWatch($path: [String!]!, $since: String) {\n  watch(path: $path, since: $since) {\n    version\n    snapshot\n    merge\n    delete\n  }\n}\n\nmutation KoraMutate($merge: JSONObject, $delete: JSONObject, $ts: String, $writeId: String) {\n  mutate(merge: $merge, delete: $delete, ts: $ts, writeId: $writeId) {\n    version\n    merge\n    delete\n    ts\n    lost {\n      path\n      winnerTs\n    }\n  }\n}": types.KoraWatchDocument,
    "query TypedPath($path: [String!]!) {\n  path(path: $path)\n}\n\nmutation TypedMerge($path: [String!]!, $value: JSON!, $ts: String, $writeId: String) {\n  merge(path: $path, value: $value, ts: $ts, writeId: $writeId) {\n    version\n    merge\n    delete\n    ts\n  }\n}\n\nsubscription TypedWatch($path: [String!]!) {\n  watch(path: $path) {\n    version\n    snapshot\n    merge\n    delete\n    value\n  }\n}": types.TypedPathDocument,
    "query ReadPath($path: [String!]!, $min: String, $max: String, $limit: Int, $reverse: Boolean) {\n  path(path: $path, min: $min, max: $max, limit: $limit, reverse: $reverse)\n}\n\nmutation Merge($path: [String!]!, $value: JSON!) {\n  merge(path: $path, value: $value) {\n    version\n    merge\n    delete\n  }\n}\n\nmutation Delete($path: [String!]!) {\n  delete(path: $path) {\n    version\n    merge\n    delete\n  }\n}\n\nmutation Mutate($merge: JSONObject, $delete: JSONObject) {\n  mutate(merge: $merge, delete: $delete) {\n    version\n    merge\n    delete\n  }\n}\n\nsubscription Watch($path: [String!]!, $since: String) {\n  watch(path: $path, since: $since) {\n    version\n    snapshot\n    merge\n    delete\n  }\n}": types.ReadPathDocument,
};

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 *
 *
 * @example
 * ```ts
 * const query = graphql(`query GetUser($id: ID!) { user(id: $id) { name } }`);
 * ```
 *
 * The query argument is unknown!
 * Please regenerate the types.
 */
export function graphql(source: string): unknown;

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "subscription KoraWatch($path: [String!]!, $since: String) {\n  watch(path: $path, since: $since) {\n    version\n    snapshot\n    merge\n    delete\n  }\n}\n\nmutation KoraMutate($merge: JSONObject, $delete: JSONObject, $ts: String, $writeId: String) {\n  mutate(merge: $merge, delete: $delete, ts: $ts, writeId: $writeId) {\n    version\n    merge\n    delete\n    ts\n    lost {\n      path\n      winnerTs\n    }\n  }\n}"): (typeof documents)["subscription KoraWatch($path: [String!]!, $since: String) {\n  watch(path: $path, since: $since) {\n    version\n    snapshot\n    merge\n    delete\n  }\n}\n\nmutation KoraMutate($merge: JSONObject, $delete: JSONObject, $ts: String, $writeId: String) {\n  mutate(merge: $merge, delete: $delete, ts: $ts, writeId: $writeId) {\n    version\n    merge\n    delete\n    ts\n    lost {\n      path\n      winnerTs\n    }\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "query TypedPath($path: [String!]!) {\n  path(path: $path)\n}\n\nmutation TypedMerge($path: [String!]!, $value: JSON!, $ts: String, $writeId: String) {\n  merge(path: $path, value: $value, ts: $ts, writeId: $writeId) {\n    version\n    merge\n    delete\n    ts\n  }\n}\n\nsubscription TypedWatch($path: [String!]!) {\n  watch(path: $path) {\n    version\n    snapshot\n    merge\n    delete\n    value\n  }\n}"): (typeof documents)["query TypedPath($path: [String!]!) {\n  path(path: $path)\n}\n\nmutation TypedMerge($path: [String!]!, $value: JSON!, $ts: String, $writeId: String) {\n  merge(path: $path, value: $value, ts: $ts, writeId: $writeId) {\n    version\n    merge\n    delete\n    ts\n  }\n}\n\nsubscription TypedWatch($path: [String!]!) {\n  watch(path: $path) {\n    version\n    snapshot\n    merge\n    delete\n    value\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "query ReadPath($path: [String!]!, $min: String, $max: String, $limit: Int, $reverse: Boolean) {\n  path(path: $path, min: $min, max: $max, limit: $limit, reverse: $reverse)\n}\n\nmutation Merge($path: [String!]!, $value: JSON!) {\n  merge(path: $path, value: $value) {\n    version\n    merge\n    delete\n  }\n}\n\nmutation Delete($path: [String!]!) {\n  delete(path: $path) {\n    version\n    merge\n    delete\n  }\n}\n\nmutation Mutate($merge: JSONObject, $delete: JSONObject) {\n  mutate(merge: $merge, delete: $delete) {\n    version\n    merge\n    delete\n  }\n}\n\nsubscription Watch($path: [String!]!, $since: String) {\n  watch(path: $path, since: $since) {\n    version\n    snapshot\n    merge\n    delete\n  }\n}"): (typeof documents)["query ReadPath($path: [String!]!, $min: String, $max: String, $limit: Int, $reverse: Boolean) {\n  path(path: $path, min: $min, max: $max, limit: $limit, reverse: $reverse)\n}\n\nmutation Merge($path: [String!]!, $value: JSON!) {\n  merge(path: $path, value: $value) {\n    version\n    merge\n    delete\n  }\n}\n\nmutation Delete($path: [String!]!) {\n  delete(path: $path) {\n    version\n    merge\n    delete\n  }\n}\n\nmutation Mutate($merge: JSONObject, $delete: JSONObject) {\n  mutate(merge: $merge, delete: $delete) {\n    version\n    merge\n    delete\n  }\n}\n\nsubscription Watch($path: [String!]!, $since: String) {\n  watch(path: $path, since: $since) {\n    version\n    snapshot\n    merge\n    delete\n  }\n}"];

export function graphql(source: string) {
  return (documents as any)[source] ?? {};
}

export type DocumentType<TDocumentNode extends DocumentNode<any, any>> = TDocumentNode extends DocumentNode<  infer TType,  any>  ? TType  : never;