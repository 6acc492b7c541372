// Call control from the console in chromium, through the real sidecar and the real module in the
// host shim (which records each FreeSWITCH API command the module runs and answers as
// FreeSWITCH would): the command each button produces, the call state the page then shows,
// click-to-dial's originate, wrap-up, and 403 on another agent's call.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const { startProduct, launchChromium, signIn, until } = require("./harness");

let product;
let browser;

before(async () => {
  product = await startProduct({
    orgExtra: `\n      <click-to-dial context="agents" caller-id-number="+14155550000" caller-id-name="Acme Support"/>`,
  });
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close();
  if (product) await product.stop();
});

async function consolePage(agent) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const results = [];
  const sent = [];
  page.on("websocket", (ws) => {
    ws.on("framereceived", (f) => {
      try {
        const frame = JSON.parse(f.payload);
        if (frame.type === "result") results.push(frame);
      } catch (_) {}
    });
    ws.on("framesent", (f) => {
      try { sent.push(JSON.parse(f.payload)); } catch (_) {}
    });
  });
  await signIn(page, product.consoleUrl, agent.token);
  return { page, results, sent, close: () => context.close() };
}

/// The switch commands run since `from` (an index into the list).
async function commandsAfter(from, count) {
  await product.shim.run("wait_events");
  return until(`${count} switch command(s)`, async () => {
    await product.shim.run("wait_events");
    const all = product.shim.switchCommands();
    return all.length >= from + count ? all.slice(from) : null;
  }, 20000);
}

const callState = (page) => page.textContent("#call-state");

test("hold, resume, mute, blind transfer and wrap-up on the agent's inbound call", async () => {
  const [grace, alan] = product.agents;
  const g = await consolePage(grace);
  try {
    const call = await product.inboundCall("+14155550123");
    await product.screenPop(call);
    await g.page.waitForSelector(`#call[data-call-uuid="${call.id}"]`);
    // The agent's phone answers (leg -b) and is bridged to the caller.
    await product.shim.run(`call ${call.id}-b direction=outbound destination_number=${grace.extension}`);
    await product.shim.run(`answer ${call.id}-b`);
    await product.shim.run(`bridge ${call.id} ${call.id}-b`);
    await until("Connected", async () => (await callState(g.page)) === "Connected");

    // Another agent's console cannot act on it: 403, and FreeSWITCH hears nothing.
    const before = product.shim.switchCommands().length;
    const alanPage = await consolePage(alan);
    const refused = await alanPage.page.evaluate(({ url, token, uuid }) => new Promise((resolve) => {
      const ws = new WebSocket(url, ["natterbox.agent.v1", "natterbox.token." + token]);
      ws.onmessage = (e) => {
        const f = JSON.parse(e.data);
        if (f.type === "hello") ws.send(JSON.stringify({ type: "hold", id: "x1", call_uuid: uuid }));
        if (f.type === "result") resolve(f);
      };
    }), { url: `ws://127.0.0.1:${product.agentPort}/agent`, token: alan.token, uuid: call.id });
    await alanPage.close();
    assert.equal(refused.ok, false);
    assert.deepEqual([refused.error.code, refused.error.reason], [403, "not_your_call"]);
    await product.shim.run("wait_events");
    assert.equal(product.shim.switchCommands().length, before);

    await g.page.getByRole("button", { name: "Hold" }).click();
    await until("On hold", async () => (await callState(g.page)) === "On hold");
    assert.equal(await g.page.getAttribute("#hold", "aria-pressed"), "true");
    await g.page.getByRole("button", { name: "Resume" }).click();
    await until("Connected again", async () => (await callState(g.page)) === "Connected");
    await g.page.getByRole("button", { name: "Mute" }).click();
    await g.page.waitForSelector('#mute[aria-pressed="true"]');
    await g.page.getByLabel("Transfer to").fill("1002");
    await g.page.getByRole("button", { name: "Transfer", exact: true }).click();
    const commands = await commandsAfter(before, 4);
    assert.deepEqual(commands.map((c) => [c.command, c.arg]), [
      ["uuid_hold", `${call.id}-b`],
      ["uuid_hold", `off ${call.id}-b`],
      ["uuid_audio", `${call.id}-b start read mute 1`],
      ["uuid_transfer", `${call.id}-b -bleg 1002 XML agents`],
    ]);
    // FreeSWITCH ends the agent's leg after the transfer.
    await product.shim.run(`hangup ${call.id}-b`);
    await until("Transferred", async () => (await callState(g.page)) === "Transferred to 1002");
    assert.equal(await g.page.isDisabled("#hold"), true);

    await g.page.getByLabel("Disposition").selectOption("Resolved");
    await g.page.getByLabel("Notes").fill("Asked about the invoice");
    await g.page.getByRole("button", { name: "Save wrap-up" }).click();
    const wrapUp = await until("the wrap_up frame", () => g.sent.find((f) => f.type === "wrap_up"), 3000);
    assert.deepEqual(
      { call_uuid: wrapUp.call_uuid, disposition: wrapUp.disposition, notes: wrapUp.notes },
      { call_uuid: call.id, disposition: "Resolved", notes: "Asked about the invoice" },
    );
    const accepted = await until("the wrap-up's result", () => g.results.find((r) => r.id === wrapUp.id), 5000);
    assert.equal(accepted.ok, true, JSON.stringify(accepted));
    // Every command of this call was accepted.
    assert.deepEqual(g.results.filter((r) => !r.ok), []);
    assert.equal(await g.page.isHidden("#message"), true);
  } finally {
    await g.close();
  }
});

test("click-to-dial rings the agent's phone first, then the number with the org's caller id", async () => {
  const [grace] = product.agents;
  const g = await consolePage(grace);
  try {
    const before = product.shim.switchCommands().length;
    await g.page.getByLabel("Number").fill("+1 (415) 555-0100");
    const clicked = Date.now();
    await g.page.getByRole("button", { name: "Call", exact: true }).click();
    const [originate] = await commandsAfter(before, 1);
    assert.equal(originate.command, "originate");
    assert.ok(originate.arg.endsWith(`}user/${grace.extension} +14155550100 XML agents`), originate.arg);
    assert.ok(originate.arg.includes("effective_caller_id_number=+14155550000"), originate.arg);
    const figure = `click-to-dial (click in chromium → originate run by the module in the host shim): ${originate.at - clicked} ms`;
    console.log(figure);
    if (process.env.BROWSER_FIGURES) fs.appendFileSync(process.env.BROWSER_FIGURES, figure + "\n");
    const uuid = originate.arg.match(/origination_uuid=([0-9a-zA-Z-]+)/)[1];
    await g.page.waitForSelector(`#call[data-call-uuid="${uuid}"]`);
    assert.equal(await g.page.textContent("#call-title"), "Outbound call");
    assert.equal(await g.page.textContent("#caller-number"), "+14155550100");
    assert.equal(await callState(g.page), "Ringing");
    await product.shim.run(`answer ${uuid}`);
    await until("Connected", async () => (await callState(g.page)) === "Connected");
    await g.page.getByRole("button", { name: "Hang up" }).click();
    await until("Ended", async () => (await callState(g.page)) === "Ended (NORMAL_CLEARING)");
    const last = product.shim.switchCommands().at(-1);
    assert.deepEqual([last.command, last.arg], ["uuid_kill", uuid]);
  } finally {
    await g.close();
  }
});
