"""A small HTTP/JSON client of the gateway (http.client, one keep-alive
connection per gateway and thread), HS256 tokens, and an SSE reader."""

import base64
import hashlib
import hmac
import http.client
import json
import socket
import time


def _b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token(secret, sub, admin=False, ttl=3600):
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    now = int(time.time())
    claims = {"sub": sub, "exp": now + ttl, "iat": now}
    if admin:
        claims["role"] = "admin"
    payload = _b64(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(sig)}"


class Answer:
    __slots__ = ("status", "body", "t_send", "t_recv")

    def __init__(self, status, body, t_send, t_recv):
        self.status, self.body, self.t_send, self.t_recv = status, body, t_send, t_recv

    @property
    def data(self):
        return self.body.get("data") if isinstance(self.body, dict) else None

    @property
    def ok(self):
        return 200 <= self.status < 300


class Client:
    """Requests from one thread. `t_send` is taken just before the request's
    first byte leaves, `t_recv` once the whole answer has arrived."""

    def __init__(self, ports, bearer, timeout=10.0):
        self.ports = ports
        self.bearer = bearer
        self.timeout = timeout
        self.conns = {}

    def _conn(self, port):
        conn = self.conns.get(port)
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout)
            self.conns[port] = conn
        return conn

    def request(self, port, method, path, body=None, headers=None):
        hdrs = {"Authorization": f"Bearer {self.bearer}"}
        raw = None
        if body is not None:
            raw = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        for attempt in (0, 1):
            conn = self._conn(port)
            t_send = time.monotonic()
            try:
                conn.request(method, path, body=raw, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                t_recv = time.monotonic()
            except (http.client.HTTPException, OSError):
                conn.close()
                self.conns.pop(port, None)
                # A kept-alive connection the server closed: once more on a
                # fresh one; a read is safe to repeat, and a write is
                # repeated only by callers that say so (idempotent ones).
                if attempt == 0 and method == "GET":
                    continue
                raise
            try:
                parsed = json.loads(data) if data else None
            except ValueError:
                parsed = None
            return Answer(resp.status, parsed, t_send, t_recv)
        raise OSError("unreachable")

    def abandon(self, port, method, path, body, headers, linger):
        """Sends a request and closes the socket `linger` seconds later,
        without reading the answer: a client that gave up mid-write."""
        raw = json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1",
                f"Authorization: Bearer {self.bearer}", "Content-Type: application/json",
                f"Content-Length: {len(raw)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + raw)
            if linger:
                time.sleep(linger)
            # RST, not FIN: the server sees the peer gone at once.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    def close(self):
        for c in self.conns.values():
            c.close()
        self.conns.clear()


class SseStream:
    """One SSE connection. `events()` yields (event_id, data, t_recv) until
    the stream ends or `stop()`; heartbeats are skipped."""

    def __init__(self, port, path, bearer, last_event_id=None, timeout=20.0):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        headers = {"Authorization": f"Bearer {bearer}", "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.conn.request("GET", path, headers=headers)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status

    def events(self):
        if self.status != 200:
            self.resp.read()
            return
        event_id, data = None, []
        while True:
            line = self.resp.fp.readline()
            if not line:
                return
            line = line.decode().rstrip("\r\n")
            if not line:
                if data:
                    yield event_id, "\n".join(data), time.monotonic()
                event_id, data = None, []
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                event_id = value
            elif field == "data":
                data.append(value)

    def stop(self):
        try:
            sock = self.conn.sock
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
