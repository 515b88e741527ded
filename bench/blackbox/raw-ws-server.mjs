// The raw side of fan-out: a plain `ws` server in its own process, plain JavaScript so that no
// TypeScript loader weighs on its memory or CPU. Watchers connect to `/`; a writer connects to
// `/writer` and sends `{i, t, pad}`; the server builds the frame a watcher of Kora would get (a
// graphql-ws `next` message of the same shape and size) once, sends it to every watcher socket,
// and acknowledges the writer with `i`. Prints `listening <port>`.
import { createServer } from "node:http";
import { WebSocketServer } from "ws";

const server = createServer();
const wss = new WebSocketServer({ server });
const watchers = new Set();
wss.on("connection", (socket, req) => {
  if (req.url === "/writer") {
    socket.on("message", (data) => {
      const { i, t, pad } = JSON.parse(String(data));
      const frame = JSON.stringify({
        id: "1",
        type: "next",
        payload: { data: { watch: { version: String(i + 1), snapshot: false, merge: { fan: { [`e${i}`]: { t, pad } } }, delete: {} } } },
      });
      for (const w of watchers) w.send(frame);
      socket.send(String(i));
    });
    return;
  }
  watchers.add(socket);
  socket.on("close", () => watchers.delete(socket));
});
server.listen(0, "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
process.on("SIGTERM", () => process.exit(0));
