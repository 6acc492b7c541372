// The vendor connector contract exercised the way Salesforce's voice client drives it: the built
// bundle, SETUP_CONNECTOR over a MessagePort, then the voice client's messages, against a fake
// sidecar speaking agent protocol v1. Every assertion waits for the message it expects.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { startFakeSidecar } from "./fake_sidecar.mjs";
import { loadConnector, telephonyEvents, waitFor } from "./voice_client.mjs";

const TOKEN = "agent-token-0123456789";
const CALL = "6f1c2e9a-0000-4000-8000-000000000001";
const LEG = "6f1c2e9a-0000-4000-8000-000000000002";
const OUT = "6f1c2e9a-0000-4000-8000-000000000003";
const RECORD = "003xx000004TmiQAAS";

const sidecar = await startFakeSidecar({ token: TOKEN });
const client = loadConnector({ sidecarPort: sidecar.port });
after(async () => {
  client.close();
  await sidecar.close();
});

const events = () => telephonyEvents(client.received);
const eventsOf = (type) => events().filter((e) => e.type === type);
const commandsOf = (type) => sidecar.commands.filter((c) => c.type === type);
async function nextEvent(type, count) {
  return waitFor(`${type} #${count}`, () => eventsOf(type)[count - 1]);
}
function callFrame(fields) {
  sidecar.send({ type: "call", org: "acme", muted: false, at_ms: Date.now(), ...fields });
}

test("setup asks for the login frame, a wrong token is refused, the right one makes the connector ready", async () => {
  client.setup();
  await nextEvent("SHOW_LOGIN", 1);
  await client.signIn("wrong-token");
  const refused = await nextEvent("LOGIN_RESULT", 1);
  assert.equal(refused.payload.success, false);
  await client.signIn(TOKEN);
  const accepted = await nextEvent("LOGIN_RESULT", 2);
  assert.equal(accepted.payload.success, true);
  const ready = await waitFor("CONNECTOR_READY", () => client.received.find((m) => m.type === "CONNECTOR_READY"));
  assert.deepEqual(
    { ...ready.payload.capabilities },
    {
      ...ready.payload.capabilities,
      MUTE: true,
      RECORD: false,
      MERGE: true,
      SWAP: false,
      BLIND_TRANSFER: true,
    },
  );
  assert.equal(ready.payload.agentConfig.SELECTED_PHONE.type, "DESK_PHONE");
  assert.equal(ready.payload.agentConfig.SELECTED_PHONE.number, "1001");
  assert.equal(ready.payload.callInProgress, null);
  assert.equal(client.elements.token.value, "", "the token does not stay in the form");
});

test("agent status sets the sidecar's presence", async () => {
  client.send({ type: "SET_AGENT_STATUS", agentStatus: "Online", statusInfo: { statusId: "0N5xx0000000001", statusApiName: "Available_for_Voice" } });
  const result = await nextEvent("SET_AGENT_STATUS_RESULT", 1);
  assert.equal(result.payload.success, true);
  assert.deepEqual(commandsOf("set_presence").map((c) => c.state), ["Available"]);

  client.send({ type: "SET_AGENT_STATUS", agentStatus: "Offline", statusInfo: { statusId: "0N5xx0000000002" } });
  await nextEvent("SET_AGENT_STATUS_RESULT", 2);
  assert.deepEqual(commandsOf("set_presence").map((c) => c.state), ["Available", "Offline"]);
});

