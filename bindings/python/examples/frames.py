#!/usr/bin/env python3
"""1 MiB numpy frames, published without a copy: each frame is written by numpy straight into
the ring (a loan) and read by numpy straight from it (a memoryview of shared memory).

    frames.py publish [--dir BUS_DIR] [--count N]    # a camera: N frames of 512 x 512 float32
    frames.py view [--dir BUS_DIR] [--count N]       # prints each frame's number and mean

The topic `frames` is made with room for 16 frames; the viewer's durable subscription holds the
publisher back rather than lose a frame."""

import argparse
import sys

import numpy as np

import shmbus

SHAPE = (512, 512)
FRAME_BYTES = SHAPE[0] * SHAPE[1] * 4  # float32: 1 MiB


def publish(bus: shmbus.Bus, count: int) -> None:
    with bus.publisher("frames") as pub:
        for n in range(count):
            with pub.loan(FRAME_BYTES) as room:           # committed when the block ends
                frame = np.frombuffer(room, dtype=np.float32).reshape(SHAPE)
                frame[:] = n                               # the "camera" writes into the ring
                del frame                                  # no view of the ring outlives the loan
    print(f"published {count} frames", flush=True)


def view(bus: shmbus.Bus, count: int) -> None:
    with bus.subscribe("frames", durable="viewer", start="earliest") as frames:
        print("ready", flush=True)
        for seen, msg in enumerate(frames, 1):
            frame = np.frombuffer(msg.payload, dtype=np.float32).reshape(SHAPE)  # no copy
            print(f"frame {msg.id} mean {float(frame.mean()):g}", flush=True)
            del frame                                      # valid until the next frame only
            if seen == count:
                break


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("role", choices=["publish", "view"])
    args.add_argument("--dir")
    args.add_argument("--count", type=int, default=100)
    a = args.parse_args()
    with shmbus.connect(a.dir) as bus:
        try:
            bus.create_topic("frames", capacity=32 << 20, max_message=FRAME_BYTES)
        except shmbus.Error as e:
            if e.status != "topic_exists":
                raise
        (publish if a.role == "publish" else view)(bus, a.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
