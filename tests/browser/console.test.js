// The console in Debian's chromium against the real sidecar, the real module in the host shim
// and the org emulator.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { startProduct, launchChromium, signIn, until } = require("./harness");

let product;
let browser;

before(async () => {
  product = await startProduct({ popTtlMs: 2000 });
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close();
  if (product) await product.stop();
});

/// A signed-in console page, with every WebSocket frame it sends recorded.
async function consolePage(agent) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const sent = [];
  const sockets = [];
  page.on("websocket", (ws) => {
    sockets.push(ws.url());
    ws.on("framesent", (f) => {
      try {
        sent.push(JSON.parse(f.payload));
      } catch (_) {}
    });
  });
  await signIn(page, product.consoleUrl, agent.token);
  return { page, sent, sockets, close: () => context.close() };
}

async function waitForPop(page, callUuid) {
  await page.waitForSelector(`#call[data-call-uuid="${callUuid}"][data-painted-at-ms]`, { timeout: 5000 });
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];

test("a pop shows the caller's record within 100 ms of sf_screen_pop", async () => {
  const agent = product.agents[0];
  const { page, sent, close } = await consolePage(agent);
  try {
    const call = await product.inboundCall("+14155550123");
    assert.equal(call.vars.sf_record_name, "Ada Lovelace");
    const callUuid = call.vars.uuid || call.id;
    await product.screenPop(call);
    await page.waitForSelector("#call:not([hidden])");
    const callUuidShown = await page.getAttribute("#call", "data-call-uuid");
    await waitForPop(page, callUuidShown);
    assert.equal(await page.textContent("#caller-number"), "+14155550123");
    assert.equal(await page.textContent("#record-name"), "Ada Lovelace");
    assert.equal(await page.textContent("#record-type"), "Contact");
    assert.equal(await page.textContent("#record-owner"), "Grace Hopper");
    const link = await page.getAttribute("#record-link", "href");
    const instance = new URL(product.emulator.instance_url).origin;
    assert.equal(link, `${instance}/lightning/r/Contact/003Em0000000001IAA/view`);
    assert.equal(await page.getAttribute("#pop", "aria-live"), "assertive");
    // The console acknowledges what it showed, so a reconnect does not show it again.
    await until("the ack", () => sent.some((f) => f.ack === callUuidShown), 3000);
    assert.ok(callUuid);

    // The figure: module's sf_screen_pop (created_at_ms, taken inside the app) to the frame
    // painted in the browser, over 20 calls.
    const latencies = [];
    for (let i = 0; i < 20; i++) {
      const c = await product.inboundCall("+14155550123");
      await product.screenPop(c);
      const uuid = await until("the next pop", async () => {
        const shown = await page.getAttribute("#call", "data-call-uuid");
        const painted = await page.getAttribute("#call", "data-painted-at-ms");
        return shown !== callUuidShown && !latencies.some((l) => l.uuid === shown) && painted ? shown : null;
      }, 5000, 5);
      const created = Number(await page.getAttribute("#call", "data-created-at-ms"));
      const painted = Number(await page.getAttribute("#call", "data-painted-at-ms"));
      latencies.push({ uuid, ms: painted - created });
    }
    const sorted = latencies.map((l) => l.ms).sort((a, b) => a - b);
    const figure = `pop-to-screen (sf_screen_pop → painted in chromium), 20 pops: median ${percentile(sorted, 50)} ms, p95 ${percentile(sorted, 95)} ms, max ${sorted[sorted.length - 1]} ms`;
    console.log(figure);
    if (process.env.BROWSER_FIGURES) fs.appendFileSync(process.env.BROWSER_FIGURES, figure + "\n");
    assert.ok(percentile(sorted, 95) < 100, figure);
    // Session history lists every call.
    assert.equal(await page.locator("#history li").count(), 21);
  } finally {
    await close();
  }
});

