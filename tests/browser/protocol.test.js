// The console's side of agent protocol v1 (docs/agent-protocol.md): how the page shows each
// server frame (call states, presence, refusals), including ones hard to provoke from the real
// switch (a refusal rendered, a warm transfer ending). The test plays the server through
// playwright's WebSocket routing; the page is the sidecar's real one. control.test.js drives the
// same controls against the real sidecar and module.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { startProduct, launchChromium, until } = require("./harness");

let product;
let browser;

before(async () => {
  product = await startProduct();
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close();
  if (product) await product.stop();
});

/// A page whose /agent WebSocket is answered by the test: returns the received frames and a send.
async function playedServer() {
  const context = await browser.newContext();
  const page = await context.newPage();
  const received = [];
  let server;
  await page.routeWebSocket(/\/agent$/, (ws) => {
    server = ws;
    ws.onMessage((m) => received.push(JSON.parse(m)));
    ws.send(JSON.stringify({ type: "hello", protocol: 1, user_id: "005Em0000000001AAA", extension: "1001" }));
    ws.send(JSON.stringify({ type: "presence", user_id: "005Em0000000001AAA", state: "Busy", since_ms: Date.now() }));
  });
  await page.goto(product.consoleUrl);
  await page.getByLabel("Agent token").fill("any-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForSelector('#connection[data-state="connected"]');
  await page.waitForSelector("#agent:not([hidden])");
  const send = (frame) => server.send(JSON.stringify(frame));
  return { page, received, send, close: () => context.close() };
}

test("call frames drive the call panel: ringing, answered, held, muted, ended with its cause", async () => {
  const { page, received, send, close } = await playedServer();
  try {
    assert.equal(await page.inputValue("#presence"), "Busy", "the presence frame after hello");
    const uuid = "9a0e5d1c-0000-4000-8000-000000000001";
    const base = { type: "call", call_uuid: uuid, direction: "outbound", other_party: "+16505550111",
      record_id: "003Em0000000001IAA", org: "acme", muted: false, at_ms: Date.now() };
    send({ ...base, state: "ringing" });
    await page.waitForSelector(`#call[data-call-uuid="${uuid}"]`);
    assert.equal(await page.textContent("#call-title"), "Outbound call");
    assert.equal(await page.textContent("#caller-number"), "+16505550111");
    assert.equal(await page.textContent("#call-state"), "Ringing");
    send({ ...base, state: "answered" });
    await until("Connected", async () => (await page.textContent("#call-state")) === "Connected");
    await page.getByRole("button", { name: "Hold" }).click();
    const hold = await until("hold", () => received.find((f) => f.type === "hold"));
    assert.equal(hold.call_uuid, uuid);
    send({ type: "result", id: hold.id, ok: true });
    send({ ...base, state: "held" });
    await page.waitForSelector('#hold[aria-pressed="true"]');
    assert.equal(await page.textContent("#hold"), "Resume");
    await page.getByRole("button", { name: "Resume" }).click();
    await until("resume", () => received.find((f) => f.type === "resume"));
    send({ ...base, state: "answered", muted: true });
    await page.waitForSelector('#mute[aria-pressed="true"]');
    assert.equal(await page.textContent("#hold"), "Hold");
    send({ ...base, state: "ended", cause: "NORMAL_CLEARING" });
    await until("Ended", async () => (await page.textContent("#call-state")) === "Ended (NORMAL_CLEARING)");
    assert.equal(await page.isDisabled("#hold"), true);
    assert.equal(await page.isVisible("#wrap-up"), true);
  } finally {
    await close();
  }
});

test("a refused command shows the code and reason (403 on another agent's call)", async () => {
  const { page, received, send, close } = await playedServer();
  try {
    const uuid = "6f1c0000-0000-4000-8000-000000000002";
    send({ type: "call", call_uuid: uuid, state: "answered", direction: "inbound", other_party: "+14155550123",
      record_id: null, org: "acme", muted: false, at_ms: Date.now() });
    await page.waitForSelector(`#call[data-call-uuid="${uuid}"]`);
    await page.getByRole("button", { name: "Hang up" }).click();
    const hangup = await until("hangup", () => received.find((f) => f.type === "hangup"));
    send({ type: "result", id: hangup.id, ok: false,
      error: { code: 403, reason: "not_your_call", message: `call ${uuid} is not one of your calls` } });
    await page.waitForSelector("#message:not([hidden])");
    assert.equal(await page.textContent("#message"), `hangup refused (403 not_your_call): call ${uuid} is not one of your calls`);
    assert.equal(await page.getAttribute("#message", "role"), "alert");
  } finally {
    await close();
  }
});

test("a transfer that leaves the agent ends the call in the panel and keeps it in the history", async () => {
  const { page, received, send, close } = await playedServer();
  try {
    const uuid = "7b2d0000-0000-4000-8000-000000000003";
    const base = { type: "call", call_uuid: uuid, direction: "inbound", other_party: "+14155550123",
      record_id: null, org: "acme", muted: false, at_ms: Date.now() };
    send({ ...base, state: "answered" });
    await page.waitForSelector(`#call[data-call-uuid="${uuid}"]`);
    await page.getByLabel("Transfer to").fill("1002");
    await page.getByLabel("How").selectOption("warm");
    await page.getByRole("button", { name: "Transfer", exact: true }).click();
    const transfer = await until("transfer", () => received.find((f) => f.type === "transfer"));
    assert.deepEqual({ to: transfer.to, mode: transfer.mode }, { to: "1002", mode: "warm" });
    await page.getByLabel("How").selectOption("conference");
    await page.getByRole("button", { name: "Transfer", exact: true }).click();
    const conference = await until("conference", () => received.find((f) => f.type === "conference"));
    assert.deepEqual({ call_uuid: conference.call_uuid, to: conference.to }, { call_uuid: uuid, to: "1002" });
    send({ ...base, state: "transferred", transferred_to: "1002" });
    await until("Transferred", async () => (await page.textContent("#call-state")) === "Transferred to 1002");
    assert.equal(await page.locator("#history li").count(), 1);
  } finally {
    await close();
  }
});
