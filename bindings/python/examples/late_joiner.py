#!/usr/bin/env python3
"""A late joiner: a durable subscription that replays what it missed, then follows live.

    late_joiner.py [--dir BUS_DIR] [--topic events] [--name audit] [--count N]

The first run starts from the earliest message the topic still holds; every later run resumes
after the last message the previous one handled (acked when the next was asked for, or when it
stopped), so a restart neither loses nor repeats a message."""

import argparse
import sys

import shmbus


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--dir")
    args.add_argument("--topic", default="events")
    args.add_argument("--name", default="audit")
    args.add_argument("--count", type=int, default=0, help="stop after N messages (0: run until the topic is deleted)")
    a = args.parse_args()
    with shmbus.connect(a.dir) as bus:
        with bus.subscribe(a.topic, durable=a.name, start="earliest") as events:
            print(f"resuming at id {events.next_id}", flush=True)
            for n, msg in enumerate(events, 1):
                print(f"{msg.id} {bytes(msg.payload).decode(errors='replace')}", flush=True)
                if n == a.count:
                    break
    return 0


if __name__ == "__main__":
    sys.exit(main())
