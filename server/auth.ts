/**
 * Authentication: turns a request's credentials into the `Caller` every hook and rule sees.
 * A JWT (HS256 secret or a local JWKS file, with issuer/audience checks) comes from the HTTP
 * `Authorization: Bearer` header or from graphql-ws `connectionParams`; a custom `authenticate`
 * hook replaces the JWT check entirely. No token means `auth = null`. docs/auth.md has the rules.
 */
import { readFileSync } from "node:fs";
import { type JWTVerifyGetKey, createLocalJWKSet, errors as joseErrors, jwtVerify } from "jose";
import type { Caller } from "../core/gateway.ts";
import { KoraError } from "../core/errors.ts";

/** What a request offers to prove who it is. */
export interface Credentials {
  /** The HTTP `Authorization` header (or its WebSocket equivalent from connectionParams). */
  authorization: string | undefined;
  /** graphql-ws `connectionParams`, for WebSocket connections. */
  connectionParams?: Readonly<Record<string, unknown>> | undefined;
  /** The HTTP request's (or WebSocket upgrade request's) headers, lower-case names. */
  headers: Readonly<Record<string, string | string[] | undefined>>;
}

export interface JwtOptions {
  /** Shared secret for HS256 tokens. Give this or `jwksFile`. */
  secret?: string;
  /** Path of a local JWKS file (JSON `{ "keys": [...] }`) with the public keys of asymmetric tokens. */
  jwksFile?: string;
  /** Accepted `iss` values; unchecked when left out. */
  issuer?: string | string[];
  /** Accepted `aud` values; unchecked when left out. */
  audience?: string | string[];
  /** Accepted algorithms. Default `["HS256"]` with a secret, `["RS256", "ES256", "EdDSA"]` with a JWKS. `none` is never accepted. */
  algorithms?: string[];
  /** Leeway for `exp`/`nbf`, in seconds. Default 0. */
  clockToleranceSec?: number;
}

/** The result of a custom `authenticate` hook: the claims (or null) and an optional expiry. */
export interface Authenticated {
  auth: Readonly<Record<string, unknown>> | null;
  /** Seconds since the epoch; watches of this caller end with UNAUTHENTICATED then. */
  expiresAt?: number;
}

export interface AuthOptions {
  jwt?: JwtOptions;
  /**
   * Replaces the JWT check: return the caller's claims (or `{ auth: null }` for anonymous), or
   * throw (a `KoraError` with `UNAUTHENTICATED` is passed on as is) to refuse.
   */
  authenticate?: (credentials: Credentials) => Authenticated | Promise<Authenticated>;
}

export type Authenticator = (credentials: Credentials) => Promise<Caller>;

const ANONYMOUS: Caller = Object.freeze({ auth: null, internal: false });

/** The bearer token of a request, if any: the header, or `authorization`/`token` in connectionParams. */
export function bearerToken(credentials: Credentials): string | undefined {
  const params = credentials.connectionParams;
  let header = credentials.authorization;
  if (params) {
    const fromParams = params.authorization ?? params.Authorization;
    if (typeof fromParams === "string") header = fromParams;
    else if (typeof params.token === "string") return params.token || undefined;
  }
  if (!header) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) throw unauthenticated('the Authorization header must be "Bearer <token>"');
  return m[1];
}

function unauthenticated(message: string, cause?: unknown): KoraError {
  return new KoraError("UNAUTHENTICATED", message, cause === undefined ? undefined : { cause });
}

/** Why a token was refused, in words a client developer can act on. */
function explain(error: unknown): string {
  if (error instanceof joseErrors.JWTExpired) return "the token has expired; get a fresh one";
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    return `the token's "${error.claim}" claim is not accepted (${error.reason === "check_failed" ? "unexpected value" : error.reason})`;
  }
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return "the token's signature is invalid";
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return "the token's algorithm is not accepted (unsigned tokens, alg none, never are)";
  if (error instanceof joseErrors.JWKSNoMatchingKey) return "no key of the server's JWKS matches the token";
  if (error instanceof joseErrors.JWSInvalid || error instanceof joseErrors.JWTInvalid) return "the token is malformed";
  return "the token could not be verified";
}

