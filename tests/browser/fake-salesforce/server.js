// Serves the fake Lightning host over HTTPS as https://<host>:<port>, with a throwaway
// self-signed certificate (chromium runs with --ignore-certificate-errors and maps the host
// name to 127.0.0.1).
"use strict";
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const https = require("node:https");
const os = require("node:os");
const path = require("node:path");

const FILES = {
  "/host.html": ["host.html", "text/html; charset=utf-8"],
  "/support/api/62.0/lightning/opencti_min.js": ["opencti_min.js", "text/javascript; charset=utf-8"],
  "/voice-client.html": ["voice-client.html", "text/html; charset=utf-8"],
  "/voice-client.js": ["voice-client.js", "text/javascript; charset=utf-8"],
};

async function startFakeSalesforce(hostName) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fake-sf-"));
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", `/CN=${hostName}`,
    "-addext", `subjectAltName=DNS:${hostName}`,
    "-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem"),
  ], { stdio: "ignore" });
  const server = https.createServer(
    { key: fs.readFileSync(path.join(dir, "key.pem")), cert: fs.readFileSync(path.join(dir, "cert.pem")) },
    (req, res) => {
      const file = FILES[new URL(req.url, "https://x").pathname];
      if (!file) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { "content-type": file[1], "cache-control": "no-store" });
      res.end(fs.readFileSync(path.join(__dirname, file[0])));
    },
  );
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  return {
    port,
    origin: `https://${hostName}:${port}`,
    close: () => new Promise((r) => { server.close(r); fs.rmSync(dir, { recursive: true, force: true }); }),
  };
}

module.exports = { startFakeSalesforce };