test("an inbound call rings with the caller's record, is accepted, held, resumed, muted, conferenced and ended", async () => {
  callFrame({ call_uuid: CALL, state: "ringing", direction: "inbound", other_party: "+14155550100", record_id: RECORD });
  const started = await nextEvent("CALL_STARTED", 1);
  assert.equal(started.payload.callId, CALL);
  assert.equal(started.payload.callType, "Inbound");
  assert.equal(started.payload.phoneNumber, "+14155550100");
  assert.equal(started.payload.contact.recordId, RECORD);
  assert.equal(started.payload.state, "ringing");

  // Accepting waits for the agent's phone to be answered on the switch.
  client.send({ type: "ACCEPT_CALL", call: { callId: CALL, callType: "Inbound" } });
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(eventsOf("CALL_CONNECTED").length, 0, "not connected before the switch says so");
  callFrame({ call_uuid: CALL, state: "answered", direction: "inbound", other_party: "+14155550100", record_id: RECORD });
  const connected = await nextEvent("CALL_CONNECTED", 1);
  assert.equal(connected.payload.callId, CALL);
  assert.equal(connected.payload.state, "connected");

  client.send({ type: "HOLD", call: { callId: CALL } });
  const held = await nextEvent("HOLD_TOGGLE", 1);
  assert.equal(held.payload.isCustomerOnHold, true);
  assert.deepEqual(commandsOf("hold").map((c) => c.call_uuid), [CALL]);
  callFrame({ call_uuid: CALL, state: "held", direction: "inbound", other_party: "+14155550100" });

  client.send({ type: "RESUME", call: { callId: CALL } });
  const resumed = await nextEvent("HOLD_TOGGLE", 2);
  assert.equal(resumed.payload.isCustomerOnHold, false);
  assert.deepEqual(commandsOf("resume").map((c) => c.call_uuid), [CALL]);
  callFrame({ call_uuid: CALL, state: "answered", direction: "inbound", other_party: "+14155550100" });

  client.send({ type: "MUTE" });
  assert.equal((await nextEvent("MUTE_TOGGLE", 1)).payload.isMuted, true);
  callFrame({ call_uuid: CALL, state: "answered", direction: "inbound", other_party: "+14155550100", muted: true });
  client.send({ type: "UNMUTE" });
  assert.equal((await nextEvent("MUTE_TOGGLE", 2)).payload.isMuted, false);
  assert.deepEqual(commandsOf("mute").map((c) => c.call_uuid), [CALL]);
  assert.deepEqual(commandsOf("unmute").map((c) => c.call_uuid), [CALL]);

  sidecar.answer = (command) => (command.type === "conference" ? { ok: true, call_uuid: LEG } : { ok: true });
  client.send({ type: "ADD_PARTICIPANT", contact: { phoneNumber: "+442071234567" }, call: { callId: CALL }, isBlindTransfer: false });
  const added = await nextEvent("PARTICIPANT_ADDED", 1);
  assert.equal(added.payload.callId, LEG);
  assert.equal(added.payload.phoneNumber, "+442071234567");
  assert.deepEqual(commandsOf("conference").map((c) => [c.call_uuid, c.to]), [[CALL, "+442071234567"]]);
  callFrame({ call_uuid: LEG, state: "answered", direction: "outbound", other_party: "+442071234567" });
  const joined = await nextEvent("PARTICIPANT_CONNECTED", 1);
  assert.equal(joined.payload.callId, LEG);
  client.send({ type: "CONFERENCE", calls: [{ callId: CALL }, { callId: LEG }] });
  const merged = await nextEvent("HOLD_TOGGLE", 3);
  assert.equal(merged.payload.isCustomerOnHold, false);
  assert.equal(merged.payload.isThirdPartyOnHold, false);

  client.send({ type: "END_CALL", call: { callId: CALL } });
  const hangup = await nextEvent("HANGUP", 1);
  assert.equal(hangup.payload[0].callId, CALL);
  assert.deepEqual(commandsOf("hangup").map((c) => c.call_uuid), [CALL]);
  callFrame({ call_uuid: CALL, state: "ended", cause: "NORMAL_CLEARING", direction: "inbound", other_party: "+14155550100" });

  client.send({ type: "WRAP_UP_CALL", call: { callId: CALL } });
  await nextEvent("WRAP_UP_ENDED", 1);
  assert.deepEqual(commandsOf("wrap_up").map((c) => [c.call_uuid, typeof c.disposition]), [[CALL, "string"]]);

  // The switch's frames that the voice client's own commands caused were not published again.
  assert.equal(eventsOf("CALL_CONNECTED").length, 1);
  assert.equal(eventsOf("HOLD_TOGGLE").length, 3);
  assert.equal(eventsOf("MUTE_TOGGLE").length, 2);
  assert.equal(eventsOf("HANGUP").length, 1);
});

