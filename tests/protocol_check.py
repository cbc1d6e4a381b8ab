#!/usr/bin/env python3
"""An independent client of protocol v1: starts `roomring dev` on a free port
and checks the contract with the `websockets` library and plain HTTP."""

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request

import websockets

RESULTS = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    RESULTS["passed" if ok else "failed"] += 1
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))


def http(base, method, path, body=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(base + path, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


async def recv(ws, t=None):
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if t is None or frame["t"] == t:
            return frame


async def run(addr):
    base = f"http://{addr}"
    url = f"ws://{addr}/ws"
    try:
        await websockets.connect(url)
        check("no identity is refused", False, "upgrade succeeded")
    except websockets.exceptions.InvalidStatus as e:
        check("no identity is refused with 401", e.response.status_code == 401, e.response.status_code)

    async with websockets.connect(url + "?user=ann") as ann, websockets.connect(url + "?user=bob") as bob:
        await ann.send(json.dumps({"t": "join", "room": "chat:py", "id": "j"}))
        joined = await recv(ann, "joined")
        check("joined carries the contract's fields",
              {"room", "seq", "history", "online", "truncated"} <= joined.keys() and joined["id"] == "j", joined)
        await bob.send(json.dumps({"t": "join", "room": "chat:py"}))
        await recv(bob, "joined")
        presence = await recv(ann, "presence")
        check("presence announces bob", presence == {"t": "presence", "room": "chat:py", "user": "bob", "online": True}, presence)

        await ann.send(json.dumps({"t": "send", "room": "chat:py", "id": "m1", "body": {"text": "hi"}}))
        msg = await recv(bob, "msg")
        check("msg fields", msg["seq"] == 1 and msg["from"] == "ann" and msg["body"] == {"text": "hi"} and "ts" in msg, msg)
        ack = await recv(ann, "ack")
        check("ack echoes id and seq", ack == {"t": "ack", "id": "m1", "room": "chat:py", "seq": 1}, ack)
        await ann.send(json.dumps({"t": "send", "room": "chat:py", "id": "m1", "body": {"text": "again"}}))
        again = await recv(ann, "ack")
        check("a retried send gets the first ack", again["seq"] == 1, again)

        for bad, code in [("{", "bad_request"), (json.dumps({"t": "send", "room": "chat:other", "id": "x", "body": 1}), "not_joined"),
                          (json.dumps({"t": "join", "room": "nope", "id": "y"}), "bad_request")]:
            await ann.send(bad)
            err = await recv(ann, "error")
            check(f"error {code}", err["code"] == code and isinstance(err["message"], str), err)
        await ann.send(b"\x00binary")
        err = await recv(ann, "error")
        check("binary frames are bad_request", err["code"] == "bad_request", err)
        await ann.send(json.dumps({"t": "ping", "id": "p"}))
        check("connection stays open after errors", await recv(ann, "pong") == {"t": "pong", "id": "p"})

    status, body = http(base, "POST", "/api/rooms/chat:py/messages", {"from": "svc", "body": "via http"})
    check("POST message", status == 200 and body == {"seq": 2}, (status, body))
    status, body = http(base, "GET", "/api/rooms/chat:py/messages?since=1")
    check("GET messages after since", status == 200 and [m["seq"] for m in body["messages"]] == [2], body)
    status, body = http(base, "GET", "/api/rooms/chat:py")
    check("GET room", status == 200 and body["seq"] == 2 and body["room"] == "chat:py" and "owner" in body, body)
    status, body = http(base, "GET", "/api/rooms/bad-id")
    check("bad room id is a JSON 400", status == 400 and body["error"]["code"] == "bad_request", body)
    status, body = http(base, "GET", "/api/unknown")
    check("unknown path is a JSON 404", status == 404 and body["error"]["code"] == "not_found", body)
    status, body = http(base, "GET", "/api/cluster")
    check("cluster lists 3 nodes", status == 200 and len(body["nodes"]) == 3 and "epoch" in body, body)


def main():
    binary = sys.argv[1]
    proc = subprocess.Popen([binary, "dev", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready = proc.stdout.readline().split()
        check("ready line", ready[:3] == ["ready", "dev", "dev"], ready)
        asyncio.run(run(ready[3]))
    finally:
        proc.terminate()
        code = proc.wait(timeout=10)
        check("SIGTERM exits 0", code == 0, code)
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    sys.exit(1 if RESULTS["failed"] else 0)


if __name__ == "__main__":
    main()
