// The base library answers SETUP_CONNECTOR only from a Salesforce origin: from anywhere else the
// connector neither answers nor opens a connection to the sidecar.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { startFakeSidecar } from "./fake_sidecar.mjs";
import { loadConnector, waitFor } from "./voice_client.mjs";

const sidecar = await startFakeSidecar({ token: "t" });
const client = loadConnector({ sidecarPort: sidecar.port });
after(async () => {
  client.close();
  await sidecar.close();
});

test("a page that is not Salesforce cannot set the connector up", async () => {
  assert.equal(client.windowListeners.length, 1);
  client.setup("https://lightning.force.com.example.net");
  // The library drops its window listener after any SETUP_CONNECTOR; wait for that.
  await waitFor("listener removed", () => client.windowListeners.length === 0);
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.deepEqual(client.received, []);
  assert.deepEqual(sidecar.commands, []);
});
