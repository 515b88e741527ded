/**
 * The smallest HTTP/1.1 keep-alive client: one socket, one request at a time, answers read by
 * their content-length. The bench's HTTP writers use it instead of `node:http` for the same
 * reason its graphql-ws clients use `gqlws.ts`: on a 2-core machine `node:http`'s client spent
 * about as much CPU per request as Kora's server (the raw side's `pg` clients spend a fraction
 * of that), so the clients' own work set the rate. The server sees the bytes any HTTP/1.1
 * client sends: a POST with content-type, content-length and keep-alive. A socket the server
 * closes is replaced on the next request; the request that was in flight fails and is counted.
 */
import { connect, type Socket } from "node:net";

export interface Http1 {
  /** POSTs `body` (JSON) to the URL's path; resolves with the answer's status and body text. */
  post(body: string): Promise<{ status: number; body: string }>;
  close(): void;
}

const HEAD_END = Buffer.from("\r\n\r\n");

export function http1(url: string): Http1 {
  const target = new URL(url);
  const port = Number(target.port || 80);
  const head = `POST ${target.pathname}${target.search} HTTP/1.1\r\nhost: ${target.host}\r\ncontent-type: application/json\r\nconnection: keep-alive\r\ncontent-length: `;
  let socket: Socket | undefined;
  let buffered: Buffer = Buffer.alloc(0);
  let waiting: { resolve: (r: { status: number; body: string }) => void; reject: (e: Error) => void } | undefined;

  function fail(error: Error) {
    socket = undefined;
    buffered = Buffer.alloc(0);
    const w = waiting;
    waiting = undefined;
    w?.reject(error);
  }

  /** Takes one whole answer off the buffer, if it is there. */
  function parse() {
    const end = buffered.indexOf(HEAD_END);
    if (end < 0 || !waiting) return;
    const lines = buffered.subarray(0, end).toString("latin1").split("\r\n");
    const status = Number((lines[0] ?? "").split(" ")[1]);
    let length: number | undefined;
    for (const line of lines) {
      const colon = line.indexOf(":");
      const name = line.slice(0, colon).toLowerCase();
      if (name === "content-length") length = Number(line.slice(colon + 1));
      else if (name === "transfer-encoding") return fail(new Error("http1: chunked answers are not supported"));
    }
    if (length === undefined) return fail(new Error("http1: answer without content-length"));
    const start = end + HEAD_END.length;
    if (buffered.length < start + length) return;
    const body = buffered.subarray(start, start + length).toString("utf8");
    buffered = buffered.subarray(start + length);
    const w = waiting;
    waiting = undefined;
    w.resolve({ status, body });
  }

  function open(): Socket {
    const s = connect({ host: target.hostname, port, noDelay: true });
    s.on("data", (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      parse();
    });
    s.on("error", (error) => {
      if (socket === s) fail(error);
    });
    s.on("close", () => {
      if (socket === s) fail(new Error("http1: socket closed"));
    });
    return s;
  }

  return {
    post(body) {
      if (waiting) return Promise.reject(new Error("http1: one request at a time"));
      socket ??= open();
      return new Promise((resolve, reject) => {
        waiting = { resolve, reject };
        (socket as Socket).write(`${head}${Buffer.byteLength(body)}\r\n\r\n${body}`);
      });
    },
    close() {
      const s = socket;
      socket = undefined;
      s?.destroy();
    },
  };
}
