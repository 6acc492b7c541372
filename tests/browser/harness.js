// The whole product on this machine for a browser: the org emulator, the sidecar (serving the
// console and the /agent WebSocket), and the real mod_natterbox_sf.so in the host shim, driven
// line by line. Used by the browser tests and by scripts/demo.sh.
"use strict";
const { spawn } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");
const readline = require("node:readline");

const TOP = path.resolve(__dirname, "../..");

function targetDir() {
  return path.join(process.env.CARGO_TARGET_DIR || path.join(TOP, "target"), "debug");
}

function findShim() {
  if (process.env.HOST_SHIM) return process.env.HOST_SHIM;
  const build = path.join(targetDir(), "build");
  const found = fs
    .readdirSync(build)
    .filter((d) => d.startsWith("mod_natterbox_sf-"))
    .map((d) => path.join(build, d, "out", "host-shim"))
    .filter((p) => fs.existsSync(p))
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
  if (!found.length) throw new Error("host shim not built (cargo build -p mod_natterbox_sf)");
  return found[0];
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

async function until(what, check, timeoutMs = 15000, everyMs = 50) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/// The shim with its stdin open: one command at a time, each answered by a `<<<` line.
class Shim {
  constructor(shimPath, confDir, logFile) {
    this.child = spawn(shimPath, ["--conf-dir", confDir], {
      stdio: ["pipe", "pipe", fs.openSync(logFile, "a")],
    });
    this.waiting = [];
    this.body = [];
    /// Every event the shim printed: { name, headers, at } (at: when this process read it).
    this.events = [];
    let event = null;
    this.exited = false;
    this.child.on("exit", () => {
      this.exited = true;
      for (const w of this.waiting.splice(0)) w.reject(new Error("host shim exited"));
    });
    readline.createInterface({ input: this.child.stdout }).on("line", (line) => {
      if (line.startsWith("@event ")) {
        event = { name: line.split(" ")[2], headers: {}, at: Date.now() };
        return;
      }
      if (event && line.startsWith("@header ")) {
        const [k, ...v] = line.slice(8).split(": ");
        event.headers[k] = v.join(": ");
        return;
      }
      if (event && line.startsWith("@end ")) {
        this.events.push(event);
        event = null;
        return;
      }
      if (line.startsWith("<<< ")) {
        const w = this.waiting.shift();
        const body = this.body;
        this.body = [];
        if (w) (line === "<<< OK" ? w.resolve(body) : w.reject(new Error(w.line + ": " + line)));
      } else if (!line.startsWith(">>> ") && !line.startsWith("@")) {
        this.body.push(line);
      }
    });
  }

  run(line) {
    if (this.exited) return Promise.reject(new Error("host shim exited"));
    return new Promise((resolve, reject) => {
      this.waiting.push({ line, resolve, reject });
      this.child.stdin.write(line + "\n");
    });
  }

  /// The FreeSWITCH API commands the module ran (not its own `sf`): [{ command, arg, at }].
  switchCommands() {
    return this.events
      .filter((e) => e.name === "API" && e.headers["API-Command"] !== "sf")
      .map((e) => ({ command: e.headers["API-Command"], arg: e.headers["API-Command-Argument"] || "", at: e.at }));
  }

  async vars(call) {
    const out = {};
    for (const line of await this.run("vars " + call)) {
      if (!line.startsWith("var ")) continue;
      const [k, ...v] = line.slice(4).split("=");
      out[k] = v.join("=");
    }
    return out;
  }

  async stop() {
    if (this.exited) return;
    try {
      await this.run("unload mod_natterbox_sf");
    } catch (_) {}
    this.child.stdin.end("exit\n");
    await until("the host shim to exit", () => this.exited, 10000).catch(() => this.child.kill("SIGKILL"));
  }
}

function hashToken(token) {
  return crypto.createHash("sha256").update(token).digest("hex");
}

/// Starts everything; `stop()` ends it all and removes the work directory. `orgExtra`: more of
/// the org's config (or a function of the emulator's ready line that returns it); `callLog`:
/// more attributes for its `<call-log>`.
async function startProduct({ popTtlMs = 30000, orgExtra = "", callLog = "" } = {}) {
  const bin = targetDir();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "natterbox-browser-"));
  const children = [];
  const dirs = ["conf/autoload_configs", "tokens", "spool", "state"];
  dirs.forEach((d) => fs.mkdirSync(path.join(work, d), { recursive: true }));
  fs.chmodSync(path.join(work, "tokens"), 0o700);

  const emulatorOut = path.join(work, "emulator.json");
  const emulator = spawn(path.join(bin, "sf-emulator"), ["--bind", "127.0.0.1:0"], {
    stdio: ["ignore", fs.openSync(emulatorOut, "w"), fs.openSync(path.join(work, "emulator.log"), "w")],
  });
  children.push(emulator);
  const emu = await until("the emulator", () => {
    const text = fs.existsSync(emulatorOut) ? fs.readFileSync(emulatorOut, "utf8") : "";
    return text.includes("\n") ? JSON.parse(text.split("\n")[0]) : null;
  });

  const agents = [
    { user_id: "005Em0000000001AAA", extension: "1001", token: crypto.randomBytes(24).toString("hex") },
    { user_id: "005Em0000000002AAA", extension: "1002", token: crypto.randomBytes(24).toString("hex") },
  ];
  const agentsFile = path.join(work, "agents.json");
  fs.writeFileSync(
    agentsFile,
    JSON.stringify({
      agents: agents.map((a) => ({ user_id: a.user_id, extension: a.extension, token_sha256: hashToken(a.token) })),
    }),
  );
  const orgXml = typeof orgExtra === "function" ? orgExtra(emu) : orgExtra;
  const adminPort = await freePort();
  const agentPort = await freePort();
  const config = path.join(work, "conf/autoload_configs/natterbox_sf.conf.xml");
  fs.writeFileSync(
    config,
    `<configuration name="natterbox_sf.conf" description="browser tests">
  <settings>
    <param name="default-org" value="acme"/>
    <param name="lookup-timeout-ms" value="1500"/>
    <param name="token-dir" value="${work}/tokens"/>
    <param name="event-socket" value="${work}/events.sock"/>
    <param name="spool-dir" value="${work}/spool"/>
  </settings>
  <sidecar>
    <param name="admin-listen" value="127.0.0.1:${adminPort}"/>
    <param name="agent-listen" value="127.0.0.1:${agentPort}"/>
    <param name="outbox-db" value="${work}/state/outbox.sqlite"/>
    <param name="agent-tokens-file" value="${agentsFile}"/>
  </sidecar>
  <orgs>
    <org name="acme" api-version="62.0" default-country="US" login-url="${emu.login_url}" allow-insecure-http="true">
      <auth flow="jwt-bearer" client-id="3MVG9Emu.JWT.ClientId.natterbox" username="integration@acme.example"
            private-key-file="${TOP}/tests/sf-emulator/fixtures/test-jwt-private-key.pem"
            audience="https://login.salesforce.com"/>
      <profile name="default">
        <object name="Contact" fields="Id,Name,OwnerId,Owner.Name,Owner.Extension">
          <map field="Owner.Extension" variable="sf_owner_extension"/>
          <map field="Owner.Name" variable="sf_owner_name"/>
        </object>
        <object name="Lead" fields="Id,Name,OwnerId"/>
      </profile>
      <call-log enabled="true" directions="inbound,outbound" subject="Call {direction} {from}" status="Completed"${callLog}/>
      <screen-pop ttl-ms="${popTtlMs}"/>${orgXml}
    </org>
  </orgs>
</configuration>
`,
  );
  let sidecar = null;
  const consoleUrl = `http://127.0.0.1:${agentPort}/console/`;
  // Starts the sidecar (again, after a kill: same config, ports and outbox) and waits for it.
  async function startSidecar() {
    sidecar = spawn(path.join(bin, "natterbox-sidecar"), ["--config", config], {
      stdio: ["ignore", "ignore", fs.openSync(path.join(work, "sidecar.log"), "a")],
    });
    children.push(sidecar);
    await until("the sidecar's token", () => fs.existsSync(path.join(work, "tokens/acme.json")), 30000);
    await until("the console page", async () => {
      try {
        return (await fetch(consoleUrl)).ok;
      } catch (_) {
        return false;
      }
    });
  }
  await startSidecar();
  const moduleConnected = () =>
    until("the module's connection to the sidecar", async () => {
      const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
      const m = text.match(/^natterbox_sidecar_socket_connections\s+(\d+)/m);
      return m && Number(m[1]) > 0;
    }, 15000);

  const shim = new Shim(findShim(), path.join(work, "conf"), path.join(work, "shim.log"));
  await shim.run(`load ${path.join(bin, "libmod_natterbox_sf.so")} mod_natterbox_sf`);
  // The module reaches the sidecar's socket in the background; wait for the connection.
  await moduleConnected();

  let calls = 0;
  return {
    work,
    emulator: emu,
    agents,
    consoleUrl,
    agentPort,
    adminPort,
    shim,
    /// An inbound call looked up in the org; returns its UUID (the shim's session id).
    async inboundCall(number, { extension = "1001" } = {}) {
      const id = `in-${++calls}`;
      // The dialplan routes it to the agent (sf_agent_extension: the call is theirs to control).
      await shim.run(`call ${id} caller_id_number=${number} destination_number=2000 sf_agent_extension=${extension}`);
      await shim.run(`app ${id} sf_lookup`);
      const vars = await shim.vars(id);
      return { id, uuid: vars.uuid || id, vars, extension };
    },
    /// Runs sf_screen_pop on the call; resolves with the wall-clock time just before.
    async screenPop(call, extension = call.extension) {
      const before = Date.now();
      await shim.run(`app ${call.id} sf_screen_pop extension=${extension}`);
      return before;
    },
    /// The emulator's Telephony Integration API records: [{ Id, VendorCallKey, fields, history }].
    async voiceCalls() {
      return (await fetch(`${emu.login_url}/__emulator/voicecalls`)).json();
    },
    /// `kill -9` of the sidecar, then a new one on the same config, state and ports, once the
    /// module has connected to it again.
    async restartSidecarAfterKill9() {
      const killed = sidecar;
      const exited = new Promise((r) => killed.once("exit", r));
      killed.kill("SIGKILL");
      await exited;
      await startSidecar();
      await moduleConnected();
    },
    /// Adds a fault rule to the emulator (`/__emulator/faults`); returns its id.
    async addFault(rule) {
      const res = await fetch(`${emu.login_url}/__emulator/faults`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(rule),
      });
      return (await res.json()).id;
    },
    async faults() {
      return (await fetch(`${emu.login_url}/__emulator/faults`)).json();
    },
    async clearFaults() {
      await fetch(`${emu.login_url}/__emulator/faults`, { method: "DELETE" });
    },
    async metric(name) {
      const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
      const m = text.match(new RegExp("^" + name + "\\s+(\\d+)", "m"));
      return m ? Number(m[1]) : null;
    },
    async stop() {
      await shim.stop();
      const running = (c) => c.exitCode === null && c.signalCode === null;
      for (const c of children.reverse()) {
        if (running(c)) c.kill("SIGTERM");
      }
      await Promise.all(children.map((c) => (running(c) ? new Promise((r) => c.once("exit", r)) : null)));
      if (!process.env.KEEP_WORK) fs.rmSync(work, { recursive: true, force: true });
    },
  };
}

/// Debian's chromium, driven by playwright-core; nothing is downloaded.
async function launchChromium(extraArgs = []) {
  const { chromium } = require("playwright-core");
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", ...extraArgs],
  });
}

/// Opens the console and signs the agent in with the token typed into the form.
async function signIn(page, url, token) {
  await page.goto(url);
  await page.getByLabel("Agent token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForSelector('#connection[data-state="connected"]');
  await page.waitForSelector("#agent:not([hidden])");
}

module.exports = { startProduct, launchChromium, signIn, until, freePort, TOP };
