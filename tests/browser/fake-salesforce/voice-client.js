// What Salesforce's voice client does with a partner-telephony connector: frames the contact
// center's adapter URL, posts SETUP_CONNECTOR with the contact center's configuration and a
// MessagePort once the frame has loaded, and then speaks to the connector only through that
// port. Everything the connector posts back is kept in `window.voiceClient.received` for the
// test; `window.voiceClient.send(message)` is a message of the voice client (ACCEPT_CALL, …).
"use strict";
(() => {
  const params = new URLSearchParams(location.search);
  const adapter = new URL(params.get("adapter"));
  const frame = document.getElementById("connector");
  const channel = new MessageChannel();
  const received = [];
  channel.port1.onmessage = (event) => received.push(event.data);

  // The configuration an admin enters on the contact center (its XML's fields), as the voice
  // client hands it to the connector.
  const connectorConfig = {
    "/internalNameLabel": "Natterbox Contact Center",
    "/reqGeneralInfo/reqAdapterUrl": adapter.href,
    "/reqGeneralInfo/reqVendorInfoApiName": "Natterbox",
    "/reqHvcc/reqTelephonyIntegrationCertificate": "-----BEGIN CERTIFICATE-----(not logged)",
    orgDomainName: location.hostname,
    isACWAllowed: true,
  };

  frame.addEventListener("load", () => {
    frame.contentWindow.postMessage({ type: "SETUP_CONNECTOR", connectorConfig }, adapter.origin, [channel.port2]);
  }, { once: true });
  frame.src = adapter.href;

  window.voiceClient = {
    received,
    connectorConfig,
    send(message) {
      channel.port1.postMessage(message);
    },
  };
})();
