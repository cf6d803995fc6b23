"""The checker: judges one phase's recorded history after the fact.

The promise (SPEC §6, first bullet): once a write is acknowledged, or its
effect has been seen through any Huddle channel, no read from any replica
returns data older than it. Every client runs in this one process on one
monotonic clock, so "once" is real time: a read *sent* after some client
received an acknowledgement (or received an answer or SSE event showing the
write) must show that write or a later one. A read that overlaps the write
may show either.

Registers (values with a version, each written by one client in turn):
  ("name", user)            version n of the user's name `…-v<n>`
  ("member", user, meeting) version k of the user's participation: odd =
                            joined, even = left (version 1 = the setup join)
Chat meetings are judged against their final history H (commit order, read
from Postgres through the never-cached history route): a message is known
from its post's acknowledgement or from being seen (window, SSE, history,
count), and a window must be the last ≤ 50 of H up to a message no older
than anything known.

Facts a read can carry (tuples):
  ("name", user, version)
  ("member", user, meeting, active)
  ("pcount", meeting, count)         active participants (host included)
  ("window", meeting, [ids])         oldest first, the last ≤ 50
  ("newest", meeting, [ids])         a history page, newest first
  ("ccount", meeting, count)         messages posted
"""

import bisect
from collections import Counter, defaultdict

WINDOW = 50
EXAMPLES = 4


class Register:
    """Knowledge of one register over time: (t, version) events, answered as
    "the highest version known before t"."""

    def __init__(self, initial=-1):
        self.initial = initial
        self.events = []  # (t, version): acknowledgements and observations
        self.sends = []  # (t_send of the first attempt, version)
        self._times = self._prefix = self._send_times = self._send_prefix = None

    def ack(self, t, version):
        self.events.append((t, version))

    def sent(self, t, version):
        self.sends.append((t, version))

    def seal(self):
        self.events.sort()
        self._times = [t for t, _ in self.events]
        best, self._prefix = self.initial, []
        for _, v in self.events:
            best = max(best, v)
            self._prefix.append(best)
        self.sends.sort()
        self._send_times = [t for t, _ in self.sends]
        best, self._send_prefix = self.initial, []
        for _, v in self.sends:
            best = max(best, v)
            self._send_prefix.append(best)

    def known(self, t):
        i = bisect.bisect_left(self._times, t) - 1
        return self._prefix[i] if i >= 0 else self.initial

    def since(self, version):
        """When `version` (or a later one) first became known."""
        for t, best in zip(self._times, self._prefix):
            if best >= version:
                return t
        return None

    def max_sent(self, t):
        """The highest version whose write had been sent before t (or is
        known by then: a setup write counts as sent)."""
        i = bisect.bisect_left(self._send_times, t) - 1
        sent = self._send_prefix[i] if i >= 0 else self.initial
        return max(sent, self.known(t))


def member_states(lo, hi):
    """States a participation register can show for versions lo..hi."""
    return {v % 2 == 1 for v in range(max(lo, 0), hi + 1)} if hi >= lo else set()


class Result:
    def __init__(self, name):
        self.name = name
        self.operations = 0
        self.reads = 0  # HTTP reads with at least one fact judged
        self.writes = 0  # acknowledged writes
        self.events = 0  # SSE events judged
        self.errors = 0
        self.stale = 0
        self.stale_ack = 0  # older than an acknowledged write
        self.stale_seen = 0  # older only than something already seen
        self.lost = 0
        self.duplicated = 0
        self.reordered = 0
        self.stale_routes = Counter()
        self.examples = defaultdict(list)
        self.skipped = None
        self.findings = []  # every finding, for the run directory

    def example(self, kind, text):
        if len(self.examples[kind]) < EXAMPLES:
            self.examples[kind].append(text)
        if len(self.findings) < 5000:
            self.findings.append(f"{kind}: {text}")

    @property
    def failed(self):
        return bool(self.stale or self.lost or self.duplicated or self.reordered)


