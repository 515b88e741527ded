/**
 * Streamed body limits: a chunked body (no Content-Length) is refused with 413 as soon as the
 * limit is passed, not after the whole body was read and parsed; a WebSocket message over the
 * limit closes the socket (1009) without being parsed.
 */
import { request } from "node:http";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { pgliteTarget } from "./helpers/db.ts";
import { type TestServer, read, startTestServer } from "./helpers/server.ts";

const LIMIT = 256 * 1024;
const TOTAL = 20 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, "x");

interface Outcome {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** Bytes the client had handed to the socket when the response began. */
  writtenAtResponse: number;
}

/** POSTs a 20 MB chunked JSON body, one chunk after the previous was flushed, until the server answers. */
function chunkedPost(url: string): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    let written = 0;
    let answered = false;
    const req = request(url, {
      method: "POST",
      headers: { "content-type": "application/json", "transfer-encoding": "chunked" },
    });
    req.on("response", (res) => {
      answered = true;
      const writtenAtResponse = written;
      let body = "";
      res.setEncoding("utf8").on("data", (c: string) => {
        body += c;
      });
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, writtenAtResponse }),
      );
      res.on("error", reject);
    });
    // The server may close while we still write: that is the point, not a failure.
    req.on("error", (error) => {
      if (!answered) reject(error);
    });
    const head = Buffer.from(
      `{"query":"mutation($v: JSON!) { merge(path: [\\"chunked\\"], value: $v) { version } }","variables":{"v":"`,
    );
    const pump = () => {
      if (answered || req.destroyed) return;
      if (written >= TOTAL) {
        req.end('"}}');
        return;
      }
      const chunk = written === 0 ? head : CHUNK;
      written += chunk.length;
      req.write(chunk, () => pump());
    };
    pump();
  });
}

describe("streamed body limits", () => {
  let server: TestServer;
  beforeEach(async () => {
    server = await startTestServer(pgliteTarget, { maxMessageBytes: LIMIT });
  });
  afterEach(async () => {
    await server?.close();
  });

  it("a chunked 20 MB body gets 413 after at most the limit is read", async () => {
    const version = await server.kora.gateway.store.version();
    const outcome = await chunkedPost(server.url);
    expect(outcome.status).toBe(413);
    const body = JSON.parse(outcome.body) as {
      errors: { message: string; extensions: { code: string } }[];
    };
    expect(body.errors[0]!.extensions.code).toBe("PAYLOAD_TOO_LARGE");
    expect(body.errors[0]!.message).toContain(`at most ${LIMIT} bytes`);
    expect(outcome.headers.connection).toBe("close");
    // The answer came while the client was still sending: the server stopped at the limit. What
    // the client had written by then is the limit plus what loopback socket buffers hold.
    expect(outcome.writtenAtResponse).toBeLessThan(LIMIT + 8 * 1024 * 1024);
    expect(outcome.writtenAtResponse).toBeLessThan(TOTAL);
    expect(await server.kora.gateway.store.version()).toBe(version);
    expect(await read(server.url, ["chunked"])).toBeNull();
  });

  it("a body with a Content-Length over the limit gets 413 before any of it is read", async () => {
    const res = await fetch(server.url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "{ __typename }", variables: { v: "x".repeat(LIMIT) } }),
    });
    expect(res.status).toBe(413);
    expect(
      ((await res.json()) as { errors: { extensions: { code: string } }[] }).errors[0]!.extensions
        .code,
    ).toBe("PAYLOAD_TOO_LARGE");
  });

  it("a WebSocket message over the limit closes the socket with 1009", async () => {
    const ws = new WebSocket(server.wsUrl, "graphql-transport-ws");
    try {
      await new Promise<void>((resolve, reject) => {
        ws.once("open", () => resolve());
        ws.once("error", reject);
      });
      const closed = new Promise<number>((resolve) => ws.once("close", (code) => resolve(code)));
      ws.on("error", () => {}); // the server ends the socket mid-message
      ws.send(JSON.stringify({ type: "connection_init", payload: { pad: "x".repeat(LIMIT + 1) } }));
      expect(await closed).toBe(1009);
    } finally {
      ws.terminate();
    }
  });
});
