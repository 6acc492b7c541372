// The bundle's entry: served by the sidecar at /scv/connector.js and loaded by /scv/ (the
// contact center's adapter URL), inside Salesforce's voice client iframe.
import base from "@salesforce/scv-connector-base";
import { NatterboxConnector } from "./connector.js";

const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const connector = new NatterboxConnector({ sidecarUrl: `${scheme}//${location.host}/agent` });
base.initializeConnector(connector);

// The login frame (shown because init answers showLogin): the agent's token stays in memory.
const form = document.getElementById("login");
if (form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const field = document.getElementById("token");
    const token = field.value.trim();
    field.value = "";
    if (!token) return;
    const status = document.getElementById("status");
    status.textContent = (await connector.login(token)) ? "Signed in." : "The sidecar refused this token.";
  });
}