class History:
    """What the clients recorded in one phase (filled by clients.py)."""

    def __init__(self):
        self.registers = defaultdict(Register)  # key -> Register
        self.hosts = {}  # meeting -> host user
        self.members = defaultdict(list)  # meeting -> users with a member register
        self.reads = []  # dicts: route, t_send, t_recv, facts
        self.posts = []  # dicts: meeting, text, poster, seq, t_send, t_ack, id
        self.writes_acked = 0
        self.operations = 0
        self.errors = 0
        self.histories = {}  # meeting -> [message dicts], oldest first
        self.streams = []  # dicts: meeting, subscriber, after (index), events
        self.abandoned = 0
        self.t0 = 0.0  # when the phase's run began (for examples)


class ChatRegisters(defaultdict):
    """Per meeting, a Register over message indices in H; `acked` holds the
    same knowledge from acknowledgements alone."""
    t0 = 0.0
    acked = None


def _chat_knowledge(hist, index):
    regs = ChatRegisters(lambda: Register(initial=-1))
    regs.acked = defaultdict(lambda: Register(initial=-1))
    for p in hist.posts:
        if p["t_ack"] is not None and p["id"] in index.get(p["meeting"], {}):
            i = index[p["meeting"]][p["id"]]
            regs[p["meeting"]].ack(p["t_ack"], i)
            regs.acked[p["meeting"]].ack(p["t_ack"], i)
    for r in hist.reads:
        for f in r["facts"]:
            if f[0] == "window" and f[2]:
                i = index[f[1]].get(f[2][-1])
                if i is not None:
                    regs[f[1]].ack(r["t_recv"], i)
            elif f[0] == "newest" and f[2]:
                i = index[f[1]].get(f[2][0])
                if i is not None:
                    regs[f[1]].ack(r["t_recv"], i)
            elif f[0] == "ccount" and f[2] > 0:
                regs[f[1]].ack(r["t_recv"], f[2] - 1)
    for s in hist.streams:
        for eid, t_recv, _ in s["events"]:
            i = index[s["meeting"]].get(eid)
            if i is not None:
                regs[s["meeting"]].ack(t_recv, i)
    for reg in (*regs.values(), *regs.acked.values()):
        reg.seal()
    regs.t0 = hist.t0
    return regs


def _observe(hist):
    """Adds what each read showed to the registers' knowledge: a value seen
    is known from the moment it arrived."""
    acked = {}
    for key, reg in hist.registers.items():
        reg.seal()
        acked[key] = reg
    seen = []
    for r in hist.reads:
        for f in r["facts"]:
            if f[0] == "name":
                seen.append((("name", f[1]), r["t_recv"], f[2]))
            elif f[0] == "member":
                reg = acked.get(("member", f[1], f[2]))
                if reg is None:
                    continue
                lo, hi = reg.known(r["t_send"]), reg.max_sent(r["t_recv"])
                # The lowest version that shows this state: exact when it
                # is the write in flight, never more than what was shown.
                for v in range(max(lo, 0), hi + 1):
                    if (v % 2 == 1) == f[3]:
                        seen.append((("member", f[1], f[2]), r["t_recv"], v))
                        break
    for s in hist.streams:
        for _, t_recv, name in s["events"]:
            if name is not None:
                seen.append((("name", name[0]), t_recv, name[1]))
    # The acknowledgement-only view tells "older than an acknowledged
    # write" from "older than something already shown".
    frozen = {}
    for key, reg in acked.items():
        copy = Register(reg.initial)
        copy.events, copy.sends = list(reg.events), list(reg.sends)
        copy.seal()
        frozen[key] = copy
    for key, t, v in seen:
        if key in hist.registers:
            hist.registers[key].ack(t, v)
    for reg in hist.registers.values():
        reg.seal()
    return frozen


