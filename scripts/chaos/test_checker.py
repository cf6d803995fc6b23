"""The checker on made-up histories: each kind of violation is caught, and
reads that overlap a write are not blamed. `make chaos` runs these first."""

import unittest

from checker import History, check

U, V, M = "u" * 36, "v" * 36, "m" * 36


def read(route, t_send, t_recv, *facts):
    return {"route": route, "t_send": t_send, "t_recv": t_recv, "facts": list(facts)}


def names(acks, sends=()):
    h = History()
    reg = h.registers[("name", U)]
    for t, v in acks:
        reg.ack(t, v)
        reg.sent(t - 0.1, v)
    for t, v in sends:
        reg.sent(t, v)
    return h


def chat(msgs, posts=()):
    h = History()
    h.histories[M] = [{"id": f"id{i}", "message": text} for i, text in enumerate(msgs)]
    for i, (text, t_send, t_ack) in enumerate(posts):
        h.posts.append({"meeting": M, "text": text, "poster": 0, "seq": i, "t_send": t_send,
                        "t_ack": t_ack, "id": f"id{msgs.index(text)}" if t_ack else None})
    return h


class Names(unittest.TestCase):
    def test_older_than_acknowledged_is_stale(self):
        h = names([(0, 0), (1, 1)])
        h.reads.append(read("user", 2, 2.1, ("name", U, 0)))
        r = check(h, "t")
        self.assertEqual((r.stale, r.stale_ack, r.reads), (1, 1, 1))

    def test_overlapping_the_write_is_not(self):
        h = names([(0, 0), (1, 1)])
        h.reads.append(read("user", 0.95, 1.2, ("name", U, 0)))
        h.reads.append(read("user", 2, 2.1, ("name", U, 1)))
        self.assertEqual(check(h, "t").stale, 0)

    def test_older_than_seen_is_stale(self):
        h = names([(0, 0)], sends=[(1, 1)])
        h.reads.append(read("user", 1.1, 1.2, ("name", U, 1)))  # the write in flight, seen
        h.reads.append(read("meeting", 1.3, 1.4, ("name", U, 0)))
        r = check(h, "t")
        self.assertEqual((r.stale, r.stale_seen), (1, 1))

    def test_seen_on_the_stream_counts(self):
        h = names([(0, 0)], sends=[(1, 1)])
        h.streams.append({"meeting": M, "subscriber": "s", "after": -1,
                          "events": [("e1", 1.2, (U, 1))]})
        h.histories[M] = [{"id": "e1", "message": "x"}]
        h.reads.append(read("chats", 1.3, 1.4, ("name", U, 0)))
        self.assertEqual(check(h, "t").stale, 1)


class Members(unittest.TestCase):
    def setUp(self):
        self.h = History()
        reg = self.h.registers[("member", U, M)]
        reg.sent(0, 1)
        reg.ack(0.1, 1)
        reg.sent(1, 2)  # leave
        reg.ack(1.1, 2)
        self.h.hosts[M] = V
        self.h.members[M].append(U)

    def test_joined_after_leave_acknowledged(self):
        self.h.reads.append(read("participants", 2, 2.1, ("member", U, M, True)))
        self.assertEqual(check(self.h, "t").stale, 1)

    def test_either_while_in_flight(self):
        self.h.reads.append(read("participants", 1.05, 1.2, ("member", U, M, True)))
        self.h.reads.append(read("participants", 1.05, 1.2, ("member", U, M, False)))
        self.assertEqual(check(self.h, "t").stale, 0)

    def test_count(self):
        self.h.reads.append(read("live", 2, 2.1, ("pcount", M, 2)))  # host + a left user
        self.h.reads.append(read("live", 2, 2.1, ("pcount", M, 1)))
        self.h.reads.append(read("live", 1.05, 1.2, ("pcount", M, 2)))
        self.assertEqual(check(self.h, "t").stale, 1)


class Chats(unittest.TestCase):
    def test_window_missing_an_acknowledged_post(self):
        h = chat(["a", "b", "c"], posts=[("c", 1, 1.1)])
        h.reads.append(read("chats", 2, 2.1, ("window", M, ["id0", "id1"])))
        h.reads.append(read("chats", 2, 2.1, ("window", M, ["id0", "id1", "id2"])))
        r = check(h, "t")
        self.assertEqual((r.stale, r.stale_ack), (1, 1))

    def test_window_behind_the_stream(self):
        h = chat(["a", "b"])
        h.streams.append({"meeting": M, "subscriber": "s", "after": -1,
                          "events": [("id0", 0.5, None), ("id1", 1.0, None)]})
        h.reads.append(read("chats", 1.01, 1.1, ("window", M, ["id0"])))
        r = check(h, "t")
        self.assertEqual((r.stale, r.stale_seen, r.lost), (1, 1, 0))

    def test_count_behind(self):
        h = chat(["a", "b"], posts=[("b", 1, 1.1)])
        h.reads.append(read("meeting", 2, 2.1, ("ccount", M, 1)))
        self.assertEqual(check(h, "t").stale, 1)

    def test_lost_and_duplicated_posts(self):
        h = chat(["a", "b", "b"], posts=[("a", 0, 0.1), ("b", 1, 1.1)])
        h.posts.append({"meeting": M, "text": "z", "poster": 0, "seq": 9, "t_send": 2,
                        "t_ack": 2.1, "id": "gone"})
        r = check(h, "t")
        self.assertEqual((r.lost, r.duplicated), (1, 1))

    def test_reordered_posts(self):
        h = chat(["b", "a"], posts=[("a", 0, 0.1), ("b", 1, 1.1)])
        self.assertEqual(check(h, "t").reordered, 1)

    def test_window_must_be_the_last_fifty(self):
        h = chat([f"m{i}" for i in range(60)])
        h.reads.append(read("chats", 1, 1.1, ("window", M, [f"id{i}" for i in range(50, 60)])))
        h.reads.append(read("chats", 1, 1.1, ("window", M, [f"id{i}" for i in range(10, 60)])))
        h.reads.append(read("chats", 1, 1.1, ("window", M, ["id11", "id10"])))
        r = check(h, "t")
        self.assertEqual((r.lost, r.reordered, r.stale), (1, 1, 0))

    def test_stream_gaps_repeats_and_tail(self):
        h = chat(["a", "b", "c", "d", "e"])
        ev = [("id1", 1, None), ("id1", 1, None), ("id3", 2, None)]
        h.streams.append({"meeting": M, "subscriber": "s", "after": 0, "events": ev})
        r = check(h, "t")
        # id2 skipped, id4 never delivered, id1 twice
        self.assertEqual((r.lost, r.duplicated), (2, 1))


if __name__ == "__main__":
    unittest.main()
