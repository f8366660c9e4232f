#!/usr/bin/env python3
"""The Python side of shmbus-bench: the shmbus module beside what a Python program would use
instead to talk to another process on the same host, each run in separate processes.

    peers.py --transport T --mode throughput|latency [--dir BUS_DIR] [--count N]

Transports: shmbus (publish per message, receive_batch), shmbus_batch (publish_batch of 256),
shmbus_sleep (latency: a subscription that sleeps instead of spinning), mp_queue
(multiprocessing.Queue), mp_pipe (multiprocessing.Pipe), zmq_ipc (pyzmq PAIR over ipc://),
redis (redis-py against a redis-server on a Unix socket: RPUSH/LPOP for throughput, LPUSH/BRPOP
for latency). Messages are 64 bytes: sequence number, its checksum, filler; every one is checked.
Prints one JSON line: msgs_per_s (throughput), p50_ns/p99_ns one-way (latency: round trip / 2),
or skipped with the reason."""

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

SIZE = 64
FILLER = b"\x5a" * (SIZE - 16)
MASK = (1 << 64) - 1


def mix(x: int) -> int:
    x ^= x >> 31
    x = (x * 0xBF58476D1CE4E5B9) & MASK
    return x ^ (x >> 29)


def message(seq: int) -> bytes:
    return struct.pack("<QQ", seq, mix(seq)) + FILLER


def check(data, seq: int) -> bool:
    got, sum_ = struct.unpack_from("<QQ", data)
    return got == seq and sum_ == mix(seq) and len(data) == SIZE


# ---- transports: each a pair of endpoints made before fork and opened in each process ----

class Shmbus:
    def __init__(self, args, name):
        import shmbus
        self.dir, self.batch = args.dir, args.transport == "shmbus_batch"
        self.spin = args.transport != "shmbus_sleep"
        self.topics = (f"pybench.{os.getpid()}.{name}.ab", f"pybench.{os.getpid()}.{name}.ba")
        with shmbus.connect(self.dir) as bus:
            for t in self.topics:
                bus.create_topic(t, capacity=16 << 20, max_message=SIZE)

    def open(self, first):
        import shmbus
        self.bus = shmbus.connect(self.dir)
        self.sub = self.bus.subscribe(self.topics[1 if first else 0], start="earliest", busy_spin=self.spin)
        self.pub = self.bus.publisher(self.topics[0 if first else 1])

    def send(self, data):
        self.pub.publish(data)

    def send_many(self, items):
        if self.batch:
            self.pub.publish_batch(items)
        else:
            publish = self.pub.publish  # the loop every transport gets: a bound method, one call a message
            for m in items:
                publish(m)

    def recv(self):
        return bytes(self.sub.receive(10).payload)

    def recv_many(self):
        return self.sub.receive_batch(1024, 10)

    def finish(self):
        pass

    def cleanup(self):
        import shmbus
        with shmbus.connect(self.dir) as bus:
            for t in self.topics:
                bus.delete_topic(t, force=True)


class MpQueue:
    def __init__(self, args, name):
        self.q = (mp.Queue(), mp.Queue())

    def open(self, first):
        self.out, self.inq = (self.q[0], self.q[1]) if first else (self.q[1], self.q[0])

    def send(self, data):
        self.out.put(data)

    def send_many(self, items):
        put = self.out.put
        for m in items:
            put(m)

    def recv(self):
        return self.inq.get()

    def recv_many(self):
        return [self.inq.get()]

    def finish(self):
        pass

    def cleanup(self):
        pass


class MpPipe(MpQueue):
    def __init__(self, args, name):
        self.ends = mp.Pipe()

    def open(self, first):
        self.conn = self.ends[0] if first else self.ends[1]

    def send(self, data):
        self.conn.send_bytes(data)

    def send_many(self, items):
        send = self.conn.send_bytes
        for m in items:
            send(m)

    def recv(self):
        return self.conn.recv_bytes()

    def recv_many(self):
        return [self.conn.recv_bytes()]


class Zmq(MpQueue):
    def __init__(self, args, name):
        self.endpoint = f"ipc://{tempfile.gettempdir()}/pybench-{os.getpid()}-{name}.ipc"

    def open(self, first):
        import zmq
        self.sock = zmq.Context.instance().socket(zmq.PAIR)
        self.sock.setsockopt(zmq.SNDHWM, 100000)
        self.sock.setsockopt(zmq.RCVHWM, 100000)
        self.sock.setsockopt(zmq.RCVTIMEO, 10000)  # a partner that died is an error, not a hang
        self.sock.setsockopt(zmq.LINGER, 1000)
        (self.sock.bind if first else self.sock.connect)(self.endpoint)

    def send(self, data):
        self.sock.send(data, copy=True)

    def send_many(self, items):
        send = self.sock.send
        for m in items:
            send(m)

    def recv(self):
        return self.sock.recv()

    def recv_many(self):
        return [self.sock.recv()]

    def finish(self):
        # multiprocessing ends a child with os._exit: what libzmq's I/O thread has not sent yet
        # would be lost. Closing the socket with a linger and ending the context sends it.
        import zmq
        self.sock.close(linger=5000)
        zmq.Context.instance().term()


