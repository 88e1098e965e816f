#!/usr/bin/env python3
"""test_wan.py - the WAN emulation harness measured with real TCP: delay,
rate, loss and cuts do what they say, commands are checked, and every
namespace it made is gone afterwards, also when the block fails and when the
harness process itself was killed."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import wan  # noqa: E402
from wan import Wan  # noqa: E402

# A TCP sink: accepts one connection on port 9000, reads to its end, prints the bytes.
SINK = textwrap.dedent("""
    import socket
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 9000))
    s.listen()
    print("listening", flush=True)
    c, _ = s.accept()
    n = 0
    while True:
        d = c.recv(1 << 20)
        if not d:
            break
        n += len(d)
    print(n, flush=True)
""")

# Connects, sends N bytes, prints the seconds the connect took and the whole transfer.
SOURCE = textwrap.dedent("""
    import socket, sys, time
    t0 = time.monotonic()
    s = socket.create_connection((sys.argv[1], 9000), timeout=float(sys.argv[3]))
    t1 = time.monotonic()
    s.sendall(b"x" * int(sys.argv[2]))
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    print(t1 - t0, time.monotonic() - t0)
""")


def ours():
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return [l.split()[0] for l in r.stdout.splitlines()
            if l.startswith(wan.PREFIX + str(os.getpid()) + "-")]


def transfer(w, src, dst, nbytes, timeout=20):
    sink = w.popen(dst, [sys.executable, "-c", SINK], stdout=subprocess.PIPE)
    assert sink.stdout.readline().strip() == b"listening"
    r = w.run(src, [sys.executable, "-c", SOURCE, w.addr(dst), str(nbytes), str(timeout)],
              timeout=timeout + 10)
    if r.returncode:  # it never connected: the sink still waits
        w.kill(sink)
        return None, None, 0
    got = int(sink.stdout.readline() or 0)
    sink.wait(timeout=10)
    connect, total = map(float, r.stdout.split())
    return connect, total, got


@unittest.skipIf(Wan.available(), "the WAN harness %s" % Wan.available())
class WanTest(unittest.TestCase):
    def tearDown(self):
        self.assertEqual(ours(), [], "namespaces left behind")

    def test_delay_makes_the_round_trip(self):
        with Wan(["a", "b"]) as w:
            connect0, _, _ = transfer(w, "a", "b", 1000)
            w.both("a", "b", delay=40)
            connect, _, got = transfer(w, "a", "b", 1000)
        self.assertEqual(got, 1000)
        self.assertLess(connect0, 0.02, "without delay a connect takes %.3f s" % connect0)
        # The SYN and its SYN-ACK: one round trip, 80 ms.
        self.assertGreaterEqual(connect, 0.079)
        self.assertLess(connect, 0.2)

    def test_the_rate_cap_holds_and_tcp_fills_it(self):
        with Wan(["a", "b"]) as w:
            w.both("a", "b", delay=5, rate="20mbit")
            _, total, got = transfer(w, "a", "b", 5 << 20)
        self.assertEqual(got, 5 << 20)
        mbit = got * 8 / total / 1e6
        self.assertLessEqual(mbit, 20.5, "%.1f Mbit/s through a 20 Mbit/s link" % mbit)
        self.assertGreater(mbit, 10, "TCP reached only %.1f Mbit/s of 20" % mbit)

    def test_loss_is_random_and_tcp_recovers(self):
        with Wan(["a", "b"]) as w:
            w.both("a", "b", delay=2, loss=0.05)
            _, _, got = transfer(w, "a", "b", 2 << 20)
            st = w.stats()[("a", "b")]
        self.assertEqual(got, 2 << 20, "TCP did not deliver everything through 5% loss")
        share = st["lost"] / (st["lost"] + st["passed"])
        self.assertGreater(share, 0.02)
        self.assertLess(share, 0.09)

    def test_a_cut_drops_everything_until_it_heals(self):
        with Wan(["a", "b", "c"]) as w:
            w.cut("b")
            connect, _, _ = transfer(w, "a", "b", 1000, timeout=1.5)
            self.assertIsNone(connect, "a connection crossed a cut")
            # Only b is cut: a and c still talk.
            connect, _, got = transfer(w, "a", "c", 1000)
            self.assertEqual(got, 1000)
            w.heal("b")
            connect, _, got = transfer(w, "a", "b", 1000)
            self.assertEqual(got, 1000)
            self.assertGreater(w.stats()[("a", "b")]["cut"], 0)

    def test_a_pair_can_be_cut_alone(self):
        with Wan(["a", "b", "c"]) as w:
            w.cut("a", "b")
            self.assertIsNone(transfer(w, "a", "b", 100, timeout=1.0)[0])
            self.assertEqual(transfer(w, "c", "b", 100)[2], 100)

    def test_bad_commands_are_refused_with_reasons(self):
        with Wan(["a", "b"]) as w:
            with self.assertRaisesRegex(ValueError, "unknown node"):
                w.set("a", "zz", delay=1)
            with self.assertRaisesRegex(ValueError, "bad 'loss=2'"):
                w.set("a", "b", loss=2)
            with self.assertRaisesRegex(ValueError, "bad 'rate=fast'"):
                w.set("a", "b", rate="fast")
            w.set("*", "*", delay=1)  # still answering

    def test_nothing_is_left_when_the_block_fails(self):
        with self.assertRaises(ZeroDivisionError):
            with Wan(["a", "b"]) as w:
                p = w.popen("a", ["sleep", "60"])
                self.assertEqual(len(ours()), 2)
                1 / 0
        self.assertEqual(p.poll(), -signal.SIGKILL)

    def test_a_killed_harness_is_swept_by_the_next(self):
        # A child harness killed with SIGKILL leaves its namespaces; the next sweeps them.
        code = ("import sys, time; sys.path.insert(0, %r); from wan import Wan\n"
                "w = Wan(['a', 'b']).__enter__(); print(w.tag, flush=True); time.sleep(60)"
                % os.path.dirname(os.path.abspath(__file__)))
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        tag = child.stdout.readline().strip()
        child.kill()
        child.wait()
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        self.assertIn(tag, listed)
        wan.sweep_stale()
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        self.assertNotIn(tag, listed)


if __name__ == "__main__":
    tap.main()
