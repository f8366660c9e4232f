"""A fresh bus per test: shmbusd on a temporary directory, stopped afterwards."""

import os
import subprocess
import tempfile
import time

import pytest

import shmbus

SHMBUSD = os.environ.get("SHMBUSD", "shmbusd")


@pytest.fixture
def bus_dir():
    with tempfile.TemporaryDirectory(prefix="shmbus-py-") as d:
        log = open(os.path.join(d, "daemon.log"), "w")
        daemon = subprocess.Popen([SHMBUSD, "--dir", d, "--state-dir", os.path.join(d, "state")],
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    shmbus.connect(d).close()
                    break
                except shmbus.DaemonNotRunning:
                    if time.monotonic() > deadline or daemon.poll() is not None:
                        raise
                    time.sleep(0.02)
            yield d
        finally:
            daemon.terminate()
            daemon.wait(10)
            log.close()


@pytest.fixture
def bus(bus_dir):
    with shmbus.connect(bus_dir) as b:
        yield b
