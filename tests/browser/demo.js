// The agent's side of the demo (scripts/demo.sh): the console in headless chromium takes an
// inbound call with its screen pop, dials, holds, transfers and wraps up, with a PNG of each
// step in the output directory and a one-line caption for each.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { startProduct, launchChromium, signIn, until } = require("./harness");
const { startFakeSalesforce } = require("./fake-salesforce/server");

const out = path.resolve(process.argv[2] || "demo-output");
fs.mkdirSync(out, { recursive: true });
let shot = 0;

async function step(page, name, caption) {
  const file = path.join(out, `${String(++shot).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`   ${caption}`);
  console.log(`      [${path.relative(process.cwd(), file)}]`);
}

/// Sends a control from the page and says what came back: a result, a refusal, or nothing.
async function control(page, sent, replies, type, act) {
  const before = sent.length;
  await act();
  const frame = await until(`the ${type} frame`, () => sent.slice(before).find((f) => f.type === type), 3000);
  const reply = await until(`an answer to ${type}`, () => replies.find((r) => r.type === "result" && r.id === frame.id), 6000)
    .catch(() => null);
  if (!reply) return `sent ${type}; this sidecar has no call control to answer it yet`;
  return reply.ok === false
    ? `${type} refused: ${reply.error.code} ${reply.error.reason}`
    : `${type}: accepted`;
}

(async () => {
  const product = await startProduct({
    orgExtra: `\n      <click-to-dial context="agents" caller-id-number="+14155550000" caller-id-name="Acme Support"/>`,
  });
  const lightning = await startFakeSalesforce("acme.lightning.force.com");
  const browser = await launchChromium([
    "--host-resolver-rules=MAP acme.lightning.force.com 127.0.0.1",
    "--ignore-certificate-errors",
  ]);
  try {
    const context = await browser.newContext({ viewport: { width: 480, height: 900 }, deviceScaleFactor: 1 });
    const page = await context.newPage();
    const sent = [];
    const replies = [];
    page.on("websocket", (ws) => {
      ws.on("framesent", (f) => { try { sent.push(JSON.parse(f.payload)); } catch (_) {} });
      ws.on("framereceived", (f) => { try { replies.push(JSON.parse(f.payload)); } catch (_) {} });
    });
    const agent = product.agents[0];
    await signIn(page, product.consoleUrl, agent.token);
    const presence = await control(page, sent, replies, "set_presence", () => page.getByLabel("Presence").selectOption("Available"));
    await step(page, "signed-in", `Agent ${agent.user_id} (ext. ${agent.extension}) signs in (the token is typed, never in a URL) and goes Available (${presence}).`);

    const call = await product.inboundCall("+14155550123");
    console.log(`   A call rings from +1 415 555 0123; sf_lookup finds ${call.vars.sf_record_type} ${call.vars.sf_record_name} (owner ${call.vars.sf_owner_name}) in ${call.vars.sf_lookup_ms} ms.`);
    await product.screenPop(call);
    await page.waitForSelector("#call[data-painted-at-ms]");
    const ms = Number(await page.getAttribute("#call", "data-painted-at-ms")) - Number(await page.getAttribute("#call", "data-created-at-ms"));
    await step(page, "screen-pop", `The pop is on screen ${ms} ms after sf_screen_pop: name, type, owner and a link into Salesforce, before the agent answers.`);

    const shim = product.shim;
    await shim.run(`call ${call.id}-b direction=outbound destination_number=${agent.extension}`);
    await shim.run(`answer ${call.id}-b`);
    await shim.run(`bridge ${call.id} ${call.id}-b`);
    await until("Connected", async () => (await page.textContent("#call-state")) === "Connected");
    await step(page, "answered", `The agent answers on extension ${agent.extension}; the console shows the call connected.`);
    const ran = () => {
      const c = shim.switchCommands().at(-1);
      return c ? `FreeSWITCH ran: ${c.command} ${c.arg}` : "";
    };
    let said = await control(page, sent, replies, "hold", () => page.getByRole("button", { name: "Hold" }).click());
    await until("On hold", async () => (await page.textContent("#call-state")) === "On hold");
    await shim.run("wait_events");
    await step(page, "hold", `The agent puts the caller on hold (${said}; ${ran()}).`);
    said = await control(page, sent, replies, "resume", () => page.getByRole("button", { name: "Resume" }).click());
    await until("Connected", async () => (await page.textContent("#call-state")) === "Connected");
    await page.getByLabel("Transfer to").fill("1002");
    said = await control(page, sent, replies, "transfer", () => page.getByRole("button", { name: "Transfer", exact: true }).click());
    await shim.run("wait_events");
    const transferRan = ran();
    await shim.run(`hangup ${call.id}-b`);
    await until("Transferred", async () => (await page.textContent("#call-state")).startsWith("Transferred"));
    await step(page, "transfer", `…takes them off hold and transfers the call to extension 1002 (${said}; ${transferRan}).`);
    await page.getByLabel("Disposition").selectOption("Resolved");
    await page.getByLabel("Notes").fill("Asked about the March invoice; resent it.");
    said = await control(page, sent, replies, "wrap_up", () => page.getByRole("button", { name: "Save wrap-up" }).click());
    await step(page, "wrap-up", `Wrap-up: disposition "Resolved" and a note for the call's Task (${said}).`);
    said = await control(page, sent, replies, "dial", () => page.locator("#history .number").first().click());
    await shim.run("wait_events");
    const originate = shim.switchCommands().filter((c) => c.command === "originate").at(-1);
    await page.waitForSelector('#call-title:text("Outbound call")');
    await step(page, "click-to-dial", `Click-to-dial from the session's history: +1 415 555 0123 again (${said}); FreeSWITCH rings the agent's phone first: originate ${originate ? originate.arg.replace(/^\{[^}]*\}/, "{…}") : "(none)"}.`);
    const dialled = originate && originate.arg.match(/origination_uuid=([0-9a-zA-Z-]+)/)[1];
    if (dialled) {
      await shim.run(`answer ${dialled}`);
      await until("Connected", async () => (await page.textContent("#call-state")) === "Connected");
      said = await control(page, sent, replies, "hangup", () => page.getByRole("button", { name: "Hang up" }).click());
      await until("Ended", async () => (await page.textContent("#call-state")).startsWith("Ended"));
      await step(page, "hangup", `The customer answers, they talk, the agent hangs up (${said}).`);
    }
    await context.close();

    // The same console as the Open CTI softphone in Lightning (a test host plays Salesforce).
    const lex = await browser.newContext({ viewport: { width: 1280, height: 760 } });
    const host = await lex.newPage();
    await host.goto(`${lightning.origin}/host.html?adapter=${encodeURIComponent(product.consoleUrl)}`);
    await host.getByRole("button", { name: "Phone" }).click();
    const phone = host.frameLocator("#softphone");
    await phone.getByLabel("Agent token").fill(agent.token);
    await phone.getByRole("button", { name: "Sign in" }).click();
    await phone.locator('#connection[data-state="connected"]').waitFor();
    const second = await product.inboundCall("+14155550123");
    await product.screenPop(second);
    await until("the record to open", async () => (await host.textContent("#record-title")).startsWith("Record "));
    await step(host, "open-cti", "In Lightning, the same console is the Open CTI softphone: the pop opens Ada Lovelace's record in the agent's tab.");
    await lex.close();
    console.log(`   pops delivered: ${await product.metric("natterbox_sidecar_pops_delivered_total")}`);
  } finally {
    await browser.close();
    await lightning.close();
    await product.stop();
  }
})().catch((e) => {
  console.error("demo (console): " + (e && e.stack ? e.stack : e));
  process.exit(1);
});
