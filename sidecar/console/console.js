// The agent's softphone console: screen pops, click-to-dial, call control, presence and wrap-up
// over the sidecar's /agent WebSocket (protocol v1: docs/agent-protocol.md).
// The token lives only in this page's memory: never in the URL, never in storage.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const SUBPROTOCOL = "natterbox.agent.v1";
  const TOKEN_PREFIX = "natterbox.token.";
  const RECORD_ID = /^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$/;
  const OBJECT_TYPE = /^[A-Za-z][A-Za-z0-9_]{0,79}$/;
  const REPLY_WAIT_MS = 5000;

  const state = {
    token: null,
    socket: null,
    retryMs: 500,
    retryTimer: null,
    agent: null,
    call: null, // { call_uuid, caller_number, record_ids, record, held, muted, ended }
    wrapUpFor: null,
    history: [],
    nextRequest: 1,
    pending: new Map(),
  };
  const popListeners = [];
  const connectedListeners = [];

  function showConnection(text, s) {
    const el = $("connection");
    el.textContent = text;
    el.dataset.state = s;
  }

  function showMessage(text) {
    const el = $("message");
    el.textContent = text;
    el.hidden = !text;
  }

  function socketUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + location.host + "/agent";
  }

  function connect() {
    clearTimeout(state.retryTimer);
    if (!state.token) return;
    let socket;
    try {
      socket = new WebSocket(socketUrl(), [SUBPROTOCOL, TOKEN_PREFIX + state.token]);
    } catch (e) {
      showMessage("Cannot open the connection: " + e.message);
      return;
    }
    state.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      state.retryMs = 500;
      showConnection("Connected", "connected");
      showMessage("");
    };
    socket.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      receive(frame);
    };
    socket.onclose = () => {
      if (state.socket !== socket) return;
      state.socket = null;
      if (!state.token) return;
      if (!opened && !state.agent) {
        // Refused before the upgrade (401): a wrong token does not get better by retrying.
        signOut("The sidecar refused this token.");
        return;
      }
      showConnection("Reconnecting…", "reconnecting");
      state.retryTimer = setTimeout(connect, state.retryMs);
      state.retryMs = Math.min(state.retryMs * 2, 10000);
    };
  }

  function send(frame) {
    if (!state.socket || state.socket.readyState !== WebSocket.OPEN) {
      showMessage("Not connected: " + frame.type + " not sent.");
      return null;
    }
    const id = "c" + state.nextRequest++;
    const body = Object.assign({ id }, frame);
    state.socket.send(JSON.stringify(body));
    const timer = setTimeout(() => {
      if (state.pending.delete(id)) {
        showMessage("No answer from the sidecar to " + frame.type + ".");
      }
    }, REPLY_WAIT_MS);
    state.pending.set(id, { frame: body, timer });
    return id;
  }

  function receive(frame) {
    switch (frame.type) {
      case "hello":
        state.agent = { user_id: frame.user_id, extension: frame.extension };
        $("agent-name").textContent = frame.user_id;
        $("agent-extension").textContent = frame.extension ? "ext. " + frame.extension : "";
        $("sign-in").hidden = true;
        $("agent").hidden = false;
        $("dialer").hidden = false;
        connectedListeners.forEach((fn) => fn(state.agent));
        break;
      case "screen_pop":
        showPop(frame);
        break;
      case "call":
        callState(frame);
        break;
      case "presence":
        if (frame.state) $("presence").value = frame.state;
        break;
      case "result":
        reply(frame);
        break;
    }
  }

  // A result only says accepted or refused; `call` frames are the truth about state.
  function reply(frame) {
    const pending = state.pending.get(frame.id);
    if (pending) {
      clearTimeout(pending.timer);
      state.pending.delete(frame.id);
    }
    if (frame.ok === false) {
      const what = pending ? pending.frame.type : "command";
      const error = frame.error || {};
      const code = error.code ? " (" + error.code + (error.reason ? " " + error.reason : "") + ")" : "";
      showMessage(what + " refused" + code + ": " + (error.message || "error"));
    } else {
      showMessage("");
    }
  }

  function text(el, value) {
    $(el).textContent = value || "—";
  }

  function recordUrl(base, type, id) {
    if (!base || !RECORD_ID.test(id)) return null;
    let url;
    try {
      url = new URL(base);
    } catch (_) {
      return null;
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") return null;
    const path = type && OBJECT_TYPE.test(type) ? "/lightning/r/" + type + "/" + id + "/view" : "/" + id;
    return url.origin + path;
  }

  function showPop(frame, { ack = true } = {}) {
    if (frame.expires_at_ms && frame.expires_at_ms <= Date.now()) return;
    if (frame.salesforce_url) state.salesforceUrl = frame.salesforce_url;
    const record = frame.record || null;
    const ids = Array.isArray(frame.record_ids) ? frame.record_ids : [];
    state.call = {
      call_uuid: frame.call_uuid,
      caller_number: frame.caller_number,
      direction: frame.direction,
      record_ids: ids,
      record,
      held: false,
      muted: false,
      ended: false,
    };
    $("call-title").textContent = frame.direction === "outbound" ? "Outbound call" : "Incoming call";
    $("caller-number").textContent = frame.caller_number || "Unknown number";
    $("caller-number").setAttribute("aria-label", "Call back " + (frame.caller_number || "unknown number"));
    $("caller-number").disabled = !frame.caller_number;
    text("record-name", record && record.name);
    text("record-type", record && record.type);
    text("record-owner", record && (record.owner_name || record.owner_id));
    $("record").hidden = !record;
    $("record-none").hidden = !!record || ids.length > 0;
    if (!record && ids.length > 1) {
      $("record-none").hidden = false;
      $("record-none").textContent = ids.length + " matching records";
    } else {
      $("record-none").textContent = "No matching record";
    }
    const link = $("record-link");
    // Several matches: the agent picks in Salesforce (Open CTI searches the number).
    const href = ids.length === 1 ? recordUrl(frame.salesforce_url, record && record.type, ids[0]) : null;
    link.hidden = !href;
    if (href) link.href = href;
    else link.removeAttribute("href");
    $("call-state").textContent = "Ringing";
    resetControls();
    $("call").hidden = false;
    $("call").dataset.callUuid = frame.call_uuid;
    // When it reached the screen, for the latency figure (docs/benchmarks.md).
    $("call").dataset.shownAtMs = String(Date.now());
    $("call").dataset.createdAtMs = String(frame.created_at_ms || "");
    // And after the next frame is painted (a task after the animation frame).
    delete $("call").dataset.paintedAtMs;
    const shown = frame.call_uuid;
    requestAnimationFrame(() =>
      setTimeout(() => {
        if ($("call").dataset.callUuid === shown) $("call").dataset.paintedAtMs = String(Date.now());
      }, 0),
    );
    addHistory(state.call);
    // Notes can start during the call; the form stays for this call until saved.
    startWrapUp(state.call);
    if (ack && state.socket && state.socket.readyState === WebSocket.OPEN) {
      state.socket.send(JSON.stringify({ ack: frame.call_uuid }));
    }
    popListeners.forEach((fn) => fn(frame));
  }

  function resetControls() {
    $("hold").textContent = "Hold";
    $("hold").setAttribute("aria-pressed", "false");
    $("mute").textContent = "Mute";
    $("mute").setAttribute("aria-pressed", "false");
    for (const id of ["hold", "mute", "hangup"]) $(id).disabled = false;
  }

  const STATE_LABELS = {
    ringing: "Ringing", answered: "Connected", held: "On hold", transferred: "Transferred", ended: "Ended",
  };

  function callState(frame) {
    if (!state.call || state.call.call_uuid !== frame.call_uuid) {
      if (frame.state === "ended" || frame.state === "transferred") {
        const old = state.history.find((c) => c.call_uuid === frame.call_uuid);
        if (old) old.ended = true;
        renderHistory();
        return;
      }
      // A call this console has no pop for: a click-to-dial, or one that was live at connect.
      showPop({
        type: "screen_pop",
        call_uuid: frame.call_uuid,
        caller_number: frame.other_party || "",
        direction: frame.direction || "outbound",
        record_ids: frame.record_id ? [frame.record_id] : [],
        salesforce_url: state.salesforceUrl,
      }, { ack: false });
    }
    const call = state.call;
    call.state = frame.state;
    $("call-state").textContent =
      (STATE_LABELS[frame.state] || frame.state) +
      (frame.state === "ended" && frame.cause ? " (" + frame.cause + ")" : "") +
      (frame.state === "transferred" && frame.transferred_to ? " to " + frame.transferred_to : "");
    call.held = frame.state === "held";
    $("hold").textContent = call.held ? "Resume" : "Hold";
    $("hold").setAttribute("aria-pressed", String(call.held));
    if (typeof frame.muted === "boolean") {
      call.muted = frame.muted;
      $("mute").textContent = call.muted ? "Unmute" : "Mute";
      $("mute").setAttribute("aria-pressed", String(call.muted));
    }
    if (frame.state === "ended" || frame.state === "transferred") endCall();
    renderHistory();
  }

  function endCall() {
    const call = state.call;
    if (!call || call.ended) return;
    call.ended = true;
    for (const id of ["hold", "mute", "hangup"]) $(id).disabled = true;
    $("cancel-transfer").hidden = true;
    startWrapUp(call);
  }

  function startWrapUp(call) {
    state.wrapUpFor = call;
    $("wrap-up-call").textContent = "Call with " + (call.caller_number || "unknown number");
    $("wrap-up").hidden = false;
  }

  function addHistory(call) {
    if (!state.history.includes(call)) state.history.push(call);
    renderHistory();
  }

  function renderHistory() {
    const list = $("history");
    list.replaceChildren();
    for (const call of state.history.slice().reverse()) {
      const li = document.createElement("li");
      const who = call.record && call.record.name ? call.record.name + " " : "";
      const dial = document.createElement("button");
      dial.type = "button";
      dial.className = "number";
      dial.textContent = call.caller_number || "unknown";
      dial.disabled = !call.caller_number;
      dial.setAttribute("aria-label", "Call " + (call.caller_number || "unknown"));
      dial.addEventListener("click", () => dial_(call.caller_number, call.record_ids[0]));
      li.append(who, dial, " · " + (call.direction || "inbound") + (call.disposition ? " · " + call.disposition : ""));
      list.append(li);
    }
    $("history-section").hidden = state.history.length === 0;
  }

  function dial_(number, recordId) {
    const cleaned = String(number || "").trim();
    // The protocol's number rule (docs/agent-protocol.md): checked here so a typo fails at once.
    if (!/^[0-9+*#() .-]{1,32}$/.test(cleaned) || !/[0-9].*[0-9]/.test(cleaned)) {
      showMessage("Not a number that can be dialled: " + cleaned);
      return null;
    }
    const frame = { type: "dial", number: cleaned };
    if (recordId && RECORD_ID.test(recordId)) frame.record_id = recordId;
    $("dial-number").value = cleaned;
    return send(frame);
  }

  function callCommand(type, extra) {
    if (!state.call) {
      showMessage("No call to " + type + ".");
      return;
    }
    send(Object.assign({ type, call_uuid: state.call.call_uuid }, extra || {}));
  }

  function signOut(why) {
    state.token = null;
    state.agent = null;
    clearTimeout(state.retryTimer);
    const socket = state.socket;
    state.socket = null;
    if (socket) socket.close();
    $("sign-in").hidden = false;
    $("agent").hidden = true;
    $("dialer").hidden = true;
    showConnection("Signed out", "signed-out");
    showMessage(why || "");
  }

  function wire() {
    $("sign-in").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token").value.trim();
      $("token").value = "";
      if (!token) return;
      state.token = token;
      showConnection("Connecting…", "connecting");
      connect();
    });
    $("sign-out").addEventListener("click", () => signOut());
    $("presence").addEventListener("change", () => send({ type: "set_presence", state: $("presence").value }));
    $("keypad").addEventListener("click", (event) => {
      if (event.target.tagName !== "BUTTON") return;
      $("dial-number").value += event.target.textContent;
    });
    $("dial").addEventListener("submit", (event) => {
      event.preventDefault();
      dial_($("dial-number").value);
    });
    $("caller-number").addEventListener("click", () => {
      if (state.call) dial_(state.call.caller_number, state.call.record_ids[0]);
    });
    $("hold").addEventListener("click", () => callCommand(state.call && state.call.held ? "resume" : "hold"));
    $("mute").addEventListener("click", () => callCommand(state.call && state.call.muted ? "unmute" : "mute"));
    $("hangup").addEventListener("click", () => callCommand("hangup"));
    $("cancel-transfer").addEventListener("click", () => {
      $("cancel-transfer").hidden = true;
      callCommand("cancel_transfer");
    });
    $("transfer").addEventListener("submit", (event) => {
      event.preventDefault();
      const to = $("transfer-to").value.trim();
      const mode = $("transfer-mode").value;
      if (mode === "conference") callCommand("conference", { to });
      else callCommand("transfer", { to, mode });
      // A warm transfer consults first: the agent may still go back to the other party.
      $("cancel-transfer").hidden = mode !== "warm";
    });
    $("wrap-up-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const call = state.wrapUpFor || state.call;
      if (!call) return;
      const disposition = $("disposition").value;
      if (!disposition) {
        showMessage("Choose a disposition.");
        $("disposition").focus();
        return;
      }
      if (send({ type: "wrap_up", call_uuid: call.call_uuid, disposition, notes: $("notes").value })) {
        call.disposition = disposition;
        $("notes").value = "";
        $("disposition").value = "";
        $("wrap-up").hidden = true;
        renderHistory();
      }
    });
  }

  window.NatterboxConsole = {
    onPop: (fn) => popListeners.push(fn),
    onConnected: (fn) => connectedListeners.push(fn),
    dial: (number, recordId) => dial_(number, recordId),
    wrapUp: () => state.call && startWrapUp(state.call),
  };
  wire();
})();
