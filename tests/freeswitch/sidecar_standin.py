#!/usr/bin/env python3
"""The sidecar's end of the module's event socket, reduced to what tests/freeswitch needs:
records every JSON line the module sends (one per line in OUT), acknowledges call logs, and on
a token_refresh report fetches a new token (client credentials, posted to the org's My Domain)
and writes the token file as the sidecar does (0600, temporary file + rename).

    sidecar_standin.py <socket path> <out file> <instance url> <token dir> <org>
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
lock = threading.Lock()


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
                ack = {"type": "ack", "call_uuid": message.get("call_uuid")}
                conn.sendall((json.dumps(ack) + "\n").encode())


if os.path.exists(path):
    os.unlink(path)
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
os.chmod(path, 0o660)
server.listen(8)
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