test("a pop reaches only the agent it is for", async () => {
  const [a, b] = product.agents;
  const first = await consolePage(a);
  const second = await consolePage(b);
  try {
    const call = await product.inboundCall("+442079460958", { extension: b.extension });
    await product.screenPop(call);
    await second.page.waitForSelector("#call:not([hidden])");
    assert.equal(await second.page.textContent("#caller-number"), "+442079460958");
    // Several records match that number: no single record, no link, the count instead.
    assert.equal(await second.page.isHidden("#record-link"), true);
    const ids = call.vars.sf_record_ids.split(",");
    assert.equal(call.vars.sf_lookup_status, "multiple");
    assert.ok(ids.length > 1);
    assert.equal(await second.page.textContent("#record-none"), `${ids.length} matching records`);
    // Agent A's console got nothing; a pop of its own shows that its connection works.
    const own = await product.inboundCall("+14155550123", { extension: a.extension });
    await product.screenPop(own);
    await first.page.waitForSelector("#call:not([hidden])");
    assert.equal(await first.page.textContent("#caller-number"), "+14155550123");
    assert.equal(await first.page.locator("#history li").count(), 1);
  } finally {
    await first.close();
    await second.close();
  }
});

test("signing back in brings the pops still within their TTL, and not the expired ones", async () => {
  const agent = product.agents[0];
  const { page, close } = await consolePage(agent);
  try {
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.waitForSelector('#connection[data-state="signed-out"]');
    // One pop that will have expired (TTL 2 s) and one that has not, while signed out.
    const expiredBefore = (await product.metric("natterbox_sidecar_pops_expired_total")) || 0;
    const stale = await product.inboundCall("+49309018200");
    const staleAt = await product.screenPop(stale);
    await until("the first pop's TTL to pass", () => Date.now() > staleAt + 2100, 5000);
    const fresh = await product.inboundCall("+14155550123");
    await product.screenPop(fresh);
    await page.getByLabel("Agent token").fill(agent.token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForSelector("#call:not([hidden])");
    assert.equal(await page.textContent("#caller-number"), "+14155550123");
    assert.equal(await page.textContent("#record-name"), "Ada Lovelace");
    await until("the expired pop to be counted", async () =>
      ((await product.metric("natterbox_sidecar_pops_expired_total")) || 0) > expiredBefore, 5000);
    // Only the fresh pop is in this page's history.
    const history = await page.locator("#history li").allTextContents();
    assert.ok(!history.some((h) => h.includes("+49309018200")), JSON.stringify(history));
  } finally {
    await close();
  }
});

test("a dropped connection reconnects by itself and gets the pops still within their TTL", async () => {
  const agent = product.agents[0];
  const context = await browser.newContext();
  const page = await context.newPage();
  // The real sidecar behind playwright's WebSocket routing, so the test can drop the connection
  // and hold the reconnect until the pops are published.
  const connections = [];
  let release;
  const released = new Promise((r) => (release = r));
  await page.routeWebSocket(/\/agent$/, async (ws) => {
    connections.push(ws);
    if (connections.length > 1) await released;
    ws.connectToServer();
  });
  try {
    await signIn(page, product.consoleUrl, agent.token);
    await connections[0].close({ code: 1001, reason: "going away" });
    await page.waitForSelector('#connection[data-state="reconnecting"]');
    await until("the reconnect attempt", () => connections.length === 2, 5000);
    const stale = await product.inboundCall("+49309018200");
    const staleAt = await product.screenPop(stale);
    await until("the first pop's TTL to pass", () => Date.now() > staleAt + 2100, 5000);
    const fresh = await product.inboundCall("+14155550123");
    await product.screenPop(fresh);
    release();
    await page.waitForSelector('#connection[data-state="connected"]');
    await page.waitForSelector("#call:not([hidden])");
    assert.equal(await page.textContent("#record-name"), "Ada Lovelace");
    const history = await page.locator("#history li").allTextContents();
    assert.equal(history.length, 1, JSON.stringify(history));
    assert.ok(!history[0].includes("+49309018200"));
  } finally {
    await context.close();
  }
});

test("the token is typed, sent as a subprotocol, never in a URL; a wrong one is refused", async () => {
  const agent = product.agents[1];
  const { page, sockets, close } = await consolePage(agent);
  try {
    assert.deepEqual(sockets, [`ws://127.0.0.1:${product.agentPort}/agent`]);
    assert.ok(!page.url().includes(agent.token));
    assert.equal(await page.inputValue("#token"), "", "the field is cleared after sign-in");
    const stored = await page.evaluate(() => JSON.stringify([localStorage, sessionStorage, document.cookie]));
    assert.ok(!stored.includes(agent.token));
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("Agent token").fill("not-" + agent.token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForSelector('#message:not([hidden])');
    assert.match(await page.textContent("#message"), /refused this token/);
    assert.equal(await page.getAttribute("#connection", "data-state"), "signed-out");
  } finally {
    await close();
  }
});

test("keyboard only: sign in, dial from the pad, and every control has a name", async () => {
  const agent = product.agents[0];
  const context = await browser.newContext();
  const page = await context.newPage();
  const sent = [];
  page.on("websocket", (ws) => ws.on("framesent", (f) => {
    try { sent.push(JSON.parse(f.payload)); } catch (_) {}
  }));
  try {
    await page.goto(product.consoleUrl);
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement.id), "token");
    await page.keyboard.type(agent.token);
    await page.keyboard.press("Enter");
    await page.waitForSelector('#connection[data-state="connected"]');
    await page.focus("#dial-number");
    await page.keyboard.type("+1 (415) 555-0199");
    await page.keyboard.press("Enter");
    await until("the dial frame", () => sent.find((f) => f.type === "dial"), 3000);
    assert.equal(sent.find((f) => f.type === "dial").number, "+1 (415) 555-0199");
    const unnamed = await page.evaluate(() =>
      [...document.querySelectorAll("button, input, select, textarea")]
        .filter((el) => el.checkVisibility())
        .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.textContent.trim())
        .map((el) => el.outerHTML));
    assert.deepEqual(unnamed, []);
  } finally {
    await context.close();
  }
});

