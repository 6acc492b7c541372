// A fake of the sidecar's agent listener (docs/agent-protocol.md v1): checks the subprotocol
// token before the upgrade, sends hello + presence, records every command and answers it with
// whatever the test's `answer` returns (after the frames its `framesFirst` lists).
import { WebSocketServer } from "ws";

export async function startFakeSidecar({ token, userId = "005xx000001SvLbYAK", extension = "1001" }) {
  const commands = [];
  const sockets = new Set();
  const sidecar = {
    commands,
    answer: (command) => ({ ok: true }),
    send(frame) {
      for (const socket of sockets) socket.send(JSON.stringify(frame));
    },
    connections: 0,
    // The sidecar restarting: every connection drops.
    dropAll() {
      for (const socket of sockets) socket.terminate();
    },
    async close() {
      for (const socket of sockets) socket.terminate();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  const server = new WebSocketServer({
    port: 0,
    host: "127.0.0.1",
    path: "/agent",
    handleProtocols: (protocols) => (protocols.has("natterbox.agent.v1") ? "natterbox.agent.v1" : false),
    verifyClient: ({ req }, done) => {
      const offered = String(req.headers["sec-websocket-protocol"] || "").split(",").map((p) => p.trim());
      if (offered.includes("natterbox.token." + token)) done(true);
      else done(false, 401, "Unauthorized");
    },
  });
  await new Promise((resolve) => server.on("listening", resolve));
  server.on("connection", (socket) => {
    sockets.add(socket);
    sidecar.connections += 1;
    socket.on("close", () => sockets.delete(socket));
    socket.send(JSON.stringify({ type: "hello", protocol: 1, user_id: userId, extension }));
    socket.send(JSON.stringify({ type: "presence", user_id: userId, state: "Offline", since_ms: Date.now() }));
    socket.on("message", (data) => {
      const command = JSON.parse(String(data));
      commands.push(command);
      // `framesFirst`: frames the real sidecar may send ahead of the result (the switch's news).
      const { framesFirst = [], ...answer } = sidecar.answer(command);
      for (const frame of framesFirst) socket.send(JSON.stringify(frame));
      socket.send(JSON.stringify({ type: "result", id: command.id, ...answer }));
    });
  });
  sidecar.port = server.address().port;
  return sidecar;
}