def check(hist, name):
    res = Result(name)
    res.operations = hist.operations
    res.writes = hist.writes_acked
    res.errors = hist.errors
    index = {m: {msg["id"]: i for i, msg in enumerate(h)} for m, h in hist.histories.items()}
    ack_view = _observe(hist)
    chats = _chat_knowledge(hist, index)
    _check_history(hist, index, res)
    for r in hist.reads:
        judged, stale = 0, []
        for f in r["facts"]:
            verdict = _judge(hist, ack_view, chats, index, r, f, res)
            if verdict is None:
                continue
            judged += 1
            if verdict:
                stale.append(verdict)
        if judged:
            res.reads += 1
        if stale:
            res.stale += 1
            res.stale_routes[r["route"]] += 1
            if any(kind == "ack" for kind, _ in stale):
                res.stale_ack += 1
            else:
                res.stale_seen += 1
            res.example("stale", f"{r['route']} via {r.get('gw', '?')} sent "
                        f"+{r['t_send'] - hist.t0:.3f}s: " + "; ".join(t for _, t in stale))
    _check_streams(hist, index, res)
    _check_stream_names(hist, ack_view, res)
    return res


def _check_stream_names(hist, ack_view, res):
    """A streamed message's poster card is composed after its post
    committed, so it must show every name known before the post was sent."""
    sent = {p["id"]: p["t_send"] for p in hist.posts if p["id"]}
    for s in hist.streams:
        for eid, _, name in s["events"]:
            if name is None or eid not in sent:
                continue
            read = {"route": "sse", "t_send": sent[eid], "t_recv": sent[eid]}
            verdict = _judge(hist, ack_view, None, {}, read, ("name", *name), res)
            if verdict:
                res.stale += 1
                res.stale_routes["sse"] += 1
                if verdict[0] == "ack":
                    res.stale_ack += 1
                else:
                    res.stale_seen += 1
                res.example("stale", f"sse {s['subscriber']}: {verdict[1]}")


def _judge(hist, ack_view, chats, index, r, f, res):
    """None when the fact cannot be judged; "" when fresh; otherwise
    (kind, text) with kind "ack" (older than an acknowledged write) or
    "seen" (older only than a value some answer had shown)."""
    ts, tr = r["t_send"], r["t_recv"]
    kind = f[0]
    if kind == "name":
        key = ("name", f[1])
        reg = hist.registers.get(key)
        if reg is None:
            return None
        known = reg.known(ts)
        if f[2] >= known:
            return ""
        acked = ack_view[key].known(ts)
        how = "ack" if acked > f[2] else "seen"
        when = ack_view[key].since(acked) if how == "ack" else reg.since(known)
        return (how, f"name of {f[1][:8]} v{f[2]} < v{known} "
                     f"({'acknowledged' if how == 'ack' else 'seen'} at +{when - hist.t0:.3f}s)")
    if kind == "member":
        key = ("member", f[1], f[2])
        reg = hist.registers.get(key)
        if reg is None:
            return None
        lo, hi = reg.known(ts), reg.max_sent(tr)
        if f[3] in member_states(lo, hi):
            return ""
        how = "ack" if f[3] not in member_states(ack_view[key].known(ts), hi) else "seen"
        state = "joined" if f[3] else "left"
        when = reg.since(lo)
        return (how, f"{f[1][:8]} shown {state} in {f[2][:8]} "
                     f"(v{lo} known since +{when - hist.t0:.3f}s)")
    if kind == "pcount":
        return _judge_pcount(hist, ack_view, r, f)
    if kind in ("window", "newest", "ccount"):
        return _judge_chat(chats, index, r, f, res)
    return None


def _judge_pcount(hist, ack_view, r, f):
    meeting, count = f[1], f[2]
    if meeting not in hist.hosts:
        return None
    ts, tr = r["t_send"], r["t_recv"]
    low = high = 1  # the host
    low_ack = high_ack = 1
    for user in hist.members[meeting]:
        key = ("member", user, meeting)
        reg = hist.registers[key]
        states = member_states(reg.known(ts), reg.max_sent(tr))
        acks = member_states(ack_view[key].known(ts), reg.max_sent(tr))
        low += 1 if states == {True} else 0
        high += 1 if True in states else 0
        low_ack += 1 if acks == {True} else 0
        high_ack += 1 if True in acks else 0
    if low <= count <= high:
        return ""
    how = "ack" if not low_ack <= count <= high_ack else "seen"
    return (how, f"participant count of {meeting[:8]} {count} outside [{low}, {high}]")


