#!/usr/bin/env python3
"""No training sample crosses any link: a short real job (a coordinator, one
regional server, one worker, CURVE off) whose every byte on the WAN link
(server <-> coordinator) and on the LAN link (worker <-> server) passes
through capturing TCP proxies, and a search of both captured streams, each
direction, for every training row the worker holds: its raw 784-byte image
and its pixels as float32 (x / 255, the form the worker trains on).

A control shows the search would see a row if one were sent: the captured
WAN stream holds the layout text WELCOME carries ("softmax 784 10"), and a
row spliced into a copy of the capture is found.

    python3 tests/integration/test_no_samples.py    (GDML_BUILD_DIR, GDML_SOURCE_DIR)
"""
import gzip
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

BUILD = os.environ.get("GDML_BUILD_DIR", "build")
FASHION = "/usr/share/datasets/fashion-mnist/"
SHARDS = 20  # the worker holds rows i % 20 == 0 of the training set: 3,000 rows
KEY_LEN = 16  # a row is looked up by 16 of its bytes


class Proxy:
    """Forwards TCP connections from a port of its own to target_port and keeps
    every byte, per connection and direction."""

    def __init__(self, target_port):
        self.target = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.streams = []  # (direction, bytearray)
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                a, _ = self.listener.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(("127.0.0.1", self.target))
            except OSError:  # the target has exited; its peer will reconnect in vain
                a.close()
                continue
            for src, dst, name in ((a, b, "to"), (b, a, "from")):
                buf = bytearray()
                with self.lock:
                    self.streams.append((name, buf))
                threading.Thread(target=self._pump, args=(src, dst, buf), daemon=True).start()

    @staticmethod
    def _pump(src, dst, buf):
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                buf.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def captured(self):
        with self.lock:
            return [(name, bytes(buf)) for name, buf in self.streams]


def read_idx_images(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n, rows, cols = struct.unpack(">IIII", data[:16])
    assert magic == 0x803 and rows * cols == 784, "not an IDX image file: " + path
    return [data[16 + i * 784:16 + (i + 1) * 784] for i in range(n)]


def float_row(row):
    return struct.pack("<784f", *[b / 255.0 for b in row])


def find_rows(stream, rows, width):
    """Indices of the rows (each `width` bytes) that occur whole in stream.

    Each row is looked up by its busiest 16 bytes (the most distinct byte
    values), wherever they are in it: a key of zeros would match every
    zero run in the stream and make the search crawl."""
    keys = {}
    for i, r in enumerate(rows):
        at = max(range(0, width - KEY_LEN + 1, 8), key=lambda o: len(set(r[o:o + KEY_LEN])))
        keys.setdefault(r[at:at + KEY_LEN], []).append((i, at))
    found = set()
    for p in range(len(stream) - KEY_LEN + 1):
        hits = keys.get(stream[p:p + KEY_LEN])
        if hits:
            for i, at in hits:
                if p >= at and stream[p - at:p - at + width] == rows[i]:
                    found.add(i)
    return found


def wait_file(path, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path) and open(path).read().strip():
            return open(path).read().strip()
        time.sleep(0.05)
    sys.exit("no %s after %d s" % (path, timeout))


def port_of(endpoint):
    return int(endpoint.rsplit(":", 1)[1])


def main():
    if not os.path.exists(FASHION + "train-images-idx3-ubyte.gz"):
        print("SKIP: dataset-fashion-mnist is not installed")
        return 77
    tmp = tempfile.mkdtemp(prefix="gdml-nosamples-")
    procs = []
    try:
        common = ["--curve", "off", "--log-level", "info"]
        coord = subprocess.Popen(
            [os.path.join(BUILD, "gdml-coordinator"), "--listen", "tcp://127.0.0.1:*",
             "--endpoint-file", tmp + "/coord.ep", "--store", tmp + "/store", "--regions", "1",
             "--rounds", "4"] + common,
            stdout=subprocess.DEVNULL, stderr=open(tmp + "/coordinator.log", "w"))
        procs.append(coord)
        wan = Proxy(port_of(wait_file(tmp + "/coord.ep")))
        server = subprocess.Popen(
            [os.path.join(BUILD, "gdml-server"), "--name", "r1", "--listen", "tcp://127.0.0.1:*",
             "--endpoint-file", tmp + "/server.ep", "--coordinator",
             "tcp://127.0.0.1:%d" % wan.port, "--workers", "1", "--sync-every", "20",
             "--learning-rate", "0.5"] + common,
            stdout=subprocess.DEVNULL, stderr=open(tmp + "/server.log", "w"))
        procs.append(server)
        lan = Proxy(port_of(wait_file(tmp + "/server.ep")))
        worker = subprocess.Popen(
            [os.path.join(BUILD, "gdml-worker"), "--name", "w1", "--server",
             "tcp://127.0.0.1:%d" % lan.port, "--images", FASHION + "train-images-idx3-ubyte.gz",
             "--labels", FASHION + "train-labels-idx1-ubyte.gz", "--shard-index", "0",
             "--shard-count", str(SHARDS)] + common,
            stdout=subprocess.DEVNULL, stderr=open(tmp + "/worker.log", "w"))
        procs.append(worker)
        rc = coord.wait(timeout=120)
        if rc != 0:
            sys.exit("the coordinator exited %d:\n%s" % (rc, open(tmp + "/coordinator.log").read()))
        for p in (server, worker):
            p.wait(timeout=30)
        rows = read_idx_images(FASHION + "train-images-idx3-ubyte.gz")[::SHARDS]
        floats = [float_row(r) for r in rows]
        failures = []
        total = {"wan": 0, "lan": 0}
        for link, proxy in (("wan", wan), ("lan", lan)):
            streams = proxy.captured()
            if not any(data for _, data in streams):
                failures.append("nothing was captured on the %s link" % link)
            for direction, data in streams:
                total[link] += len(data)
                for kind, table, width in (("raw image", rows, 784), ("float32", floats, 3136)):
                    hit = find_rows(data, table, width)
                    if hit:
                        failures.append("%s link, %s the server: %d training rows as %s, e.g. row "
                                        "%d" % (link, direction, len(hit), kind, sorted(hit)[0]))
        # Controls: the capture is the plaintext protocol, and a row in it would be found.
        wan_bytes = b"".join(d for _, d in wan.captured())
        if b"softmax 784 10" not in wan_bytes:
            failures.append("the WAN capture lacks WELCOME's layout text: not the plaintext "
                            "protocol, so the search proves nothing")
        spliced = wan_bytes[:1000] + rows[17] + wan_bytes[1000:]
        if find_rows(spliced, rows, 784) != {17}:
            failures.append("a row spliced into the capture was not found: the search is broken")
        spliced = wan_bytes[:999] + floats[5] + wan_bytes[999:]
        if find_rows(spliced, floats, 3136) != {5}:
            failures.append("a float32 row spliced into the capture was not found")
        if total["wan"] < 4 * 7850 * 4 or total["lan"] < 4 * 20 * 7850 * 4:
            failures.append("too few bytes captured (WAN %d, LAN %d) for 4 rounds" %
                            (total["wan"], total["lan"]))
        if failures:
            print("FAIL:\n  " + "\n  ".join(failures))
            return 1
        print("ok: %d rows searched (raw and float32) in %d WAN and %d LAN bytes, none found" %
              (len(rows), total["wan"], total["lan"]))
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
