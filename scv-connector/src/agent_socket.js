// The sidecar's agent WebSocket (docs/agent-protocol.md, v1): one connection, commands with ids,
// one `result` per command, every other frame handed to `onFrame`.

const SUBPROTOCOL = "natterbox.agent.v1";
const TOKEN_PREFIX = "natterbox.token.";
// The sidecar answers within 5 s (504 switch_timeout after that); a little slack on top.
const COMMAND_TIMEOUT_MS = 8000;

export class AgentProtocolError extends Error {
  constructor(code, reason, message) {
    super(message || reason);
    this.code = code;
    this.reason = reason;
  }
}

export class AgentSocket {
  constructor({ url, token, onFrame, onClose, WebSocketImpl = globalThis.WebSocket }) {
    this.url = url;
    this.token = token;
    this.onFrame = onFrame;
    this.onClose = onClose;
    this.WebSocketImpl = WebSocketImpl;
    this.nextId = 1;
    this.pending = new Map();
    this.socket = null;
  }

  // Resolves with the `hello` frame; rejects when the sidecar refuses or the socket closes first.
  open() {
    return new Promise((resolve, reject) => {
      let greeted = false;
      const socket = new this.WebSocketImpl(this.url, [SUBPROTOCOL, TOKEN_PREFIX + this.token]);
      this.socket = socket;
      socket.onmessage = (event) => {
        let frame;
        try {
          frame = JSON.parse(typeof event.data === "string" ? event.data : String(event.data));
        } catch {
          return;
        }
        if (!frame || typeof frame !== "object") return;
        if (frame.type === "hello" && !greeted) {
          greeted = true;
          resolve(frame);
          return;
        }
        if (frame.type === "result") {
          this.settle(frame);
          return;
        }
        this.onFrame(frame);
      };
      // A refused upgrade (401) or a lost connection: `close` follows and says what it means.
      socket.onerror = () => {};
      socket.onclose = () => {
        for (const { reject: fail, timer } of this.pending.values()) {
          clearTimeout(timer);
          fail(new AgentProtocolError(503, "disconnected", "the sidecar connection closed"));
        }
        this.pending.clear();
        if (!greeted) reject(new AgentProtocolError(401, "refused", "the sidecar refused the connection"));
        else if (this.onClose) this.onClose();
      };
    });
  }

  settle(frame) {
    const entry = this.pending.get(frame.id);
    if (!entry) return;
    this.pending.delete(frame.id);
    clearTimeout(entry.timer);
    if (frame.ok) entry.resolve(frame);
    else {
      const error = frame.error || {};
      entry.reject(new AgentProtocolError(error.code, error.reason, error.message));
    }
  }

  // Sends one command and resolves with its `result` frame (rejects on `ok:false`).
  command(type, fields) {
    const socket = this.socket;
    if (!socket || socket.readyState !== 1) {
      return Promise.reject(new AgentProtocolError(503, "disconnected", "not connected to the sidecar"));
    }
    const id = "scv" + this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new AgentProtocolError(504, "timeout", `no result for ${type} within ${COMMAND_TIMEOUT_MS} ms`));
      }, COMMAND_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      socket.send(JSON.stringify({ ...fields, type, id }));
    });
  }

  close() {
    const socket = this.socket;
    this.socket = null;
    this.onClose = null;
    if (socket) socket.close();
  }
}
