// Plays Salesforce's voice client around the built bundle: a page (window, location, document
// with the login form) in which the bundle runs as a script, SETUP_CONNECTOR posted from a
// Lightning origin with a MessagePort, and every message the connector posts back recorded.
import { readFileSync } from "node:fs";
import vm from "node:vm";
import { WebSocket } from "ws";

const BUNDLE = new URL("../dist/natterbox-scv-connector.js", import.meta.url);

export function loadConnector({ sidecarPort }) {
  const listeners = [];
  const elements = {
    login: { handlers: [], addEventListener(type, handler) { if (type === "submit") this.handlers.push(handler); } },
    token: { value: "" },
    status: { textContent: "" },
  };
  globalThis.window = {
    addEventListener(type, handler) { if (type === "message") listeners.push(handler); },
    removeEventListener(type, handler) {
      const at = listeners.indexOf(handler);
      if (at >= 0) listeners.splice(at, 1);
    },
  };
  globalThis.location = { protocol: "http:", host: `127.0.0.1:${sidecarPort}` };
  globalThis.document = { getElementById: (id) => elements[id] || null };
  globalThis.WebSocket = WebSocket;
  vm.runInThisContext(readFileSync(BUNDLE, "utf8"), { filename: "natterbox-scv-connector.js" });

  const received = [];
  const channel = new MessageChannel();
  channel.port2.onmessage = (event) => received.push(event.data);

  return {
    received,
    windowListeners: listeners,
    elements,
    // What the voice client does first: hand the connector its port and config.
    setup(origin = "https://acme.lightning.force.com", connectorConfig = {}) {
      for (const listener of [...listeners]) {
        listener({ data: { type: "SETUP_CONNECTOR", connectorConfig }, origin, ports: [channel.port1] });
      }
    },
    // The agent types their token into the login frame.
    async signIn(token) {
      elements.token.value = token;
      for (const handler of elements.login.handlers) await handler({ preventDefault() {} });
    },
    // A message from the voice client (ACCEPT_CALL, HOLD, …).
    send(message) {
      channel.port2.postMessage(message);
    },
    close() {
      channel.port1.close();
      channel.port2.close();
    },
  };
}

// Telephony events the connector dispatched, in order.
export function telephonyEvents(received) {
  return received
    .filter((m) => m.type === "TELEPHONY_EVENT_DISPATCHED")
    .map((m) => ({ type: m.payload.telephonyEventType, payload: m.payload.telephonyEventPayload }));
}

export async function waitFor(what, check, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