test("click-to-dial starts an outbound call that connects and is blind-transferred", async () => {
  sidecar.answer = (command) => (command.type === "dial" ? { ok: true, call_uuid: OUT } : { ok: true });
  client.send({ type: "DIAL", contact: { phoneNumber: "+14155550199", recordId: RECORD } });
  const started = await nextEvent("CALL_STARTED", 2);
  assert.equal(started.payload.callId, OUT);
  assert.equal(started.payload.callType, "Outbound");
  assert.deepEqual(commandsOf("dial").map((c) => [c.number, c.record_id]), [["+14155550199", RECORD]]);
  callFrame({ call_uuid: OUT, state: "ringing", direction: "outbound", other_party: "+14155550199" });
  callFrame({ call_uuid: OUT, state: "answered", direction: "outbound", other_party: "+14155550199" });
  const connected = await nextEvent("CALL_CONNECTED", 2);
  assert.equal(connected.payload.callId, OUT);
  assert.equal(eventsOf("CALL_STARTED").length, 2, "the ringing frame of our own dial is not a second start");

  client.send({ type: "ADD_PARTICIPANT", contact: { phoneNumber: "2002", type: "PhoneNumber" }, call: { callId: OUT }, isBlindTransfer: true });
  await nextEvent("HANGUP", 2);
  assert.deepEqual(commandsOf("transfer").map((c) => [c.call_uuid, c.to, c.mode]), [[OUT, "2002", "blind"]]);
  callFrame({ call_uuid: OUT, state: "transferred", transferred_to: "2002", direction: "outbound", other_party: "+14155550199" });
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(eventsOf("HANGUP").length, 2, "the transferred frame is not a second hangup");
});

test("a caller who hangs up while ringing ends the call in Salesforce with the cause", async () => {
  const uuid = "6f1c2e9a-0000-4000-8000-000000000004";
  callFrame({ call_uuid: uuid, state: "ringing", direction: "inbound", other_party: "+14155550111" });
  await nextEvent("CALL_STARTED", 3);
  callFrame({ call_uuid: uuid, state: "ended", cause: "ORIGINATOR_CANCEL", direction: "inbound", other_party: "+14155550111" });
  const hangup = await nextEvent("HANGUP", 3);
  assert.equal(hangup.payload[0].callId, uuid);
  assert.equal(hangup.payload[0].reason, "ORIGINATOR_CANCEL");
});

test("after the sidecar drops the connection the connector signs in again and calls still ring", async () => {
  const before = sidecar.connections;
  sidecar.dropAll();
  await waitFor("a new connection", () => sidecar.connections === before + 1, 5000);
  const uuid = "6f1c2e9a-0000-4000-8000-000000000005";
  await waitFor("the ringing call after reconnecting", () => {
    callFrame({ call_uuid: uuid, state: "ringing", direction: "inbound", other_party: "+14155550122" });
    return eventsOf("CALL_STARTED").find((e) => e.payload.callId === uuid);
  });
  assert.equal(eventsOf("CALL_STARTED").filter((e) => e.payload.callId === uuid).length, 1);
  assert.equal(eventsOf("LOGOUT_RESULT").length, 0, "the agent was not signed out");
  callFrame({ call_uuid: uuid, state: "ended", cause: "ORIGINATOR_CANCEL", direction: "inbound", other_party: "+14155550122" });
  await waitFor("its hangup", () => eventsOf("HANGUP").find((e) => [].concat(e.payload)[0].callId === uuid));
});

test("the sidecar's refusals reach Salesforce as the library's errors", async () => {
  const errorsBefore = eventsOf("ERROR").length;
  sidecar.answer = () => ({ ok: false, error: { code: 400, reason: "bad_request", message: "number: not a phone number" } });
  client.send({ type: "DIAL", contact: { phoneNumber: "sofia/gateway/x" } });
  await nextEvent("CALL_FAILED", 1);
  const invalid = await nextEvent("ERROR", errorsBefore + 1);
  assert.equal(invalid.payload.message, "INVALID_DESTINATION");

  sidecar.answer = () => ({ ok: false, error: { code: 404, reason: "no_such_call", message: "no live call" } });
  client.send({ type: "HOLD", call: { callId: CALL } });
  const hold = await nextEvent("ERROR", errorsBefore + 2);
  assert.equal(hold.payload.message, "CAN_NOT_HOLD_CALL");

  client.send({ type: "SET_AGENT_STATUS", agentStatus: "SomethingElse", statusInfo: { statusId: "0N5xx0000000003" } });
  const status = await nextEvent("ERROR", errorsBefore + 3);
  assert.equal(status.payload.message, "INVALID_AGENT_STATUS");
});