export function createAuthenticator(options: AuthOptions = {}): Authenticator {
  if (options.authenticate) {
    const hook = options.authenticate;
    return async (credentials) => {
      let result: Authenticated;
      try {
        result = await hook(credentials);
      } catch (error) {
        if (error instanceof KoraError) throw error;
        throw unauthenticated(`authentication failed: ${error instanceof Error ? error.message : String(error)}`, error);
      }
      return { auth: result.auth ?? null, internal: false, expiresAt: result.expiresAt };
    };
  }
  const jwt = options.jwt;
  if (jwt !== undefined && jwt.secret === undefined && jwt.jwksFile === undefined) {
    // Typically `secret: process.env.JWT_SECRET` with the variable unset: starting anyway would
    // refuse every token at run time, saying no JWT is configured.
    const given = Object.keys(jwt).filter((k) => (jwt as Record<string, unknown>)[k] !== undefined);
    throw new Error(
      `auth.jwt is configured but has no key: auth.jwt.secret and auth.jwt.jwksFile are both undefined${
        "secret" in jwt ? " (auth.jwt.secret is present but undefined: is the environment variable it reads set?)" : ""
      }${given.length > 0 ? `; it has only ${given.join(", ")}` : ""}. Give a secret of at least 32 characters or a JWKS file, or remove auth.jwt.`,
    );
  }
  let key: Uint8Array | JWTVerifyGetKey | undefined;
  let algorithms: string[] = [];
  if (jwt?.secret !== undefined) {
    if (jwt.secret.length < 32) throw new Error("auth.jwt.secret must be at least 32 characters (HS256 needs 256 bits of key)");
    key = new TextEncoder().encode(jwt.secret);
    algorithms = jwt.algorithms ?? ["HS256"];
  } else if (jwt?.jwksFile !== undefined) {
    let jwks: unknown;
    try {
      jwks = JSON.parse(readFileSync(jwt.jwksFile, "utf8"));
    } catch (error) {
      throw new Error(`auth.jwt.jwksFile ${jwt.jwksFile}: ${(error as Error).message}`);
    }
    try {
      key = createLocalJWKSet(jwks as Parameters<typeof createLocalJWKSet>[0]);
    } catch (error) {
      throw new Error(`auth.jwt.jwksFile ${jwt.jwksFile} is not a JWKS (a JSON object with a "keys" array): ${(error as Error).message}`);
    }
    algorithms = jwt.algorithms ?? ["RS256", "ES256", "EdDSA"];
  }
  if (algorithms.some((a) => a.toLowerCase() === "none")) throw new Error('auth.jwt.algorithms may not include "none"');

  return async (credentials) => {
    const token = bearerToken(credentials);
    if (token === undefined) return ANONYMOUS;
    if (key === undefined) {
      throw unauthenticated("this server verifies no tokens (no auth.jwt configured); send the request without one");
    }
    try {
      const verifyOptions = {
        algorithms,
        ...(jwt?.issuer !== undefined ? { issuer: jwt.issuer } : {}),
        ...(jwt?.audience !== undefined ? { audience: jwt.audience } : {}),
        ...(jwt?.clockToleranceSec !== undefined ? { clockTolerance: jwt.clockToleranceSec } : {}),
      };
      const { payload } =
        key instanceof Uint8Array ? await jwtVerify(token, key, verifyOptions) : await jwtVerify(token, key, verifyOptions);
      const claims = Object.assign(Object.create(null), payload) as Record<string, unknown>;
      return { auth: Object.freeze(claims), internal: false, expiresAt: typeof payload.exp === "number" ? payload.exp : undefined };
    } catch (error) {
      throw unauthenticated(explain(error), error);
    }
  };
}