class Redis(MpQueue):
    def __init__(self, args, name):
        self.socket = args.redis_socket
        self.keys = (f"pybench:{os.getpid()}:{name}:ab", f"pybench:{os.getpid()}:{name}:ba")

    def open(self, first):
        import redis
        self.r = redis.Redis(unix_socket_path=self.socket)
        self.out, self.inq = (self.keys[0], self.keys[1]) if first else (self.keys[1], self.keys[0])

    def send(self, data):
        self.r.lpush(self.out, data)

    def send_many(self, items):
        p = self.r.pipeline(transaction=False)
        for m in items:
            p.rpush(self.out, m)
        p.execute()

    def recv(self):
        return self.r.brpop(self.inq, timeout=10)[1]

    def recv_many(self):
        got = self.r.lpop(self.inq, 1000)
        if got:
            return got
        key_value = self.r.blpop(self.inq, timeout=10)
        return [key_value[1]] if key_value else []


TRANSPORTS = {"shmbus": Shmbus, "shmbus_batch": Shmbus, "shmbus_sleep": Shmbus, "mp_queue": MpQueue,
              "mp_pipe": MpPipe, "zmq_ipc": Zmq, "redis": Redis}


# ---- the two measurements ----

# Messages are made before the clock starts, and checked against copies made likewise: the run
# measures the transport, not struct.pack.
def producer(t, count, start):
    t.open(True)
    chunk = 256
    chunks = [[message(s) for s in range(first, min(first + chunk, count))] for first in range(0, count, chunk)]
    start.value = time.monotonic_ns()
    for items in chunks:
        t.send_many(items)
    t.finish()


def consumer(t, count, end, bad):
    expected = [message(s) for s in range(count)]
    t.open(False)
    seq = 0
    while seq < count:
        for data in t.recv_many():
            if data != expected[seq]:
                bad.value += 1
            seq += 1
    end.value = time.monotonic_ns()


def throughput(t, count):
    start, end, bad = mp.Value("q", 0), mp.Value("q", 0), mp.Value("q", 0)
    c = mp.Process(target=consumer, args=(t, count, end, bad))
    c.start()
    time.sleep(0.5)  # the consumer subscribes (and makes its copies) first
    p = mp.Process(target=producer, args=(t, count, start))
    p.start()
    c.join(300)
    p.join(60)
    if c.exitcode != 0 or p.exitcode != 0 or bad.value:
        raise RuntimeError(f"throughput run failed: consumer {c.exitcode}, producer {p.exitcode}, bad {bad.value}")
    return {"msgs_per_s": count / ((end.value - start.value) / 1e9)}


def echo(t, rounds):
    t.open(False)
    for _ in range(rounds):
        t.send(t.recv())
    t.finish()


def latency(t, rounds, warmup):
    e = mp.Process(target=echo, args=(t, rounds + warmup))
    e.start()
    t.open(True)
    time.sleep(0.3)
    samples = []
    for seq in range(rounds + warmup):
        m = message(seq)
        t0 = time.perf_counter_ns()
        t.send(m)
        reply = t.recv()
        t1 = time.perf_counter_ns()
        if not check(reply, seq):
            raise RuntimeError(f"reply {seq} failed its check")
        if seq >= warmup:
            samples.append((t1 - t0) / 2)
    e.join(60)
    if e.exitcode != 0:
        raise RuntimeError(f"the echo process failed ({e.exitcode})")
    samples.sort()
    return {"p50_ns": samples[len(samples) // 2], "p99_ns": samples[int(len(samples) * 0.99)]}


def start_redis(workdir):
    server = shutil.which("redis-server")
    if not server:
        return None, "redis-server is not installed"
    sock = os.path.join(workdir, "redis.sock")
    proc = subprocess.Popen([server, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no",
                             "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        if os.path.exists(sock):
            return proc, sock
        time.sleep(0.01)
    proc.kill()
    return None, "redis-server did not start"


def main():
    a = argparse.ArgumentParser(description="shmbus-bench's Python peers")
    a.add_argument("--transport", required=True, choices=sorted(TRANSPORTS))
    a.add_argument("--mode", required=True, choices=["throughput", "latency"])
    a.add_argument("--dir")
    a.add_argument("--count", type=int, default=0)
    args = a.parse_args()
    # shmbus-bench blocks SIGCHLD for its own partners, and a blocked mask is inherited: with it,
    # multiprocessing's children die unseen (pyzmq's echo did). Start from a clean mask.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    mp.set_start_method("fork")
    needs = {"zmq_ipc": "zmq", "redis": "redis"}.get(args.transport)
    if needs:
        try:
            __import__(needs)
        except ImportError:
            print(json.dumps({"skipped": f"python3-{needs} is not installed"}))
            return 0
    redis_proc = None
    with tempfile.TemporaryDirectory(prefix="shmbus-pybench-") as workdir:
        try:
            if args.transport == "redis":
                redis_proc, where = start_redis(workdir)
                if redis_proc is None:
                    print(json.dumps({"skipped": where}))
                    return 0
                args.redis_socket = where
            t = TRANSPORTS[args.transport](args, args.mode)
            try:
                if args.mode == "throughput":
                    # About a second or more of each: the fast transports get more messages.
                    fast = args.transport in ("shmbus", "shmbus_batch", "zmq_ipc")
                    result = throughput(t, args.count or (2000000 if fast else 300000))
                else:
                    result = latency(t, args.count or 20000, 2000)
            finally:
                t.cleanup()
        finally:
            if redis_proc:
                redis_proc.terminate()
                redis_proc.wait(10)
    result.update({"transport": args.transport, "mode": args.mode, "python": sys.version.split()[0]})
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