def _judge_chat(chats, index, r, f, res):
    meeting, ts = f[1], r["t_send"]
    if meeting not in index:
        return None
    idx = index[meeting]
    known = chats[meeting].known(ts) if meeting in chats else -1
    acked = chats.acked[meeting].known(ts) if meeting in chats.acked else -1
    if f[0] == "ccount":
        return "" if f[2] >= known + 1 else (
            "ack" if f[2] < acked + 1 else "seen",
            f"chat count of {meeting[:8]} {f[2]} < {known + 1} known")
    t0 = chats.t0
    ids = f[2]
    positions = [idx.get(i) for i in ids]
    if f[0] == "newest":
        positions = positions[::-1]
    if None in positions:
        res.lost += 1
        res.example("lost", f"{r['route']} shows a message not in history")
        return None
    if len(set(positions)) != len(positions):
        res.duplicated += 1
        res.example("duplicated", f"{r['route']} of {meeting[:8]} repeats a message")
        return None
    if positions != sorted(positions):
        res.reordered += 1
        res.example("reordered", f"{r['route']} of {meeting[:8]} out of order: {positions}")
        return None
    end = positions[-1] if positions else -1
    if positions and positions != list(range(positions[0], end + 1)):
        res.lost += 1
        res.example("lost", f"{r['route']} of {meeting[:8]} has a gap: {positions}")
        return None
    if f[0] == "window" and len(positions) != min(WINDOW, end + 1):
        res.lost += 1
        res.example("lost", f"window of {meeting[:8]} holds {len(positions)} "
                    f"messages up to #{end}, not the last {min(WINDOW, end + 1)}")
        return None
    if end >= known:
        return ""
    when = chats[meeting].since(known)
    return ("ack" if end < acked else "seen",
            f"{f[0]} of {meeting[:8]} ends at #{end}, #{known} known since +{when - t0:.3f}s")


def _check_history(hist, index, res):
    """Every acknowledged post is in its meeting's history exactly once, in
    the order its poster wrote it."""
    texts = {m: Counter(msg["message"] for msg in h) for m, h in hist.histories.items()}
    for m, counter in texts.items():
        for text, n in counter.items():
            if n > 1:
                res.duplicated += n - 1
                res.example("duplicated", f"{text!r} is {n} times in {m[:8]}'s history")
    last = {}
    for p in sorted(hist.posts, key=lambda p: p["t_send"]):
        if p["t_ack"] is None:
            continue
        m = p["meeting"]
        i = index.get(m, {}).get(p["id"])
        if i is None:
            res.lost += 1
            res.example("lost", f"acknowledged post {p['text']!r} not in history")
            continue
        prev = last.get((m, p["poster"]))
        if prev is not None and prev[1] < p["t_send"] and prev[0] > i:
            res.reordered += 1
            res.example("reordered", f"{p['text']!r} before the same poster's earlier post")
        last[(m, p["poster"])] = (i, p["t_ack"])


def _check_streams(hist, index, res):
    """Each subscriber, across its reconnections (Last-Event-ID), receives
    exactly the messages after its starting point, in order."""
    for s in hist.streams:
        idx = index.get(s["meeting"], {})
        expect = s["after"] + 1
        seen = set()
        for eid, _, _ in s["events"]:
            res.events += 1
            i = idx.get(eid)
            if i is None:
                res.lost += 1
                res.example("lost", f"SSE event {eid[:8]} not in history")
                continue
            if i in seen:
                res.duplicated += 1
                res.example("duplicated", f"SSE {s['subscriber']} got #{i} twice")
                continue
            if i < expect:
                res.reordered += 1
                res.example("reordered", f"SSE {s['subscriber']} got #{i} after #{expect - 1}")
                seen.add(i)
                continue
            if i > expect:
                res.lost += i - expect
                res.example("lost", f"SSE {s['subscriber']} skipped #{expect}..#{i - 1}")
            seen.add(i)
            expect = i + 1
        missing = len(hist.histories.get(s["meeting"], [])) - expect
        if missing > 0:
            res.lost += missing
            res.example("lost", f"SSE {s['subscriber']} never got the last {missing} message(s)")