test("a state the switch reports ahead of the command's result is published once (hold, resume, mute, unmute)", async () => {
  const call = "6f1c2e9a-0000-4000-8000-000000000004";
  const frame = (fields) => ({ type: "call", org: "acme", call_uuid: call, direction: "inbound", other_party: "+14155550100", muted: false, at_ms: Date.now(), ...fields });
  const holds = eventsOf("HOLD_TOGGLE").length;
  const mutes = eventsOf("MUTE_TOGGLE").length;
  const connects = eventsOf("CALL_CONNECTED").length;
  sidecar.send(frame({ state: "ringing" }));
  sidecar.send(frame({ state: "answered" }));
  await nextEvent("CALL_CONNECTED", connects + 1);
  const ahead = {
    hold: { state: "held" },
    resume: { state: "answered" },
    mute: { state: "answered", muted: true },
    unmute: { state: "answered", muted: false },
  };
  sidecar.answer = (command) => ({ ok: true, framesFirst: ahead[command.type] ? [frame(ahead[command.type])] : [] });
  try {
    client.send({ type: "HOLD", call: { callId: call } });
    assert.equal((await nextEvent("HOLD_TOGGLE", holds + 1)).payload.isCustomerOnHold, true);
    client.send({ type: "RESUME", call: { callId: call } });
    assert.equal((await nextEvent("HOLD_TOGGLE", holds + 2)).payload.isCustomerOnHold, false);
    client.send({ type: "MUTE" });
    assert.equal((await nextEvent("MUTE_TOGGLE", mutes + 1)).payload.isMuted, true);
    client.send({ type: "UNMUTE" });
    assert.equal((await nextEvent("MUTE_TOGGLE", mutes + 2)).payload.isMuted, false);
    client.send({ type: "END_CALL", call: { callId: call } });
    await waitFor("the hangup", () => events().some((e) => e.type === "HANGUP" && e.payload[0] && e.payload[0].callId === call));
    // Each frame was handled before its result: no event of them can still be on its way.
    assert.equal(eventsOf("HOLD_TOGGLE").length, holds + 2);
    assert.equal(eventsOf("MUTE_TOGGLE").length, mutes + 2);
  } finally {
    sidecar.answer = () => ({ ok: true });
  }
});

test("a call Omni-Channel routed to the agent is accepted through the sidecar, which bridges it to the agent's phone", async () => {
  const ROUTED = "6f1c2e9a-0000-4000-8000-000000000009";
  const startedBefore = eventsOf("CALL_STARTED").length;
  const connectedBefore = eventsOf("CALL_CONNECTED").length;
  const infosBefore = eventsOf("INFO").length;
  // Refused: Salesforce did not offer this agent the call.
  sidecar.answer = (command) => command.type === "accept_routed"
    ? { ok: false, error: { code: 403, reason: "not_your_call", message: "not one of your calls" } }
    : { ok: true };
  client.send({ type: "ACCEPT_CALL", call: { callId: ROUTED, callType: "Inbound" } });
  const refused = await nextEvent("INFO", infosBefore + 1);
  assert.equal(refused.payload.message, "CAN_NOT_ACCEPT_THE_CALL");
  assert.deepEqual(commandsOf("accept_routed").map((c) => c.call_uuid), [ROUTED]);

  // Accepted: the sidecar bridges the parked call to the agent's phone, which rings and is answered.
  sidecar.answer = (command) => command.type === "accept_routed"
    ? { ok: true, framesFirst: [{ type: "call", org: "acme", muted: false, at_ms: Date.now(), call_uuid: ROUTED, state: "ringing", direction: "inbound", other_party: "+14155550100" }] }
    : { ok: true };
  client.send({ type: "ACCEPT_CALL", call: { callId: ROUTED, callType: "Inbound" } });
  await waitFor("the second accept_routed", () => commandsOf("accept_routed")[1]);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(eventsOf("CALL_CONNECTED").length, connectedBefore, "not connected before the phone is answered");
  callFrame({ call_uuid: ROUTED, state: "answered", direction: "inbound", other_party: "+14155550100" });
  const connected = await nextEvent("CALL_CONNECTED", connectedBefore + 1);
  assert.equal(connected.payload.callId, ROUTED);
  assert.equal(eventsOf("CALL_STARTED").length, startedBefore, "Salesforce already had the call: no CALL_STARTED");
  // Ends as any call does.
  callFrame({ call_uuid: ROUTED, state: "ended", direction: "inbound", other_party: "+14155550100", cause: "NORMAL_CLEARING" });
  sidecar.answer = () => ({ ok: true });
});
