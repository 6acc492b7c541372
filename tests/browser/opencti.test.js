// The console as an Open CTI softphone, framed by a test host that plays Salesforce's side
// (fake-salesforce/): served as https://acme.lightning.force.com:<port>, the name mapped to
// 127.0.0.1 inside chromium.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { startProduct, launchChromium, until } = require("./harness");
const { startFakeSalesforce } = require("./fake-salesforce/server");

const LIGHTNING = "acme.lightning.force.com";
const IMPOSTOR = "acme.force-com.example";
let product;
let lightning;
let impostor;
let browser;

before(async () => {
  product = await startProduct();
  lightning = await startFakeSalesforce(LIGHTNING);
  impostor = await startFakeSalesforce(IMPOSTOR);
  browser = await launchChromium([
    `--host-resolver-rules=MAP ${LIGHTNING} 127.0.0.1, MAP ${IMPOSTOR} 127.0.0.1`,
    "--ignore-certificate-errors",
  ]);
});

after(async () => {
  if (browser) await browser.close();
  if (lightning) await lightning.close();
  if (impostor) await impostor.close();
  if (product) await product.stop();
});

async function openHost(host, claim) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 760 } });
  const page = await context.newPage();
  const sent = [];
  page.on("websocket", (ws) => ws.on("framesent", (f) => {
    try { sent.push(JSON.parse(f.payload)); } catch (_) {}
  }));
  const query = new URLSearchParams({ adapter: product.consoleUrl });
  if (claim) query.set("claim", claim);
  await page.goto(`${host.origin}/host.html?${query}`);
  const softphone = page.frameLocator("#softphone");
  return { page, softphone, sent, close: () => context.close() };
}

const hostState = (page) => page.evaluate(() => JSON.parse(JSON.stringify(window.salesforce)));

test("inside Lightning: click-to-dial enabled, a pop opens the panel and the record, a clicked number dials", async () => {
  const { page, softphone, sent, close } = await openHost(lightning);
  try {
    // The library loads from the Lightning origin.
    await until("opencti ready", async () =>
      (await page.frame({ url: /\/console\// }).evaluate(() => document.documentElement.dataset.opencti)) === "ready");
    const agent = product.agents[0];
    await page.getByRole("button", { name: "Phone" }).click();
    await softphone.getByLabel("Agent token").fill(agent.token);
    await softphone.getByRole("button", { name: "Sign in" }).click();
    await softphone.locator('#connection[data-state="connected"]').waitFor();
    await until("enableClickToDial", async () => (await hostState(page)).clickToDial);
    const registered = (await hostState(page)).log.map((l) => l.method);
    assert.ok(registered.includes("onClickToDial"), JSON.stringify(registered));

    const call = await product.inboundCall("+14155550123");
    await product.screenPop(call);
    const popped = await until("the screen pop in Salesforce", async () => {
      const s = await hostState(page);
      return s.popped.length ? s : null;
    });
    assert.deepEqual(popped.popped, [{ type: "sobject", recordId: "003Em0000000001IAA" }]);
    assert.equal(popped.panelVisible, true);
    assert.equal(await page.textContent("#record-title"), "Record 003Em0000000001IAA");
    assert.equal(await softphone.locator("#record-name").textContent(), "Ada Lovelace");

    // A caller matching several records: Salesforce searches the number instead.
    const many = await product.inboundCall("+442079460958");
    await product.screenPop(many);
    await until("the search pop", async () => (await hostState(page)).popped.length === 2);
    assert.deepEqual((await hostState(page)).popped[1], { type: "search", searchString: "+442079460958" });

    // The agent clicks a phone number on the record page.
    await page.click("#phone");
    const dial = await until("the dial frame", () => sent.find((f) => f.type === "dial"));
    assert.equal(dial.number, "+16505550111");
    assert.equal(dial.record_id, "003Em0000000001IAA");
    assert.equal(await softphone.locator("#dial-number").inputValue(), "+16505550111");
  } finally {
    await close();
  }
});

test("a frame that claims a non-Lightning origin loads no Open CTI library and posts nothing", async () => {
  const { page, softphone, close } = await openHost(lightning, impostor.origin);
  try {
    await page.getByRole("button", { name: "Phone" }).click();
    await softphone.getByLabel("Agent token").waitFor();
    const frame = page.frame({ url: /\/console\// });
    // The page's scripts ran and decided: no Open CTI.
    await until("the console scripts", () => frame.evaluate(() => typeof window.NatterboxConsole === "object"));
    assert.equal(await frame.evaluate(() => document.documentElement.dataset.opencti || "none"), "none");
    assert.equal(await frame.evaluate(() => typeof window.sforce), "undefined");
    assert.deepEqual((await hostState(page)).log, []);
  } finally {
    await close();
  }
});

test("a page that is not a Lightning origin cannot frame the console (frame-ancestors)", async () => {
  const { page, close } = await openHost(impostor);
  try {
    // Chromium replaces a frame refused by frame-ancestors with its error page.
    const blocked = await until("chromium to refuse the frame", () => {
      const frame = page.frames().find((f) => f !== page.mainFrame());
      return frame && frame.url().startsWith("chrome-error://") ? "refused" : null;
    }, 10000);
    assert.equal(blocked, "refused");
    assert.deepEqual((await hostState(page)).log, []);
  } finally {
    await close();
  }
});
