"""The Python examples (bindings/python/examples) run as a user runs them."""

import os
import queue
import subprocess
import sys
import threading

import shmbus

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def start(script, *args):
    return subprocess.Popen([sys.executable, os.path.join(EXAMPLES, script), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(proc):
    line = proc.stdout.readline()
    assert line.startswith("ready") or line.startswith("resuming"), line + proc.stderr.read()
    return line


def finish(proc):
    # Read through the same buffered file wait_ready() read from: communicate() would read the
    # raw pipe and lose what readline() had already buffered.
    out = proc.stdout.read()
    err = proc.stderr.read()
    assert proc.wait(60) == 0, err
    return out


def test_workers_share_jobs_retry_failures_and_reject_poison(bus_dir):
    workers = [start("worker.py", "--dir", bus_dir) for _ in range(2)]
    for w in workers:
        wait_ready(w)
    with shmbus.connect(bus_dir) as bus, bus.subscribe("jobs.dlq", start="earliest") as dlq:
        pub = bus.publisher("jobs")
        for job in ["a", "b-fail", "c", "d-poison", "e", "f"]:
            pub.publish(job.encode())
        dead = dlq.receive(10)
        assert bytes(dead.payload) == b"d-poison"
        assert dead.headers["shmbus-reason"] == b"cannot parse d-poison"
        lines = queue.Queue()
        for w in workers:
            threading.Thread(target=lambda out=w.stdout: [lines.put(x) for x in out], daemon=True).start()
        done, seen = set(), []
        while len(done) < 5:
            line = lines.get(timeout=10)
            seen.append(line)
            if line.startswith("done "):
                done.add(line.split()[1])
        lines = seen
        assert done == {"a", "b-fail", "c", "e", "f"}, lines
        assert any(line.startswith("retrying b-fail") for line in lines)
        assert any(line.startswith("done b-fail (attempt 2)") for line in lines)
    for w in workers:
        w.terminate()
        w.wait(10)


def test_frames_travel_without_a_copy(bus_dir):
    viewer = start("frames.py", "view", "--dir", bus_dir, "--count", "20")
    wait_ready(viewer)
    camera = start("frames.py", "publish", "--dir", bus_dir, "--count", "20")
    assert "published 20 frames" in finish(camera)
    lines = finish(viewer).splitlines()
    assert len(lines) == 20
    assert [float(line.split()[-1]) for line in lines] == [float(n) for n in range(20)]


def test_a_late_joiner_replays_then_resumes_where_it_stopped(bus_dir):
    with shmbus.connect(bus_dir) as bus:
        pub = bus.publisher("events")
        for n in range(5):
            pub.publish(f"event {n}".encode())
        first = start("late_joiner.py", "--dir", bus_dir, "--count", "3")
        assert wait_ready(first) == "resuming at id 0\n"
        assert finish(first).splitlines() == ["0 event 0", "1 event 1", "2 event 2"]
        second = start("late_joiner.py", "--dir", bus_dir, "--count", "2")
        assert wait_ready(second) == "resuming at id 3\n"
        assert finish(second).splitlines() == ["3 event 3", "4 event 4"]
