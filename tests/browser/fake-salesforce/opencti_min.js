// Test stand-in for Salesforce's lightning/opencti_min.js (which Salesforce serves and this repo
// does not ship). Same public surface (sforce.opencti.*, callbacks get {success, returnValue,
// errors}), same transport: the library runs in the softphone's iframe, reads the Lightning
// origin from the iframe URL's sfdcIframeOrigin, and talks to that parent with postMessage,
// accepting messages only from it. The message envelope is this test's own.
"use strict";
(function () {
  const host = new URLSearchParams(location.search).get("sfdcIframeOrigin");
  const callbacks = new Map();
  const listeners = new Map();
  let next = 1;

  function call(method, args) {
    const { callback, listener, ...rest } = args || {};
    const id = next++;
    if (callback) callbacks.set(id, callback);
    if (listener) listeners.set(method, listener);
    window.parent.postMessage({ opencti: "request", id, method, args: rest }, host);
  }

  window.addEventListener("message", (event) => {
    if (event.origin !== host || event.source !== window.parent) return;
    const msg = event.data || {};
    if (msg.opencti === "response") {
      const cb = callbacks.get(msg.id);
      callbacks.delete(msg.id);
      if (cb) cb(msg.response);
    } else if (msg.opencti === "event") {
      const listener = listeners.get(msg.name);
      if (listener) listener(msg.payload);
    }
  });

  window.sforce = window.sforce || {};
  window.sforce.opencti = {
    SCREENPOP_TYPE: { SOBJECT: "sobject", URL: "url", OBJECTHOME: "objecthome", LIST: "list", SEARCH: "search", NEW_RECORD_MODAL: "newRecord", FLOW: "flow" },
    screenPop: (args) => call("screenPop", args),
    enableClickToDial: (args) => call("enableClickToDial", args),
    disableClickToDial: (args) => call("disableClickToDial", args),
    onClickToDial: (args) => call("onClickToDial", args),
    setSoftphonePanelVisibility: (args) => call("setSoftphonePanelVisibility", args),
    isSoftphonePanelVisible: (args) => call("isSoftphonePanelVisible", args),
  };
})();
