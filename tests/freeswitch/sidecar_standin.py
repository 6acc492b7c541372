#!/usr/bin/env python3
"""The sidecar's end of the module's event socket, reduced to what tests/freeswitch needs:
records every JSON line the module sends (one per line in OUT) and acknowledges call logs.

    sidecar_standin.py <socket path> <out file>
"""
import json
import os
import socket
import sys
import threading

path, out_path = sys.argv[1], sys.argv[2]
lock = threading.Lock()


def serve(conn):
    with conn, conn.makefile("rb") as lines:
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                message = {"type": "unparsable", "text": line.decode("utf-8", "replace")}
            with lock, open(out_path, "a") as out:
                out.write(json.dumps(message, separators=(",", ":")) + "\n")
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
