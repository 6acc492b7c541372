// The Service Cloud Voice vendor connector: scv-connector-base's VendorConnector contract mapped
// onto the sidecar's agent protocol v1 (docs/service-cloud-voice.md has the table).
import base from "@salesforce/scv-connector-base";
import { AgentSocket, AgentProtocolError } from "./agent_socket.js";

const {
  Constants,
  VendorConnector,
  publishEvent,
  InitResult,
  CapabilitiesResult,
  AgentConfigResult,
  ActiveCallsResult,
  GenericResult,
  LogoutResult,
  CallResult,
  HangupResult,
  HoldToggleResult,
  MuteToggleResult,
  ParticipantResult,
  AgentVendorStatusInfo,
  PhoneCall,
  PhoneCallAttributes,
  CallInfo,
  Contact,
  Phone,
} = base;

// How long acceptCall waits for the agent's phone to be picked up: the audio is on the agent's
// SIP phone (protocol v1 has no "answer" command), so accepting means the switch reports `answered`.
const ACCEPT_WAIT_MS = 30000;
// Signing in again after the sidecar connection drops: 0.5, 1, 2, 4, 8 s apart (about 15 s).
const RECONNECT_ATTEMPTS = 5;
const RECONNECT_FIRST_MS = 500;
// Put on the call's Task by wrapUpCall: the voice client's wrap-up carries no disposition.
export const WRAP_UP_DISPOSITION = "Service Cloud Voice wrap-up";

const CALL_TYPE_BY_DIRECTION = {
  inbound: Constants.CALL_TYPE.INBOUND,
  outbound: Constants.CALL_TYPE.OUTBOUND,
  internal: Constants.CALL_TYPE.INTERNAL_CALL,
};

// Salesforce's agent status (the library's AGENT_STATUS values or an Omni-Channel status name)
// to the sidecar's presence.
export function presenceFor(agentStatus, statusInfo) {
  const names = [agentStatus, statusInfo && statusInfo.statusApiName, statusInfo && statusInfo.statusName];
  for (const name of names) {
    if (typeof name !== "string") continue;
    const key = name.toLowerCase();
    if (key === Constants.AGENT_STATUS.ONLINE.toLowerCase() || key === "available") return "Available";
    if (key === Constants.AGENT_STATUS.OFFLINE.toLowerCase()) return "Offline";
    if (key === Constants.AGENT_STATUS.ACW.toLowerCase() || key === "busy") return "Busy";
    if (key === "away" || key === "break") return "Away";
  }
  return null;
}

function errorOf(type, cause) {
  const error = new Error(cause && cause.message ? cause.message : type);
  error.type = type;
  return error;
}

export class NatterboxConnector extends VendorConnector {
  // `sidecarUrl`: the agent WebSocket (wss://host/agent). `WebSocketImpl` for tests outside a browser.
  constructor({ sidecarUrl, WebSocketImpl } = {}) {
    super();
    this.sidecarUrl = sidecarUrl;
    this.WebSocketImpl = WebSocketImpl;
    this.socket = null;
    this.agent = null;
    this.presence = "Offline";
    // call_uuid → { frame, reported } where `reported` is what Salesforce has already been told
    // (so a state the voice client caused through a command is not published twice).
    this.calls = new Map();
    this.waiters = [];
    this.conferenceLegs = new Map();
    // Calls a command of the voice client ends (hangup, blind transfer): the library publishes
    // their HANGUP, so their final frame must not.
    this.closing = new Set();
    // Calls Omni-Channel routed to this agent, being accepted: the switch sends them to the
    // agent's phone only now, and Salesforce already has them (no CALL_STARTED for their ringing).
    this.routed = new Set();
  }

  // ---- contract: setup ----
  async init() {
    // The agent signs in with their agent token in the connector's login frame (never stored).
    return new InitResult({ showLogin: true, loginFrameHeight: 180 });
  }

  // Called by the login frame; publishes LOGIN_RESULT, which makes the library announce the
  // connector ready (capabilities, agent config, the call in progress).
  async login(token) {
    if (this.socket) this.socket.close();
    this.socket = null;
    this.loggedOut = false;
    const connected = await this.connect(token);
    publishEvent({ eventType: Constants.EVENT_TYPE.LOGIN_RESULT, payload: new GenericResult({ success: connected }) });
    return connected;
  }

