// Open CTI: the same console as a Salesforce Lightning softphone (docs/open-cti.md).
// Salesforce loads the softphone (the call center's reqAdapterUrl) in an iframe and passes its
// own origin as `sfdcIframeOrigin`; opencti_min.js comes from that origin and talks to it with
// postMessage. Outside Salesforce this file does nothing.
"use strict";
(function () {
  const OPENCTI_VERSION = "62.0";
  // Only a Lightning or My Domain host may provide the library (the CSP says the same): not
  // *.force.com at large, where Salesforce Sites serve anyone's pages.
  const SALESFORCE_HOST = /\.(lightning\.force\.com|my\.salesforce\.com)$/;

  function salesforceOrigin() {
    const given = new URLSearchParams(location.search).get("sfdcIframeOrigin");
    if (!given || window.parent === window) return null;
    let url;
    try {
      url = new URL(given);
    } catch (_) {
      return null;
    }
    if (url.protocol !== "https:" || !SALESFORCE_HOST.test(url.hostname)) return null;
    return url.origin;
  }

  function loadLibrary(origin) {
    return new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = origin + "/support/api/" + OPENCTI_VERSION + "/lightning/opencti_min.js";
      script.onload = () => (window.sforce && window.sforce.opencti ? resolve(window.sforce.opencti) : reject(new Error("no sforce.opencti")));
      script.onerror = () => reject(new Error("could not load " + script.src));
      document.head.append(script);
    });
  }

  function logFailure(what) {
    return (response) => {
      if (response && response.success === false) {
        console.warn("opencti " + what + " failed", response.errors);
      }
    };
  }

  const origin = salesforceOrigin();
  const consoleApi = window.NatterboxConsole;
  if (!origin || !consoleApi) return;
  document.documentElement.dataset.opencti = "loading";

  loadLibrary(origin).then(
    (opencti) => {
      document.documentElement.dataset.opencti = "ready";
      // Numbers in Salesforce dial through this console.
      opencti.onClickToDial({
        listener: (payload) => {
          opencti.setSoftphonePanelVisibility({ visible: true, callback: logFailure("setSoftphonePanelVisibility") });
          consoleApi.dial(String(payload.number), payload.recordId);
        },
      });
      consoleApi.onConnected(() => opencti.enableClickToDial({ callback: logFailure("enableClickToDial") }));
      // A pop opens the panel and the caller's record in the agent's Salesforce tab.
      consoleApi.onPop((pop) => {
        opencti.setSoftphonePanelVisibility({ visible: true, callback: logFailure("setSoftphonePanelVisibility") });
        const recordId = Array.isArray(pop.record_ids) && pop.record_ids.length === 1 ? pop.record_ids[0] : null;
        if (recordId) {
          opencti.screenPop({
            type: opencti.SCREENPOP_TYPE.SOBJECT,
            params: { recordId },
            callback: logFailure("screenPop"),
          });
        } else if (pop.caller_number && pop.caller_number.length >= 3) {
          opencti.screenPop({
            type: opencti.SCREENPOP_TYPE.SEARCH,
            params: { searchString: pop.caller_number },
            callback: logFailure("screenPop"),
          });
        }
      });
    },
    (error) => {
      document.documentElement.dataset.opencti = "failed";
      console.warn("Open CTI unavailable: " + error.message);
    },
  );
})();
