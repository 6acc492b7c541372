// The Service Cloud Voice connector in chromium: a test host playing Salesforce's voice client
// (fake-salesforce/voice-client.*, served as https://acme.lightning.force.com:<port>, the name
// mapped to 127.0.0.1 inside chromium) frames the sidecar's /scv/ page, sets the connector up
// over a MessagePort and drives it with the voice client's messages, against the real sidecar,
// the real module in the host shim and the org emulator's Telephony Integration API. Asserted:
// the events the connector publishes, the FreeSWITCH commands the module runs, and the one
// VoiceCall the emulator holds.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { startProduct, launchChromium, until, TOP } = require("./harness");
const { startFakeSalesforce } = require("./fake-salesforce/server");

const LIGHTNING = "acme.lightning.force.com";
const IMPOSTOR = "acme.force-com.example";
const CALLER = "+14155550123";
const CALLER_RECORD = "003Em0000000001IAA"; // Ada Lovelace in the emulator's seed
let product;
let lightning;
let impostor;
let browser;

before(async () => {
  const key = path.join(TOP, "tests/sf-emulator/fixtures/test-jwt-private-key.pem");
  product = await startProduct({
    callLog: ` record="voicecall"`,
    orgExtra: (emu) => `
      <click-to-dial context="agents" caller-id-number="+14155550000" caller-id-name="Acme Support"/>
      <service-cloud-voice scrt-url="${emu.login_url}" org-id="${emu.org_id}" call-center="NatterboxCC"
        provider="Natterbox" private-key-file="${key}">
        <omni-channel flow="Inbound_Voice" fallback-queue="Support" wait-seconds="30"/>
      </service-cloud-voice>`,
  });
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

/// The voice client with the connector framed, set up and signed in as `agent`.
async function openVoiceClient(agent) {
  const context = await browser.newContext();
  const page = await context.newPage();
  // The connector's frames from the sidecar (each `hello` is one sign-in).
  const frames = [];
  page.on("websocket", (ws) => ws.on("framereceived", (f) => {
    try { frames.push(JSON.parse(f.payload)); } catch (_) {}
  }));
  const adapter = `http://127.0.0.1:${product.agentPort}/scv/`;
  await page.goto(`${lightning.origin}/voice-client.html?${new URLSearchParams({ adapter })}`);
  const client = {
    page,
    frames,
    close: () => context.close(),
    received: () => page.evaluate(() => JSON.parse(JSON.stringify(window.voiceClient.received))),
    send: (message) => page.evaluate((m) => window.voiceClient.send(m), message),
    async events() {
      return (await client.received())
        .filter((m) => m.type === "TELEPHONY_EVENT_DISPATCHED")
        .map((m) => ({ type: m.payload.telephonyEventType, payload: m.payload.telephonyEventPayload }));
    },
    /// Waits for the `n`th event of `type` (1-based) and returns its payload.
    async nth(type, n = 1) {
      const found = await until(`${type} #${n}`, async () => (await client.events()).filter((e) => e.type === type)[n - 1], 20000);
      return found.payload;
    },
  };
  await client.nth("SHOW_LOGIN");
  // The library logs the admin's configuration it was set up with, without the certificate.
  const setup = (await client.received()).find((m) => m.type === "LOG" && m.payload.eventType === "SETUP_CONNECTOR");
  assert.equal(setup.payload.payload["/reqGeneralInfo/reqVendorInfoApiName"], "Natterbox");
  assert.equal(setup.payload.payload["/reqHvcc/reqTelephonyIntegrationCertificate"], undefined);

  const login = page.frameLocator("#connector");
  await login.getByLabel("Natterbox agent token").fill(agent.token);
  await login.getByRole("button", { name: "Sign in" }).click();
  assert.equal((await client.nth("LOGIN_RESULT")).success, true);
  const ready = await until("CONNECTOR_READY", async () => (await client.received()).find((m) => m.type === "CONNECTOR_READY"));
  assert.equal(ready.payload.agentConfig.SELECTED_PHONE.number, agent.extension);
  assert.equal(ready.payload.capabilities.BLIND_TRANSFER, true);
  assert.equal(await login.locator("#token").inputValue(), "", "the token does not stay in the form");
  await client.send({ type: "SET_AGENT_STATUS", agentStatus: "Online", statusInfo: { statusApiName: "Available_for_Voice" } });
  assert.equal((await client.nth("SET_AGENT_STATUS_RESULT")).success, true);
  return client;
}

/// The switch commands the module ran from index `from` on, once `count` of them are there.
async function commandsAfter(from, count) {
  return until(`${count} switch command(s)`, async () => {
    await product.shim.run("wait_events");
    const all = product.shim.switchCommands();
    return all.length >= from + count ? all.slice(from) : null;
  }, 20000);
}

const voiceCallsOf = async (uuid) => (await product.voiceCalls()).filter((c) => c.VendorCallKey === uuid);

/// The CallDisposition values the emulator recorded the VoiceCall going through, in order.
const dispositions = (call) => call.transitions.map((t) => t.to);

/// The dialplan bridges the caller to the agent's desk phone, which rings: FreeSWITCH creates the
/// agent's leg (one of the caller's call) and reports progress on the caller's.
async function deskPhoneRings(call, extension) {
  await product.shim.run(`call ${call.id}-b direction=outbound destination_number=${extension} call_uuid=${call.id}`);
  await product.shim.run(`ring ${call.id}`);
}

/// The agent picks the desk phone up: FreeSWITCH answers the agent's leg, then the caller's, and
/// bridges them.
async function deskPhoneAnswers(call) {
  await product.shim.run(`answer ${call.id}-b`);
  await product.shim.run(`answer ${call.id}`);
  await product.shim.run(`bridge ${call.id} ${call.id}-b`);
}

test("an inbound call rings in the connector with the caller's record, is accepted, held, resumed, blind-transferred and ended; its VoiceCall and its transfer's", async () => {
  const [grace] = product.agents;
  const client = await openVoiceClient(grace);
  try {
    const call = await product.inboundCall(CALLER);
    await product.screenPop(call);
    await deskPhoneRings(call, grace.extension);
    const started = await client.nth("CALL_STARTED");
    assert.equal(started.callId, call.id);
    assert.equal(started.callType, "Inbound");
    assert.equal(started.phoneNumber, CALLER);
    assert.equal(started.contact.recordId, CALLER_RECORD);
    assert.equal(started.state, "ringing");

    // The voice client's accept: the connector waits for the desk phone to be picked up.
    const before = product.shim.switchCommands().length;
    await client.send({ type: "ACCEPT_CALL", call: started });
    await deskPhoneAnswers(call);
    const connected = await client.nth("CALL_CONNECTED");
    assert.equal(connected.callId, call.id);
    assert.equal(connected.state, "connected");
    // The VoiceCall is created and accepted while the call is live.
    const live = await until("the VoiceCall in progress", async () => {
      const [vc] = await voiceCallsOf(call.id);
      return vc && vc.fields.CallDisposition === "in-progress" ? vc : null;
    }, 15000);
    assert.equal(live.fields.CallType, "Inbound");

    await client.send({ type: "HOLD", call: connected });
    assert.equal((await client.nth("HOLD_TOGGLE", 1)).isCustomerOnHold, true);
    await client.send({ type: "RESUME", call: connected });
    assert.equal((await client.nth("HOLD_TOGGLE", 2)).isCustomerOnHold, false);

    await client.send({
      type: "ADD_PARTICIPANT",
      contact: { phoneNumber: "1002", type: "PhoneNumber" },
      call: connected,
      isBlindTransfer: true,
    });
    const added = await client.nth("PARTICIPANT_ADDED");
    assert.equal(added.initialCallHasEnded, true);
    assert.equal(added.phoneNumber, "1002");
    await client.nth("HANGUP");
    const commands = await commandsAfter(before, 3);
    assert.deepEqual(commands.map((c) => [c.command, c.arg]), [
      ["uuid_hold", `${call.id}-b`],
      ["uuid_hold", `off ${call.id}-b`],
      ["uuid_transfer", `${call.id}-b -bleg 1002 XML agents`],
    ]);

    // FreeSWITCH ends the agent's leg, rings 1002 for the caller, and later the caller hangs up.
    await product.shim.run(`hangup ${call.id}-b`);
    await product.shim.run(`call ${call.id}-c direction=outbound destination_number=1002 call_uuid=${call.id}`);
    await product.shim.run(`answer ${call.id}-c`);
    await product.shim.run(`bridge ${call.id} ${call.id}-c`);
    await product.shim.run(`hangup ${call.id} NORMAL_CLEARING`);
    await product.shim.run(`hangup ${call.id}-c NORMAL_CLEARING`);

    // The call's VoiceCall and the one Salesforce's model gives the transferred leg, both ended.
    const completed = (c) => c && c.fields.CallDisposition === "completed";
    const [done, transfer] = await until("the VoiceCalls completed", async () => {
      const all = await product.voiceCalls();
      const parent = all.find((c) => c.VendorCallKey === call.id);
      const child = all.find((c) => c.VendorCallKey.startsWith(`${call.id}.transfer.`));
      return completed(parent) && completed(child) ? [parent, child] : null;
    }, 40000).catch(async (e) => {
      // What the emulator holds and why the sidecar's steps failed, for whoever reads the failure.
      const log = fs.readFileSync(path.join(product.work, "sidecar.log"), "utf8");
      const failed = log.split("\n").filter((l) => l.includes("VoiceCall step failed")).join("\n");
      throw new Error(`${e.message}: ${JSON.stringify(await product.voiceCalls())}\n${failed}`);
    });
    // After the agent's status round trip through the sidecar, every frame it sent before is in.
    await client.send({ type: "SET_AGENT_STATUS", agentStatus: "AfterCallWork", statusInfo: { statusApiName: "AfterCallWork" } });
    await client.nth("SET_AGENT_STATUS_RESULT", 2);
    const types = (await client.events()).map((e) => e.type).filter((t) => t !== "SET_AGENT_STATUS_RESULT");
    assert.deepEqual(types, [
      "SHOW_LOGIN",
      "LOGIN_RESULT",
      "CALL_STARTED",
      "CALL_CONNECTED",
      "HOLD_TOGGLE",
      "HOLD_TOGGLE",
      "PARTICIPANT_ADDED",
      "HANGUP",
    ]);
    assert.deepEqual((await client.received()).filter((m) => m.type === "TELEPHONY_EVENT_DISPATCHED" && m.payload.telephonyEventType === "ERROR"), []);

    // No other: the agent's and the transfer target's legs make none of their own.
    const all = await product.voiceCalls();
    assert.deepEqual(all.map((c) => c.VendorCallKey).sort(), [call.id, transfer.VendorCallKey].sort());
    const f = done.fields;
    assert.equal(f.CallCenterApiName, "NatterboxCC");
    assert.equal(f.CallType, "Inbound");
    assert.equal(f.FromPhoneNumber, CALLER);
    assert.equal(f.ToPhoneNumber, "2000");
    assert.ok(f.CallAcceptDateTime && f.CallEndDateTime, JSON.stringify(f));
    assert.ok(Date.parse(f.CallStartDateTime) <= Date.parse(f.CallAcceptDateTime));
    assert.ok(Date.parse(f.CallAcceptDateTime) <= Date.parse(f.CallEndDateTime));
    const create = done.history[0];
    assert.equal(create.op, "create");
    assert.deepEqual(create.body.participants, [{ participantKey: CALLER, type: "END_USER" }]);
    assert.equal(done.history.filter((h) => h.op === "create").length, 1);
    assert.equal(done.history.filter((h) => "acceptTime" in h.body).length, 1);
    assert.equal(done.history.filter((h) => "endTime" in h.body).length, 1);
    assert.deepEqual(dispositions(done), ["new", "in-progress", "completed"]);
    const t = transfer.fields;
    assert.equal(t.CallType, "Transfer");
    assert.equal(t.ParentVoiceCallId, done.Id);
    assert.equal(t.FromPhoneNumber, CALLER);
    assert.equal(t.ToPhoneNumber, "1002");
    assert.ok(Date.parse(f.CallAcceptDateTime) <= Date.parse(t.CallStartDateTime), JSON.stringify(t));
    assert.equal(transfer.history.filter((h) => h.op === "create").length, 1);
    assert.deepEqual(dispositions(transfer), ["new", "completed"]);
  } finally {
    await client.close();
  }
});

test("the agent ends a call from the voice client: the switch hangs it up and the VoiceCall completes", async () => {
  const [, alan] = product.agents;
  const client = await openVoiceClient(alan);
  try {
    const call = await product.inboundCall(CALLER, { extension: alan.extension });
    await product.screenPop(call);
    await deskPhoneRings(call, alan.extension);
    const started = await client.nth("CALL_STARTED");
    assert.equal(started.callId, call.id);
    await client.send({ type: "ACCEPT_CALL", call: started });
    await deskPhoneAnswers(call);
    const connected = await client.nth("CALL_CONNECTED");
    const before = product.shim.switchCommands().length;
    await client.send({ type: "END_CALL", call: connected });
    const hangup = await client.nth("HANGUP");
    assert.equal(hangup[0].callId, call.id);
    // The module hangs up the agent's leg and the caller's.
    const kills = await commandsAfter(before, 2);
    assert.deepEqual(kills.map((c) => [c.command, c.arg]), [
      ["uuid_kill", `${call.id}-b`],
      ["uuid_kill", call.id],
    ]);
    const [vc] = await until("the VoiceCall completed", async () => {
      const list = await voiceCallsOf(call.id);
      return list.length && list[0].fields.CallDisposition === "completed" ? list : null;
    }, 20000);
    assert.deepEqual(dispositions(vc), ["new", "in-progress", "completed"]);
    assert.equal((await voiceCallsOf(call.id)).length, 1);
    // The switch's `ended` for the call the voice client ended is not published again.
    await client.send({ type: "SET_AGENT_STATUS", agentStatus: "AfterCallWork", statusInfo: { statusApiName: "AfterCallWork" } });
    await client.nth("SET_AGENT_STATUS_RESULT", 2);
    assert.equal((await client.events()).filter((e) => e.type === "HANGUP").length, 1);
  } finally {
    await client.close();
  }
});

test("kill -9 of the sidecar mid-call: the connector signs in again, the call goes on, and the VoiceCall loses no update and gets none twice", async () => {
  const [grace] = product.agents;
  const client = await openVoiceClient(grace);
  try {
    const call = await product.inboundCall(CALLER);
    await product.screenPop(call);
    await deskPhoneRings(call, grace.extension);
    const started = await client.nth("CALL_STARTED");
    assert.equal(started.callId, call.id);

    // Salesforce refuses VoiceCall updates for now: the accept is committed in the sidecar's
    // outbox but not delivered when the sidecar is killed.
    const refusals = 1000;
    await product.addFault({ path_prefix: "/telephony/v1/voiceCalls/", status: 503, times: refusals });
    await client.send({ type: "ACCEPT_CALL", call: started });
    await deskPhoneAnswers(call);
    const connected = await client.nth("CALL_CONNECTED");
    await until("the VoiceCall created and its accept refused", async () => {
      const [vc] = await voiceCallsOf(call.id);
      const [fault] = await product.faults();
      return vc && vc.fields.CallDisposition === "new" && fault.times < refusals;
    }, 15000);

    await product.restartSidecarAfterKill9();
    await product.clearFaults();
    // The connector signs in again by itself (no LOGOUT_RESULT), and the new sidecar knows the
    // call (the module told it on connecting): the call is on the new connection, answered.
    await until("the call on the connector's new connection", () => {
      const hellos = client.frames.flatMap((f, i) => (f.type === "hello" ? [i] : []));
      return hellos.length === 2 && client.frames.slice(hellos[1]).some((f) =>
        f.type === "call" && f.call_uuid === call.id && f.state === "answered");
    }, 20000);
    await client.send({ type: "HOLD", call: connected });
    assert.equal((await client.nth("HOLD_TOGGLE", 1)).isCustomerOnHold, true);
    await client.send({ type: "RESUME", call: connected });
    assert.equal((await client.nth("HOLD_TOGGLE", 2)).isCustomerOnHold, false);
    await client.send({ type: "END_CALL", call: connected });
    await client.nth("HANGUP");

    const [vc] = await until("the VoiceCall completed", async () => {
      const list = await voiceCallsOf(call.id);
      return list.length && list[0].fields.CallDisposition === "completed" ? list : null;
    }, 30000);
    assert.equal((await voiceCallsOf(call.id)).length, 1);
    assert.equal(vc.history.filter((h) => h.op === "create").length, 1);
    assert.equal(vc.history.filter((h) => "acceptTime" in h.body).length, 1, JSON.stringify(vc.history));
    assert.equal(vc.history.filter((h) => "endTime" in h.body).length, 1, JSON.stringify(vc.history));
    assert.deepEqual(dispositions(vc), ["new", "in-progress", "completed"]);
    const types = (await client.events()).map((e) => e.type);
    assert.equal(types.filter((t) => t === "LOGOUT_RESULT").length, 0);
    assert.equal(types.filter((t) => t === "CALL_STARTED").length, 1);
    assert.equal(types.filter((t) => t === "CALL_CONNECTED").length, 1);
  } finally {
    await client.close();
  }
});

/// The emulator's admin API (`/__emulator/...`).
async function emulatorAdmin(pathname, body) {
  const url = `${product.emulator.login_url}/__emulator${pathname}`;
  const res = body === undefined
    ? await fetch(url)
    : await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return res.json();
}

test("a call Omni-Channel offers the agent: the voice client's accept bridges the waiting call to the agent's desk phone", async () => {
  const [grace] = product.agents;
  const client = await openVoiceClient(grace);
  const id = "om-1";
  try {
    await emulatorAdmin("/omni/agents", { user_id: grace.user_id, online: true });
    // The dialplan's routing point: looked up, handed to Omni-Channel, waiting (hold music).
    await product.shim.run(`call ${id} caller_id_number=${CALLER} destination_number=2000`);
    await product.shim.run(`app ${id} sf_lookup`);
    await product.shim.run(`app ${id} sf_omni_route`);
    const routing = await until("the call offered to the agent", async () => {
      const board = await emulatorAdmin("/omni");
      return board.routings.find((r) => r.vendor_call_key === id && r.offered_to);
    }, 20000);
    assert.equal(routing.offered_to, grace.user_id);
    assert.deepEqual(routing.flow_input_parameters, { recordId: CALLER_RECORD });

    // The agent accepts the work in the Omni widget; Salesforce's voice client calls acceptCall.
    assert.equal((await emulatorAdmin("/omni/accept", { voice_call: id })).accepted_by, grace.user_id);
    const before = product.shim.switchCommands().length;
    await client.send({ type: "ACCEPT_CALL", call: { callId: id, callType: "Inbound" } });
    const bridge = await commandsAfter(before, 4);
    assert.deepEqual(bridge.map((c) => [c.command, c.arg]), [
      ["uuid_setvar", `${id} sf_agent_user_id ${grace.user_id}`],
      ["uuid_setvar", `${id} sf_agent_extension ${grace.extension}`],
      ["uuid_setvar", `${id} playback_timeout_sec`],
      ["uuid_transfer", `${id} ${grace.extension} XML agents`],
    ]);
    // The agent's extension rings and is picked up: the accept answers, once.
    const call = { id };
    await deskPhoneRings(call, grace.extension);
    await deskPhoneAnswers(call);
    const connected = await client.nth("CALL_CONNECTED");
    assert.equal(connected.callId, id);
    assert.equal(connected.state, "connected");
    await product.shim.run(`hangup ${id}-b NORMAL_CLEARING`);
    await product.shim.run(`hangup ${id} NORMAL_CLEARING`);
    await client.nth("HANGUP");
    const [vc] = await until("the VoiceCall completed", async () => {
      const list = await voiceCallsOf(id);
      return list.length && list[0].fields.CallDisposition === "completed" ? list : null;
    }, 20000);
    assert.deepEqual(dispositions(vc), ["new", "in-progress", "completed"]);
    // Salesforce already had the call as the agent's work: no CALL_STARTED for it, no error; the
    // routing was accepted, never cleared.
    await client.send({ type: "SET_AGENT_STATUS", agentStatus: "AfterCallWork", statusInfo: { statusApiName: "AfterCallWork" } });
    await client.nth("SET_AGENT_STATUS_RESULT", 2);
    const types = (await client.events()).map((e) => e.type);
    assert.equal(types.filter((t) => t === "CALL_STARTED").length, 0, types.join(","));
    assert.equal(types.filter((t) => t === "ERROR").length, 0, types.join(","));
    const board = await emulatorAdmin("/omni");
    assert.equal(board.routings.find((r) => r.vendor_call_key === id).state, "accepted");
  } finally {
    await client.close();
  }
});

test("a page outside Lightning cannot frame the connector and hears nothing from it", async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const adapter = `http://127.0.0.1:${product.agentPort}/scv/`;
    await page.goto(`${impostor.origin}/voice-client.html?${new URLSearchParams({ adapter })}`);
    // Chromium replaces a frame refused by frame-ancestors with its error page.
    await until("chromium to refuse the frame", () => {
      const frame = page.frames().find((f) => f !== page.mainFrame());
      return frame && frame.url().startsWith("chrome-error://");
    }, 10000);
    assert.equal(await page.evaluate(() => window.voiceClient.received.length), 0);
  } finally {
    await context.close();
  }
});