test("the controls send the documented frames: click-to-dial, hold, mute, transfer, hang-up, wrap-up, presence", async () => {
  const agent = product.agents[0];
  const { page, sent, close } = await consolePage(agent);
  try {
    const call = await product.inboundCall("+14155550123");
    await product.screenPop(call);
    await page.waitForSelector("#call:not([hidden])");
    const uuid = await page.getAttribute("#call", "data-call-uuid");
    await page.getByRole("button", { name: "Hold" }).click();
    await page.getByRole("button", { name: "Mute" }).click();
    await page.getByLabel("Transfer to").fill("1002");
    await page.getByRole("button", { name: "Transfer", exact: true }).click();
    await page.getByRole("button", { name: "Hang up" }).click();
    await page.getByLabel("Disposition").selectOption("Resolved");
    await page.getByLabel("Notes").fill("Asked about the invoice");
    await page.getByRole("button", { name: "Save wrap-up" }).click();
    await page.getByLabel("Presence").selectOption("Away");
    // Click-to-dial from the popped record: the caller's number, linked to the record.
    await page.locator("#caller-number").click();
    const commands = await until("seven commands", () => {
      const c = sent.filter((f) => f.type);
      return c.length >= 7 ? c : null;
    }, 20000);
    const ids = new Set();
    const strip = ({ id, ...rest }) => {
      assert.match(id, /^c\d+$/);
      assert.ok(!ids.has(id), "ids are unique per connection");
      ids.add(id);
      return rest;
    };
    assert.deepEqual(commands.map(strip), [
      { type: "hold", call_uuid: uuid },
      { type: "mute", call_uuid: uuid },
      { type: "transfer", call_uuid: uuid, to: "1002", mode: "blind" },
      { type: "hangup", call_uuid: uuid },
      { type: "wrap_up", call_uuid: uuid, disposition: "Resolved", notes: "Asked about the invoice" },
      { type: "set_presence", state: "Away" },
      { type: "dial", number: "+14155550123", record_id: "003Em0000000001IAA" },
    ]);
    // A number that is not one is refused in the page, before anything is sent.
    await page.getByLabel("Number").fill("12; drop");
    await page.getByRole("button", { name: "Call", exact: true }).click();
    assert.equal(sent.filter((f) => f.type === "dial").length, 1);
  } finally {
    await close();
  }
});
