"""Logical clients: each owns a user and hosts a meeting, writes versioned
values (renames `…-v<n>`, joins and leaves, numbered chat posts), reads
every route that shows them through both gateways, and listens on SSE.
Everything is recorded into a checker.History; nothing is judged here."""

import json
import random
import re
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import api
from checker import History

NAME = re.compile(r"^p(\d+)c(\d+)-v(\d+)$")
WRITE_SHARE = 0.14  # of a worker's requests; writes cost about 3 reads
REACT = 0.25  # share of SSE events followed at once by a window read


def parallel(fn, n):
    """fn(0..n-1) on n threads; the results in order, the first error raised."""
    out, errors = [None] * n, []

    def run(i):
        try:
            out[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - re-raised below
            errors.append(e)
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


class Phase:
    """One phase's entities and workload: fresh users and meetings, so what
    one fault left behind (a stale key until its TTL) is never counted
    against the next."""

    def __init__(self, topo, number, n_clients, seed, cancel=False, t0=0.0):
        self.topo = topo
        self.number = number
        self.n = n_clients
        self.rng = random.Random(seed)
        self.cancel = cancel
        self.ports = [topo.http[g] for g in ("gw0", "gw1")]
        self.hist = History()
        self.hist.t0 = t0
        self.lock = threading.Lock()
        self.stop_writes = threading.Event()
        self.stop_all = threading.Event()
        self.users = []  # user ids, by client
        self.tokens = []
        self.live = []  # meeting ids hosted, by client (index 0 = shared chat)
        self.codes = []
        self.scheduled = []
        self.toggles = {}  # client -> [meeting ids it joins and leaves]
        self.name_of = {}
        self.threads = []
        self.subscribers = []
        self.run_id = uuid.uuid4().hex[:8]
        self.user_set = set()

    def count(self, field, n=1):
        with self.lock:
            setattr(self.hist, field, getattr(self.hist, field) + n)

    # ------------------------------------------------------------ setup
    def _must(self, client, method, path, body=None, headers=None):
        for _ in range(50):
            try:
                a = client.request(self.ports[0], method, path, body, headers)
            except OSError:
                time.sleep(0.1)
                continue
            if a.ok:
                return a
            if a.status < 500:
                raise RuntimeError(f"setup {method} {path}: {a.status} {a.body}")
            time.sleep(0.1)
        raise RuntimeError(f"setup {method} {path}: no answer")

    def setup(self):
        """Users, meetings, joins and a first message per meeting; each
        step runs for every client at once (setup eats into the budget)."""
        h = self.hist
        admins = [api.Client(self.ports, api.token(self.topo.jwt_secret, "admin", admin=True))
                  for _ in range(self.n)]

        def user(c):
            a = self._must(admins[c], "POST", "/api/users", {
                "name": f"p{self.number}c{c}-v0",
                "email": f"p{self.number}c{c}-{self.run_id}@chaos.test"})
            admins[c].close()
            reg = h.registers[("name", a.data["id"])]
            reg.sent(a.t_send, 0)
            reg.ack(a.t_recv, 0)
            return a.data["id"]
        self.users = parallel(user, self.n)
        self.user_set = set(self.users)
        self.tokens = [api.token(self.topo.jwt_secret, u) for u in self.users]
        self.clients = [api.Client(self.ports, t) for t in self.tokens]
        when = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

        def meetings(c):
            cl = self.clients[c]
            live = self._must(cl, "POST", "/api/meetings",
                              {"title": f"p{self.number}m{c}", "status": "LIVE"}).data
            sched = self._must(cl, "POST", "/api/meetings",
                               {"title": f"p{self.number}s{c}", "scheduledAt": when}).data
            return live["id"], live["inviteCode"], sched["id"]
        made = parallel(meetings, self.n)
        self.live = [m for m, _, _ in made]
        self.codes = [code for _, code, _ in made]
        self.scheduled = [s for _, _, s in made]
        for c, m in enumerate(self.live):
            h.hosts[m] = self.users[c]
            h.members[m] = [self.users[x] for x in range(self.n) if x != c]
            for x in range(self.n):
                if x != c:
                    h.registers[("member", self.users[x], m)]

        def joins(c):
            for x, m in enumerate(self.live):
                if x != c:
                    a = self._must(self.clients[c], "POST", "/api/meetings/join",
                                   {"inviteCode": self.codes[x]})
                    reg = h.registers[("member", self.users[c], m)]
                    reg.sent(a.t_send, 1)
                    reg.ack(a.t_recv, 1)
        parallel(joins, self.n)
        self.toggles = {c: [m for x, m in enumerate(self.live) if x not in (0, c)]
                        for c in range(self.n)}

        # A first message per meeting, so every stream starts from a known
        # message (Last-Event-ID) and nothing it should get is ambiguous.
        def marker(c):
            return self._must(self.clients[c], "POST", f"/api/meetings/{self.live[c]}/chats",
                              {"message": f"p{self.number}-start-{c}"}).data["id"]
        self.marker = dict(zip(self.live, parallel(marker, self.n)))
        for c in range(self.n):
            self.subscribers.append(Subscriber(self, c, self.live[0], c % 2))
            if c:
                self.subscribers.append(Subscriber(self, c, self.live[c], (c + 1) % 2))

    # ------------------------------------------------------------ run
    def start(self):
        for s in self.subscribers:
            s.start()
        for c in range(self.n):
            w = Worker(self, c, random.Random(self.rng.random()))
            t = threading.Thread(target=w.run, name=f"client-{c}", daemon=True)
            self.threads.append(t)
            t.start()

    def finish(self, drain=6.0):
        """Stops the writers, reads the histories, lets the streams catch
        up (bounded), stops them and removes the phase's meetings."""
        self.stop_writes.set()
        for t in self.threads:
            t.join(timeout=30)
        histories = parallel(lambda c: self._history(self.clients[c], self.live[c]), self.n)
        self.hist.histories = dict(zip(self.live, histories))
        deadline = time.monotonic() + drain
        for s in self.subscribers:
            target = self.hist.histories[s.meeting][-1]["id"]
            while s.last != target and time.monotonic() < deadline:
                time.sleep(0.02)
        self.stop_all.set()
        for s in self.subscribers:
            s.stop()
        for s in self.subscribers:
            s.thread.join(timeout=10)
            self.hist.streams.append({
                "meeting": s.meeting, "subscriber": s.label,
                "after": 0, "events": s.events, "reconnects": s.reconnects})
            self.hist.operations += len(s.events)
        for s in self.subscribers:
            s.client.close()

        def delete(c):
            for m in (self.live[c], self.scheduled[c]):
                try:
                    self.clients[c].request(self.ports[0], "DELETE", f"/api/meetings/{m}")
                except OSError:
                    pass
            self.clients[c].close()
        parallel(delete, self.n)

    def _history(self, cl, meeting):
        out, before = [], None
        while True:
            path = f"/api/meetings/{meeting}/chats/history?limit=100"
            if before:
                path += f"&before={before}"
            a = self._must(cl, "GET", path)
            out.extend(a.data["messages"])
            before = a.data.get("nextBefore")
            if not before or not a.data["messages"]:
                break
        out.reverse()
        return out

    # ------------------------------------------------------------ parsing
    def name_fact(self, user):
        """("name", id, version) for one of this phase's users, else None."""
        if not isinstance(user, dict):
            return None
        m = NAME.match(user.get("name") or "")
        if not m or int(m.group(1)) != self.number or user.get("id") not in self.user_set:
            return None
        return ("name", user["id"], int(m.group(3)))


    def window_facts(self, d, meeting):
        names = [f for f in (self.name_fact(msg.get("user")) for msg in d) if f]
        return names + [("window", meeting, [msg["id"] for msg in d])]


class Worker:
    def __init__(self, phase, c, rng):
        self.p = phase
        self.c = c
        self.rng = rng
        self.cl = api.Client(phase.ports, phase.tokens[c])
        self.me = phase.users[c]
        self.version = 0
        self.member = {m: 1 for m in phase.toggles[c]}
        self.seq = {m: 0 for m in phase.live}
        self.posts_to = [phase.live[0]] + ([phase.live[c]] if c else [])
        self.reads = phase.hist.reads

    def gw(self):
        return self.rng.choice(self.p.ports)

    def run(self):
        try:
            while not self.p.stop_writes.is_set():
                if self.rng.random() < WRITE_SHARE:
                    self.write()
                else:
                    self.read()
        finally:
            self.cl.close()

    # ------------------------------------------------------------ writes
    def _send(self, method, path, body, key=None):
        """Sends until acknowledged (or definitely refused); in the cancel
        phase the first attempt is often abandoned mid-flight. Returns
        (t_first_send, answer or None)."""
        headers = {"Idempotency-Key": key} if key else {}
        t_first = time.monotonic()
        # Only a keyed write is abandoned and re-sent: without a key (a
        # rename, a leave) the abandoned original may still land after the
        # retry and after the client's next write, undoing it — HTTP's
        # hazard for any retried PATCH, not a cache's (ARCHITECTURE.md,
        # known gaps).
        if self.p.cancel and key and self.rng.random() < 0.6:
            try:
                self.cl.abandon(self.gw(), method, path, body, headers, self.rng.random() * 0.02)
                self.p.count("abandoned")
            except OSError:
                pass
            self.p.count("operations")
        give_up = time.monotonic() + 30
        while time.monotonic() < give_up:
            self.p.count("operations")
            try:
                a = self.cl.request(self.gw(), method, path, body, headers)
            except OSError:
                self.p.count("errors")
                time.sleep(0.05)
                continue
            if a.ok:
                self.p.count("writes_acked")
                return t_first, a
            self.p.count("errors")
            if a.status < 500 and a.status != 429:
                return t_first, None
            time.sleep(0.05)
        return t_first, None

    def write(self):
        r = self.rng.random()
        if r < 0.3:
            self.rename()
        elif r < 0.7 or not self.member:
            self.post()
        else:
            self.toggle()

    def rename(self):
        self.version += 1
        v = self.version
        reg = self.p.hist.registers[("name", self.me)]
        t0 = time.monotonic()
        reg.sent(t0, v)
        _, a = self._send("PATCH", f"/api/users/{self.me}", {"name": f"p{self.p.number}c{self.c}-v{v}"})
        if a is not None:
            reg.ack(a.t_recv, v)

    def toggle(self):
        m = self.rng.choice(sorted(self.member))
        v = self.member[m] + 1
        self.member[m] = v
        reg = self.p.hist.registers[("member", self.me, m)]
        reg.sent(time.monotonic(), v)
        if v % 2:
            code = self.p.codes[self.p.live.index(m)]
            key = f"join-{self.p.run_id}-{self.c}-{v}"
            _, a = self._send("POST", "/api/meetings/join", {"inviteCode": code}, key)
        else:
            _, a = self._send("POST", f"/api/meetings/{m}/leave", {})
        if a is not None:
            reg.ack(a.t_recv, v)
            if v % 2 and isinstance(a.data, dict):
                f = self.p.name_fact((a.data.get("meeting") or {}).get("host"))
                if f:
                    self.reads.append({"route": "join-answer", "gw": "-", "t_send": a.t_send,
                                       "t_recv": a.t_recv, "facts": [f]})

    def post(self):
        m = self.rng.choice(self.posts_to)
        self.seq[m] += 1
        k = self.seq[m]
        text = f"p{self.p.number}c{self.c}-n{k}"
        rec = {"meeting": m, "text": text, "poster": self.c, "seq": k,
               "t_send": time.monotonic(), "t_ack": None, "id": None}
        self.p.hist.posts.append(rec)
        _, a = self._send("POST", f"/api/meetings/{m}/chats", {"message": text},
                          f"post-{self.p.run_id}-{self.c}-{k}-{m[:8]}")
        if a is not None and isinstance(a.data, dict):
            rec["t_ack"], rec["id"] = a.t_recv, a.data.get("id")
            f = self.p.name_fact(a.data.get("user"))
            if f:
                self.reads.append({"route": "post-answer", "gw": "-", "t_send": a.t_send,
                                   "t_recv": a.t_recv, "facts": [f]})

    # ------------------------------------------------------------ reads
    # History is never cached (a Postgres read, the costliest): rarely.
    ROUTES = (("user", 16), ("meeting", 16), ("live", 10), ("scheduled", 8),
              ("participants", 12), ("participations", 10), ("chats", 24), ("history", 4))

    def read(self):
        route = self.rng.choices([r for r, _ in self.ROUTES], [w for _, w in self.ROUTES])[0]
        p = self.p
        meeting = self.rng.choice(p.live)
        path = {
            "user": f"/api/users/{self.rng.choice(p.users)}",
            "meeting": f"/api/meetings/{meeting}",
            "live": "/api/meetings/live",
            "scheduled": "/api/meetings/scheduled",
            "participants": f"/api/meetings/{meeting}/participants?limit=100",
            "participations": f"/api/users/{self.me}/participations",
            "chats": f"/api/meetings/{meeting}/chats",
            "history": f"/api/meetings/{meeting}/chats/history?limit=50",
        }[route]
        gw = self.gw()
        p.count("operations")
        try:
            a = self.cl.request(gw, "GET", path)
        except OSError:
            p.count("errors")
            return
        if not a.ok or a.data is None:
            p.count("errors")
            return
        facts = getattr(self, f"facts_{route}")(a.data, meeting)
        self.reads.append({"route": route, "gw": "gw0" if gw == p.ports[0] else "gw1",
                           "t_send": a.t_send, "t_recv": a.t_recv, "facts": facts})

    def _names(self, users):
        return [f for f in map(self.p.name_fact, users) if f]

    def facts_user(self, d, _):
        return self._names([d])

    def facts_meeting(self, d, meeting):
        facts = self._names([d.get("host")])
        count = d.get("_count") or {}
        if count.get("participants") is not None:
            facts.append(("pcount", meeting, count["participants"]))
        if count.get("chatMessages") is not None:
            facts.append(("ccount", meeting, count["chatMessages"]))
        return facts

    def facts_live(self, d, _):
        facts = []
        for m in d:
            if m.get("id") in self.p.hist.hosts:
                facts += self._names([m.get("host")])
                n = (m.get("_count") or {}).get("participants")
                if n is not None:
                    facts.append(("pcount", m["id"], n))
        return facts

    def facts_scheduled(self, d, _):
        return self._names([m.get("host") for m in d if m.get("id") in self.p.scheduled])

    def facts_participants(self, d, meeting):
        facts = self._names([row.get("user") for row in d])
        active = {}
        for row in d:
            active[row["userId"]] = active.get(row["userId"], False) or row.get("leftAt") is None
        for user, is_active in active.items():
            if ("member", user, meeting) in self.p.hist.registers:
                facts.append(("member", user, meeting, is_active))
        return facts

    def facts_participations(self, d, _):
        facts = self._names([(row.get("meeting") or {}).get("host") for row in d])
        active = {}
        for row in d:
            m = row.get("meetingId")
            active[m] = active.get(m, False) or row.get("leftAt") is None
        for m, is_active in active.items():
            if ("member", self.me, m) in self.p.hist.registers:
                facts.append(("member", self.me, m, is_active))
        return facts

    def facts_chats(self, d, meeting):
        return self.p.window_facts(d, meeting)

    def facts_history(self, d, meeting):
        msgs = d.get("messages") or []
        return self._names([msg.get("user") for msg in msgs]) + [
            ("newest", meeting, [msg["id"] for msg in msgs])]


class Subscriber:
    """One logical SSE listener: reconnects (alternating gateways) with
    Last-Event-ID, so its events must add up to the meeting's history."""

    def __init__(self, phase, c, meeting, gw):
        self.p = phase
        self.meeting = meeting
        self.gw = gw
        self.label = f"c{c}@{meeting[:8]}"
        self.token = phase.tokens[c]
        self.last = phase.marker[meeting]
        self.events = []
        self.reconnects = 0
        self.stream = None
        self.rng = random.Random(phase.rng.random())
        self.client = api.Client(phase.ports, self.token)
        self.thread = threading.Thread(target=self.run, name=f"sse-{self.label}", daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        s = self.stream
        if s is not None:
            s.stop()

    def react(self):
        """What a UI does on an event: show the chat, read from the other
        gateway. The window must hold the message just streamed."""
        port = self.p.ports[self.gw ^ 1]
        self.p.count("operations")
        try:
            a = self.client.request(port, "GET", f"/api/meetings/{self.meeting}/chats")
        except OSError:
            self.p.count("errors")
            return
        if not a.ok or not isinstance(a.data, list):
            self.p.count("errors")
            return
        self.p.hist.reads.append({"route": "chats-after-sse", "gw": f"gw{self.gw ^ 1}",
                                  "t_send": a.t_send, "t_recv": a.t_recv,
                                  "facts": self.p.window_facts(a.data, self.meeting)})

    def run(self):
        path = f"/api/meetings/{self.meeting}/chats/stream"
        while not self.p.stop_all.is_set():
            try:
                self.stream = api.SseStream(self.p.ports[self.gw], path, self.token,
                                            last_event_id=self.last, timeout=5)
                for eid, data, t_recv in self.stream.events():
                    name = None
                    try:
                        name = self.p.name_fact(json.loads(data).get("user"))
                    except ValueError:
                        pass
                    self.events.append((eid, t_recv, name[1:] if name else None))
                    self.last = eid
                    if self.rng.random() < REACT and not self.p.stop_writes.is_set():
                        self.react()
            except (OSError, ValueError, AttributeError):
                pass
            finally:
                if self.stream is not None:
                    self.stream.stop()
            if self.p.stop_all.is_set():
                break
            self.reconnects += 1
            self.gw ^= 1
            time.sleep(0.05)