  async connect(token) {
    const socket = new AgentSocket({
      url: this.sidecarUrl,
      token,
      WebSocketImpl: this.WebSocketImpl,
      onFrame: (frame) => this.onFrame(frame),
      onClose: () => this.onDisconnected(token),
    });
    try {
      const hello = await socket.open();
      this.socket = socket;
      this.agent = { userId: hello.user_id, extension: hello.extension };
      return true;
    } catch {
      return false;
    }
  }

  // The sidecar went away (restart, network): sign in again with the token still in memory, a few
  // times with back-off; after that the agent is signed out and signs in by hand. The sidecar
  // replays presence and the live calls after `hello`, so known calls are not published twice.
  async onDisconnected(token) {
    this.socket = null;
    for (let attempt = 0; attempt < RECONNECT_ATTEMPTS; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, RECONNECT_FIRST_MS * 2 ** attempt));
      if (this.loggedOut || this.socket) return;
      if (await this.connect(token)) return;
    }
    publishEvent({
      eventType: Constants.EVENT_TYPE.LOGOUT_RESULT,
      payload: new LogoutResult({ success: true, loginFrameHeight: 180 }),
    });
  }

  async getCapabilities() {
    return new CapabilitiesResult({
      hasMute: true,
      hasRecord: false,
      hasMerge: true,
      hasSwap: false,
      hasBlindTransfer: true,
      debugEnabled: false,
    });
  }

  async getAgentConfig() {
    const number = this.agent && this.agent.extension ? String(this.agent.extension) : undefined;
    return new AgentConfigResult({
      phones: [Constants.PHONE_TYPE.DESK_PHONE],
      selectedPhone: new Phone({ type: Constants.PHONE_TYPE.DESK_PHONE, number }),
    });
  }

  async setAgentConfig() {
    return new GenericResult({ success: true });
  }

  async getActiveCalls() {
    const activeCalls = [];
    for (const entry of this.calls.values()) {
      if (!isFinal(entry.frame.state)) activeCalls.push(this.phoneCall(entry.frame));
    }
    return new ActiveCallsResult({ activeCalls });
  }

  async logout() {
    this.loggedOut = true;
    if (this.socket) this.socket.close();
    this.socket = null;
    this.calls.clear();
    return new LogoutResult({ success: true, loginFrameHeight: 180 });
  }

  // ---- contract: agent status ↔ presence ----
  async setAgentStatus(agentStatus, statusInfo) {
    const state = presenceFor(agentStatus, statusInfo);
    if (!state) throw errorOf(Constants.ERROR_TYPE.INVALID_AGENT_STATUS);
    await this.command("set_presence", { state }, Constants.ERROR_TYPE.CAN_NOT_SET_AGENT_STATUS);
    this.presence = state;
    return new GenericResult({ success: true });
  }

  async getAgentStatus() {
    return new AgentVendorStatusInfo({ statusType: this.presence, statusName: this.presence });
  }

  // ---- contract: calls ----
  async acceptCall(call) {
    const uuid = callIdOf(call);
    const entry = this.calls.get(uuid);
    if (!entry) return this.acceptRoutedCall(uuid);
    // The library publishes CALL_CONNECTED from this answer, so the frame must not as well.
    entry.accepting = true;
    let frame;
    try {
      frame = entry.frame.state === "answered" ? entry.frame : await this.waitFor(uuid, ["answered"], ACCEPT_WAIT_MS);
    } finally {
      entry.accepting = false;
    }
    if (frame.state !== "answered") throw errorOf(Constants.ERROR_TYPE.GENERIC_ERROR, { message: `the call ${frame.state}` });
    entry.reported = "answered";
    return new CallResult({ call: this.phoneCall(frame) });
  }

  // A call Omni-Channel offered this agent: it waits on the switch (not at the agent's phone)
  // until the sidecar has checked with Salesforce that the work is this agent's; then it rings
  // the agent's phone, and accepting means the phone is picked up.
  async acceptRoutedCall(uuid) {
    if (typeof uuid !== "string" || !uuid) throw errorOf(Constants.ERROR_TYPE.INVALID_PARTICIPANT);
    this.routed.add(uuid);
    try {
      const answered = this.waitFor(uuid, ["answered"], ACCEPT_WAIT_MS);
      answered.catch(() => {});
      await this.command("accept_routed", { call_uuid: uuid }, Constants.ERROR_TYPE.GENERIC_ERROR);
      const frame = await answered;
      if (frame.state !== "answered") throw errorOf(Constants.ERROR_TYPE.GENERIC_ERROR, { message: `the call ${frame.state}` });
      const entry = this.calls.get(uuid);
      if (entry) {
        entry.accepting = false;
        entry.reported = "answered";
      }
      return new CallResult({ call: this.phoneCall(frame) });
    } finally {
      this.routed.delete(uuid);
    }
  }

  async declineCall(call) {
    const uuid = callIdOf(call);
    await this.closingCommand(uuid, "hangup", { call_uuid: uuid }, Constants.ERROR_TYPE.CAN_NOT_DECLINE_THE_CALL);
    return new CallResult({ call: this.endCallLocally(uuid) });
  }

  async endCall(call) {
    const uuid = callIdOf(call) || this.currentCallId();
    await this.closingCommand(uuid, "hangup", { call_uuid: uuid }, Constants.ERROR_TYPE.CAN_NOT_END_THE_CALL);
    return new HangupResult({ calls: [this.endCallLocally(uuid)] });
  }

  async hold(call) {
    return this.toggleHold(call, "hold", "held", Constants.ERROR_TYPE.CAN_NOT_HOLD_CALL);
  }

  async resume(call) {
    return this.toggleHold(call, "resume", "answered", Constants.ERROR_TYPE.CAN_NOT_RESUME_CALL);
  }

  async toggleHold(call, command, state, errorType) {
    const uuid = callIdOf(call) || this.currentCallId();
    // The sidecar may send the call's new state before the command's result: the library
    // publishes HOLD_TOGGLE from this answer, so that frame must not as well.
    const before = this.calls.get(uuid);
    if (before) before.causing = state;
    try {
      await this.command(command, { call_uuid: uuid }, errorType);
    } finally {
      if (before) before.causing = undefined;
    }
    const entry = this.calls.get(uuid);
    if (entry) {
      entry.frame = { ...entry.frame, state };
      entry.reported = state;
    }
    const phoneCall = entry ? this.phoneCall(entry.frame) : new PhoneCall({ callId: uuid, state });
    return new HoldToggleResult({
      isCustomerOnHold: state === "held",
      isThirdPartyOnHold: false,
      calls: { [uuid]: phoneCall },
    });
  }

  async mute() {
    return this.toggleMute("mute", true, Constants.ERROR_TYPE.CAN_NOT_MUTE_CALL);
  }

  async unmute() {
    return this.toggleMute("unmute", false, Constants.ERROR_TYPE.CAN_NOT_UNMUTE_CALL);
  }

  async toggleMute(command, isMuted, errorType) {
    const uuid = this.currentCallId();
    if (!uuid) throw errorOf(errorType);
    // As with hold: a `muted` frame ahead of the result is the library's to publish, not ours.
    const before = this.calls.get(uuid);
    before.causingMuted = isMuted;
    try {
      await this.command(command, { call_uuid: uuid }, errorType);
    } finally {
      before.causingMuted = undefined;
    }
    const entry = this.calls.get(uuid);
    entry.frame = { ...entry.frame, muted: isMuted };
    entry.reportedMuted = isMuted;
    return new MuteToggleResult({ isMuted });
  }

  async dial(contact) {
    const number = contact.phoneNumber || contact.extension;
    if (!number) throw errorOf(Constants.ERROR_TYPE.INVALID_DESTINATION);
    const fields = { number };
    if (isSalesforceId(contact.recordId)) fields.record_id = contact.recordId;
    const result = await this.command("dial", fields, Constants.ERROR_TYPE.CAN_NOT_START_THE_CALL);
    const frame = { call_uuid: result.call_uuid, state: "ringing", direction: "outbound", other_party: number, muted: false };
    const known = this.calls.get(result.call_uuid);
    this.calls.set(result.call_uuid, { frame: known ? known.frame : frame, reported: "ringing" });
    return new CallResult({ call: this.phoneCall(known ? known.frame : frame) });
  }

  async sendDigits() {
    // Protocol v1 carries no DTMF; the agent's phone sends digits itself.
    throw errorOf(Constants.ERROR_TYPE.GENERIC_ERROR);
  }

  async getPhoneContacts() {
    return new base.PhoneContactsResult({ contacts: [] });
  }

  // Blind: the customer goes to `contact` at once and the agent's part ends (the library then
  // publishes HANGUP). Otherwise a three-way call: `contact` is dialled and joins.
  async addParticipant(contact, call, isBlindTransfer) {
    const uuid = callIdOf(call) || this.currentCallId();
    const to = contact.phoneNumber || contact.extension;
    if (!to) throw errorOf(Constants.ERROR_TYPE.INVALID_DESTINATION);
    if (isBlindTransfer) {
      await this.closingCommand(uuid, "transfer", { call_uuid: uuid, to, mode: "blind" }, Constants.ERROR_TYPE.CAN_NOT_ADD_PARTICIPANT);
      this.endCallLocally(uuid, "transferred");
      return new ParticipantResult({
        initialCallHasEnded: true,
        callInfo: new CallInfo({ isOnHold: false }),
        phoneNumber: to,
        callId: uuid,
      });
    }
    const result = await this.command("conference", { call_uuid: uuid, to }, Constants.ERROR_TYPE.CAN_NOT_ADD_PARTICIPANT);
    const leg = result.call_uuid || uuid;
    this.conferenceLegs.set(leg, { parent: uuid, to });
    return new ParticipantResult({
      initialCallHasEnded: false,
      callInfo: new CallInfo({ isOnHold: false }),
      phoneNumber: to,
      callId: leg,
    });
  }

  // The added participant already hears both sides (protocol `conference`), so merging confirms
  // the three-way call; without an added participant there is nothing to merge.
  async conference(calls) {
    const ids = (Array.isArray(calls) ? calls : Object.values(calls || {})).map(callIdOf);
    const merged = [...this.conferenceLegs.entries()].some(([leg, { parent }]) => ids.includes(leg) || ids.includes(parent));
    if (!merged) throw errorOf(Constants.ERROR_TYPE.CAN_NOT_CONFERENCE);
    return new HoldToggleResult({ isCustomerOnHold: false, isThirdPartyOnHold: false });
  }

  async swap() {
    throw errorOf(Constants.ERROR_TYPE.CAN_NOT_SWAP_PARTICIPANTS);
  }

  async wrapUpCall(call) {
    const uuid = callIdOf(call);
    if (!uuid) return;
    try {
      await this.command("wrap_up", { call_uuid: uuid, disposition: WRAP_UP_DISPOSITION }, Constants.ERROR_TYPE.GENERIC_ERROR);
      publishEvent({ eventType: Constants.EVENT_TYPE.WRAP_UP_ENDED, payload: {} });
    } catch (error) {
      base.publishLog({ eventType: "WRAP_UP_CALL", payload: { call_uuid: uuid, reason: error.message }, isError: true });
    }
  }

  handleMessage() {}

  // ---- the sidecar's frames → the library's events ----
  onFrame(frame) {
    if (frame.type === "presence") {
      this.presence = frame.state;
      return;
    }
    if (frame.type !== "call" || typeof frame.call_uuid !== "string") return;
    const leg = this.conferenceLegs.get(frame.call_uuid);
    if (leg) {
      this.onConferenceLeg(frame, leg);
      return;
    }
    if (this.closing.has(frame.call_uuid)) {
      if (isFinal(frame.state)) {
        this.closing.delete(frame.call_uuid);
        this.calls.delete(frame.call_uuid);
      }
      return;
    }
    let entry = this.calls.get(frame.call_uuid);
    if (!entry) {
      entry = { frame, reported: null, reportedMuted: false };
      // A routed call being accepted: its ringing is no new call, its answer is acceptCall's.
      if (this.routed.has(frame.call_uuid)) Object.assign(entry, { reported: "ringing", accepting: true });
      this.calls.set(frame.call_uuid, entry);
    }
    entry.frame = frame;
    this.wake(frame);
    const call = this.phoneCall(frame);
    const E = Constants.EVENT_TYPE;
    if (frame.state !== entry.reported && frame.state === entry.causing) {
      entry.reported = frame.state;
    } else if (frame.state !== entry.reported) {
      const before = entry.reported;
      entry.reported = frame.state;
      if (frame.state === "ringing") {
        publishEvent({ eventType: E.CALL_STARTED, payload: new CallResult({ call }) });
      } else if (frame.state === "answered" && before === "held") {
        publishEvent({ eventType: E.HOLD_TOGGLE, payload: holdResult(frame.call_uuid, call, false) });
      } else if (frame.state === "answered" && !entry.accepting) {
        publishEvent({ eventType: E.CALL_CONNECTED, payload: new CallResult({ call }) });
      } else if (frame.state === "held") {
        publishEvent({ eventType: E.HOLD_TOGGLE, payload: holdResult(frame.call_uuid, call, true) });
      } else if (isFinal(frame.state)) {
        publishEvent({ eventType: E.HANGUP, payload: new HangupResult({ calls: [call] }) });
      }
    }
    if (!isFinal(frame.state) && entry.causingMuted === Boolean(frame.muted)) {
      entry.reportedMuted = entry.causingMuted;
    } else if (!isFinal(frame.state) && Boolean(frame.muted) !== Boolean(entry.reportedMuted)) {
      entry.reportedMuted = Boolean(frame.muted);
      publishEvent({ eventType: E.MUTE_TOGGLE, payload: new MuteToggleResult({ isMuted: entry.reportedMuted }) });
    }
    if (isFinal(frame.state)) this.calls.delete(frame.call_uuid);
  }

  onConferenceLeg(frame, leg) {
    if (frame.state === "answered" && !leg.connected) {
      leg.connected = true;
      publishEvent({
        eventType: Constants.EVENT_TYPE.PARTICIPANT_CONNECTED,
        payload: new ParticipantResult({
          initialCallHasEnded: false,
          callInfo: new CallInfo({ isOnHold: false }),
          phoneNumber: leg.to,
          callId: frame.call_uuid,
        }),
      });
    } else if (isFinal(frame.state)) {
      this.conferenceLegs.delete(frame.call_uuid);
      publishEvent({
        eventType: Constants.EVENT_TYPE.PARTICIPANT_REMOVED,
        payload: new CallResult({ call: this.phoneCall(frame, Constants.PARTICIPANT_TYPE.THIRD_PARTY) }),
      });
    }
  }

  // ---- helpers ----
  phoneCall(frame, participantType = Constants.PARTICIPANT_TYPE.INITIAL_CALLER) {
    const number = typeof frame.other_party === "string" && frame.other_party ? frame.other_party : undefined;
    const recordId = isSalesforceId(frame.record_id) ? frame.record_id : undefined;
    const state = frame.state === "answered" || frame.state === "held" ? Constants.CALL_STATE.CONNECTED : frame.state;
    return new PhoneCall({
      callId: frame.call_uuid,
      callType: CALL_TYPE_BY_DIRECTION[frame.direction] || Constants.CALL_TYPE.INBOUND,
      phoneNumber: number,
      contact: new Contact({ phoneNumber: number, recordId }),
      state,
      reason: frame.cause,
      callAttributes: new PhoneCallAttributes({ participantType, isOnHold: frame.state === "held" }),
      callInfo: new CallInfo({ isOnHold: frame.state === "held", isMuted: Boolean(frame.muted) }),
    });
  }

  currentCallId() {
    for (const [uuid, entry] of this.calls) {
      if (entry.frame.state === "answered" || entry.frame.state === "held") return uuid;
    }
    return undefined;
  }

  endCallLocally(uuid, state = "ended") {
    const entry = this.calls.get(uuid);
    const frame = entry ? { ...entry.frame, state } : { call_uuid: uuid, state };
    this.calls.delete(uuid);
    return this.phoneCall(frame);
  }

  waitFor(uuid, states, timeoutMs) {
    return new Promise((resolve, reject) => {
      const waiter = { uuid, states: [...states, "ended", "transferred"], resolve };
      waiter.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(errorOf(Constants.ERROR_TYPE.GENERIC_ERROR, { message: "the phone was not answered" }));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  wake(frame) {
    this.waiters = this.waiters.filter((waiter) => {
      if (waiter.uuid !== frame.call_uuid || !waiter.states.includes(frame.state)) return true;
      clearTimeout(waiter.timer);
      waiter.resolve(frame);
      return false;
    });
  }

  async closingCommand(uuid, type, fields, errorType) {
    if (this.closing.size > 1000) this.closing.clear();
    this.closing.add(uuid);
    try {
      return await this.command(type, fields, errorType);
    } catch (error) {
      this.closing.delete(uuid);
      throw error;
    }
  }

  async command(type, fields, errorType) {
    if (!this.socket) throw errorOf(errorType, { message: "not signed in to the sidecar" });
    try {
      return await this.socket.command(type, fields);
    } catch (error) {
      if (error instanceof AgentProtocolError && error.code === 400 && (type === "dial" || type === "transfer" || type === "conference")) {
        throw errorOf(Constants.ERROR_TYPE.INVALID_DESTINATION, error);
      }
      throw errorOf(errorType, error);
    }
  }
}

function holdResult(uuid, call, onHold) {
  return new HoldToggleResult({ isCustomerOnHold: onHold, isThirdPartyOnHold: false, calls: { [uuid]: call } });
}

function isFinal(state) {
  return state === "ended" || state === "transferred";
}

function callIdOf(call) {
  return call && typeof call.callId === "string" ? call.callId : undefined;
}

function isSalesforceId(value) {
  return typeof value === "string" && /^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$/.test(value);
}
