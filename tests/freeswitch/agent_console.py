#!/usr/bin/env python3
"""An agent's console for tests/freeswitch: a WebSocket client of the real sidecar's /agent
(docs/agent-protocol.md), standard library only, so the real-FreeSWITCH suite needs no browser.

    agent_console.py run <ws://host:port/agent> <token> <out.jsonl> <control socket>
        connects as a console does (the token in the subprotocol list), appends every frame it
        receives to out.jsonl (one JSON object a line, with "_at_ms", the receive time in ms
        since the epoch), and sends each JSON line written to the control socket as a text
        frame, noting {"_sent": frame, "_at_ms": …} in out.jsonl just before the write.
        A refused upgrade prints "refused <HTTP status>" and exits 2.
    agent_console.py send <control socket> <json>
        one frame to the console; prints "sent".
    agent_console.py find <out.jsonl> <json object> [n]
        exit 0 when at least n (default 1) received frames have every field of the object with
        that value; prints the n-th such frame.
"""
import base64
import json
import os
import socket
import struct
import sys
import threading
import time
import urllib.parse

write_lock = threading.Lock()


def now_ms():
    return int(time.time() * 1000)


def note(out, record):
    with write_lock, open(out, "a") as f:
        f.write(json.dumps(record, separators=(",", ":")) + "\n")


def connect(url, token):
    parts = urllib.parse.urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: natterbox.agent.v1, natterbox.token.{token}\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    status = head.split(b" ", 2)[1].decode() if head.count(b" ") >= 2 else "?"
    if status != "101":
        print("refused", status, flush=True)
        sys.exit(2)
    sock.settimeout(None)
    return sock


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def send_frame(sock, opcode, payload):
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(header + mask + masked)


def read_loop(sock, out, send_lock):
    message = b""
    while True:
        b1, b2 = recv_exact(sock, 2)
        opcode, n = b1 & 0x0F, b2 & 0x7F
        if n == 126:
            n = struct.unpack("!H", recv_exact(sock, 2))[0]
        elif n == 127:
            n = struct.unpack("!Q", recv_exact(sock, 8))[0]
        payload = recv_exact(sock, n)
        if opcode == 0x9:
            with send_lock:
                send_frame(sock, 0xA, payload)
        elif opcode == 0x8:
            note(out, {"_closed": True, "_at_ms": now_ms()})
            return
        elif opcode in (0x0, 0x1):
            message += payload
            if b1 & 0x80:
                frame = json.loads(message)
                frame["_at_ms"] = now_ms()
                note(out, frame)
                message = b""


def run(url, token, out, control):
    sock = connect(url, token)
    send_lock = threading.Lock()
    if os.path.exists(control):
        os.unlink(control)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(control)
    server.listen(8)

    def serve(conn):
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                frame = json.loads(line)
                with send_lock:
                    note(out, {"_sent": frame, "_at_ms": now_ms()})
                    send_frame(sock, 0x1, json.dumps(frame).encode())
                conn.sendall(b"sent\n")

    def accept():
        while True:
            conn, _ = server.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    print("connected", flush=True)
    try:
        read_loop(sock, out, send_lock)
    except EOFError:
        note(out, {"_closed": True, "_at_ms": now_ms()})


def send(control, text):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(control)
    s.sendall((json.dumps(json.loads(text)) + "\n").encode())
    print(s.makefile("rb").readline().decode().strip())


def find(out, text, n=1):
    want = json.loads(text)
    seen = 0
    try:
        with open(out) as f:
            for line in f:
                frame = json.loads(line)
                if all(frame.get(k) == v for k, v in want.items()):
                    seen += 1
                    if seen == n:
                        print(json.dumps(frame, separators=(",", ":")))
                        return 0
    except FileNotFoundError:
        pass
    return 1


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "run":
        run(*sys.argv[2:6])
    elif mode == "send":
        send(*sys.argv[2:4])
    elif mode == "find":
        sys.exit(find(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 1))
    else:
        sys.exit("usage: agent_console.py run|send|find …")
