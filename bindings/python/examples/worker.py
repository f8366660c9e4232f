#!/usr/bin/env python3
"""A worker in a consumer group: each job goes to one live worker; a job that fails is retried
after the group's backoff, and one that can never work goes to the dead-letter topic.

    worker.py [--dir BUS_DIR] [--topic jobs] [--group workers] [--count N]

Start as many as you like; `shmbus pub jobs 'resize photo-1.jpg'` hands them work. A job whose
text contains "fail" fails once (nack: retried), one containing "poison" is rejected."""

import argparse
import sys

import shmbus


def handle(text: str, attempt: int) -> None:
    if "poison" in text:
        raise ValueError("cannot parse " + text)
    if "fail" in text and attempt == 1:
        raise RuntimeError("transient failure")


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--dir")
    args.add_argument("--topic", default="jobs")
    args.add_argument("--group", default="workers")
    args.add_argument("--count", type=int, default=0, help="stop after N jobs settled (0: never)")
    a = args.parse_args()
    settled = 0
    with shmbus.connect(a.dir) as bus, bus.subscribe(a.topic, group=a.group, auto_ack=False) as jobs:
        print("ready", flush=True)
        for job in jobs:
            text = bytes(job.payload).decode(errors="replace")
            try:
                handle(text, job.attempt)
            except ValueError as e:
                job.reject(str(e))
                print(f"rejected {text}", flush=True)
            except RuntimeError:
                job.nack()
                print(f"retrying {text}", flush=True)
                continue
            else:
                job.ack()
                print(f"done {text} (attempt {job.attempt})", flush=True)
            settled += 1
            if settled == a.count:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
