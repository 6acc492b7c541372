#!/usr/bin/env python3
"""The sidecar's end of the module's event socket, reduced to what tests/freeswitch needs:
records every JSON line the module sends (one per line in OUT), acknowledges call logs, and on
a token_refresh report fetches a new token (client credentials, posted to the org's My Domain)
and writes the token file as the sidecar does (0600, temporary file + rename). With a control
socket path, each JSON line written to that socket (an agent's `switch_command`, as the sidecar
sends once it has authorised the agent) goes to the module's latest connection; the control
client gets back `sent` or `no module`.

    sidecar_standin.py <socket path> <out file> <instance url> <token dir> <org> [control socket]
"""
import base64
import json
import os
import socket
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

path, out_path, instance_url, token_dir, org = sys.argv[1:6]
CLIENT = ("3MVG9Emu.CC.ClientId.natterbox", "cc-app-secret")
control_path = sys.argv[6] if len(sys.argv) > 6 else None
lock = threading.Lock()
# The module's latest connection, and a lock so acks and commands never interleave on it.
module = {"conn": None}
send_lock = threading.Lock()


def send(conn, message):
    with send_lock:
        conn.sendall((json.dumps(message) + "\n").encode())


def current_generation():
    try:
        with open(os.path.join(token_dir, org + ".json")) as f:
            return int(json.load(f).get("generation", 0))
    except (OSError, ValueError):
        return 0


def refresh(reported_generation):
    with lock:
        generation = current_generation()
        # Coalesced like the sidecar: only a report about the current token refreshes.
        if reported_generation and reported_generation < generation:
            return
        auth = base64.b64encode(("%s:%s" % CLIENT).encode()).decode()
        request = urllib.request.Request(
            instance_url + "/services/oauth2/token",
            data=urllib.parse.urlencode({"grant_type": "client_credentials"}).encode(),
            headers={"Authorization": "Basic " + auth},
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            token = json.load(reply)
        record = {
            "org": org,
            "access_token": token["access_token"],
            "instance_url": token["instance_url"],
            "issued_at_ms": int(token.get("issued_at", time.time() * 1000)),
            "generation": generation + 1,
        }
        fd, tmp = tempfile.mkstemp(dir=token_dir, prefix="." + org + ".json.")
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.rename(tmp, os.path.join(token_dir, org + ".json"))


def serve(conn):
    module["conn"] = conn
    with conn, conn.makefile("rb") as lines:
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                message = {"type": "unparsable", "text": line.decode("utf-8", "replace")}
            with lock, open(out_path, "a") as out:
                out.write(json.dumps(message, separators=(",", ":")) + "\n")
            if message.get("type") == "token_refresh" and message.get("org") == org:
                refresh(int(message.get("generation") or 0))
            if message.get("type") == "call_log":
                send(conn, {"type": "ack", "call_uuid": message.get("call_uuid")})


def control(conn):
    with conn, conn.makefile("rb") as lines:
        for line in lines:
            target = module["conn"]
            if target is None:
                conn.sendall(b"no module\n")
                continue
            send(target, json.loads(line))
            conn.sendall(b"sent\n")


def listen(at):
    if os.path.exists(at):
        os.unlink(at)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(at)
    os.chmod(at, 0o660)
    server.listen(8)
    return server


def accept_loop(server, handler):
    while True:
        conn, _ = server.accept()
        threading.Thread(target=handler, args=(conn,), daemon=True).start()


server = listen(path)
if control_path:
    threading.Thread(target=accept_loop, args=(listen(control_path), control), daemon=True).start()
print("listening", flush=True)
accept_loop(server, serve)
