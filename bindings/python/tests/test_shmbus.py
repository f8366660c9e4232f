"""The Python module against a live shmbusd: the names docs/python.md promises, and what they do."""

import asyncio
import os
import select
import subprocess
import threading
import time

import numpy as np
import pytest

import shmbus


def test_publish_and_receive_any_bytes_with_headers(bus):
    with bus.subscribe("py.basic") as sub, bus.publisher("py.basic") as pub:
        pub.publish(b"a\x00b\nc\xff", headers={"trace": "abc", "raw": b"\x01\x02"})
        pub.publish(bytearray(b"second"))
        msg = sub.receive(timeout=5)
        assert bytes(msg.payload) == b"a\x00b\nc\xff"
        assert isinstance(msg.payload, memoryview) and msg.payload.readonly
        assert msg.headers == {"trace": b"abc", "raw": b"\x01\x02"}
        assert msg.topic == "py.basic"
        first = msg.id
        msg = sub.receive(5)
        assert bytes(msg.payload) == b"second" and msg.id == first + 1 and msg.headers == {}
        assert sub.receive(0) is None
        started = time.monotonic()
        assert sub.receive(0.05) is None
        assert time.monotonic() - started >= 0.04


def test_keys_and_times_travel_with_the_message(bus):
    with bus.subscribe("py.keys") as sub, bus.publisher("py.keys") as pub:
        pub.publish(b"one", key="account-1", ttl=60)
        pub.publish(b"two", headers={"h": "v"}, key=b"\x00bin", delay=0.5)
        pub.publish(b"three")
        first = sub.receive(timeout=5)
        assert first.key == b"account-1" and first.expires_at_ns > first.timestamp_ns and first.deliver_at_ns == 0
        second = sub.receive(timeout=5)
        assert second.key == b"\x00bin" and second.headers == {"h": b"v"} and second.deliver_at_ns > second.timestamp_ns
        third = sub.receive(timeout=5)
        assert third.key is None and third.expires_at_ns == 0
        with pytest.raises(shmbus.Error) as e:
            pub.publish(b"x", key="k" * 257)
        assert e.value.status == "bad_key"


def test_a_late_subscriber_starts_from_the_latest_message_per_key(bus, bus_dir):
    cli = os.environ.get("SHMBUS_CLI", "shmbus")
    subprocess.run([cli, "--dir", bus_dir, "topic", "create", "py.latest", "--compact"], check=True)
    with bus.publisher("py.latest") as pub:
        for i in range(30):
            pub.publish(f"v{i}".encode(), key=f"k{i % 3}")
        pub.publish(b"", key="k0")  # a tombstone: k0 is deleted
    with bus.subscribe("py.latest", start="latest-per-key") as sub:
        got = [(m.key, bytes(m.payload)) for m in iter(lambda: sub.receive(timeout=0.5), None)]
    assert got == [(b"k1", b"v28"), (b"k2", b"v29")]
    with pytest.raises(shmbus.Error) as e:
        with bus.publisher("py.plain") as pub:
            pass
        bus.subscribe("py.plain", start="latest-per-key")
    assert "not compacted" in str(e.value)


def test_a_payload_is_released_at_the_next_receive_and_a_copy_stays(bus):
    with bus.subscribe("py.view") as sub, bus.publisher("py.view") as pub:
        pub.publish(b"one")
        pub.publish(b"two")
        msg = sub.receive(5)
        view, kept = msg.payload, bytes(msg.payload)
        sub.receive(5)
        with pytest.raises(ValueError):
            bytes(view)
        assert kept == b"one"


def test_iteration_yields_messages_and_ends_when_the_topic_is_deleted(bus):
    with bus.subscribe("py.iter") as sub, bus.publisher("py.iter") as pub:
        for i in range(3):
            pub.publish(str(i).encode())
        pub.close()
        bus.delete_topic("py.iter", force=True)
        assert [bytes(m.payload) for m in sub] == [b"0", b"1", b"2"]


def test_a_loan_is_written_in_place_and_numpy_reads_without_a_copy(bus):
    frame = 1 << 20
    bus.create_topic("py.frames", capacity=16 << 20, max_message=frame)
    with bus.subscribe("py.frames", durable="viewer") as sub, bus.publisher("py.frames") as pub:
        with pub.loan(frame) as loan:
            pixels = np.frombuffer(loan, dtype=np.uint8)
            pixels[:] = np.arange(frame, dtype=np.uint64) % 251
            del pixels
        msg = sub.receive(5)
        got = np.frombuffer(msg.payload, dtype=np.uint8)
        assert got.size == frame and int(got[1000]) == 1000 % 251 and int(got[-1]) == (frame - 1) % 251
        del got
        # Publishing an array takes its buffer as it is (one copy: into the ring).
        pub.publish(np.full(1024, 7, dtype=np.int32))
        msg = sub.receive(5)
        assert np.frombuffer(msg.payload, dtype=np.int32).sum() == 7 * 1024
        with pytest.raises(shmbus.TooLarge):
            pub.publish(np.zeros(frame + 1, dtype=np.uint8))
        loan = pub.loan(8)
        loan.abandon()
        with pytest.raises(ValueError):
            loan.commit()


def test_a_publisher_reusing_space_delivers_frames_whole(bus):
    frame = 1 << 20
    bus.create_topic("py.reuse", capacity=16 << 20, max_message=frame)
    with bus.subscribe("py.reuse", durable="viewer") as sub, bus.publisher("py.reuse", reuse_space=True) as pub:
        for n in range(12):  # four times round the ring's first 4 MiB
            sent = (np.arange(frame, dtype=np.uint64) * 131 + n).astype(np.uint8)
            pub.publish(sent)
            msg = sub.receive(5)
            assert np.array_equal(np.frombuffer(msg.payload, dtype=np.uint8), sent)
            del msg


def test_a_durable_subscription_resumes_after_what_it_handled(bus_dir):
    with shmbus.connect(bus_dir) as bus:
        pub = bus.publisher("py.durable")
        with bus.subscribe("py.durable", durable="ledger", start="earliest") as sub:
            for i in range(5):
                pub.publish(bytes([i]))
            assert bytes(sub.receive(5).payload) == b"\x00"
            assert bytes(sub.receive(5).payload) == b"\x01"  # acks the first
        # Closed after handling the second: that one is acked too.
    with shmbus.connect(bus_dir) as bus:
        with bus.subscribe("py.durable", durable="ledger") as sub:
            assert bytes(sub.receive(5).payload) == b"\x02"
        with bus.subscribe("py.durable", durable="replay", start=3) as sub:
            assert sub.receive(5).id == 3


def test_a_group_retries_and_dead_letters(bus):
    with bus.subscribe("py.jobs", group="workers", auto_ack=False) as worker, \
            bus.subscribe("py.jobs.dlq", start="earliest") as dlq:
        bus.publisher("py.jobs").publish(b"job")
        msg = worker.receive(5)
        assert msg.attempt == 1
        msg.nack(delay=0.001)
        msg = worker.receive(5)
        assert msg.attempt == 2 and bytes(msg.payload) == b"job"
        msg.reject("cannot parse")
        dead = dlq.receive(5)
        assert bytes(dead.payload) == b"job"
        assert dead.headers["shmbus-reason"] == b"cannot parse"
        assert dead.headers["shmbus-origin-topic"] == b"py.jobs"
        with pytest.raises(shmbus.Error) as e:
            dead.nack()
        assert e.value.status == "not_group"


def test_a_wait_set_names_the_ready_subscription_and_its_descriptor_polls(bus):
    a, b = bus.subscribe("py.wait.a"), bus.subscribe("py.wait.b")
    with shmbus.WaitSet() as waits:
        waits.add(a)
        waits.add(b)
        fd = waits.fileno()
        time.sleep(0.015)  # past new subscriptions' first milliseconds, when the set looks often
        assert waits.wait(0) == []
        assert select.select([fd], [], [], 0.02)[0] == []
        bus.publisher("py.wait.b").publish(b"x")
        ready = []
        for _ in range(10):
            assert select.select([fd], [], [], 5)[0] == [fd]
            ready = waits.wait(0)
            if ready:
                break
        assert ready == [b]
        assert bytes(b.receive(0).payload) == b"x"
        threading.Timer(0.05, lambda: bus.publisher("py.wait.a").publish(b"y")).start()
        assert waits.wait(5) == [a]
        waits.remove(a)
        with pytest.raises(shmbus.Error):
            waits.remove(a)


def test_async_iteration_through_the_event_loop(bus):
    async def main():
        sub = bus.subscribe("py.async")
        pub = bus.publisher("py.async")
        assert await sub.areceive(0.02) is None

        async def produce():
            for i in range(20):
                await asyncio.sleep(0.001)
                pub.publish(str(i).encode())

        got = []
        task = asyncio.create_task(produce())
        async for msg in sub:
            got.append(bytes(msg.payload))
            if len(got) == 20:
                break
        await task
        return got

    assert asyncio.run(main()) == [str(i).encode() for i in range(20)]


def test_batches_in_and_out(bus):
    with bus.subscribe("py.batch") as sub, bus.publisher("py.batch") as pub:
        assert pub.publish_batch([b"a", b"bb", memoryview(b"ccc")]) == 3
        assert sub.receive_batch(10, timeout=5) == [b"a", b"bb", b"ccc"]
        assert sub.receive_batch(10, timeout=0) == []
        threading.Timer(0.05, lambda: pub.publish(b"late")).start()
        assert sub.receive_batch(10, timeout=5) == [b"late"]


@pytest.mark.parametrize("backoff", [None, 0, 8e-6])
def test_a_stream_arrives_whole_whatever_the_pacing(bus, backoff):
    topic = f"py.paced.{backoff}"
    count = 20_000
    with bus.subscribe(topic, durable="d", start="earliest", busy_spin=True, stream_backoff=backoff) as sub, \
            bus.publisher(topic) as pub:
        def stream():
            for first in range(0, count, 100):
                pub.publish_batch([i.to_bytes(8, "little") for i in range(first, first + 100)])
        writer = threading.Thread(target=stream)
        writer.start()
        got = []
        while len(got) < count:
            batch = sub.receive_batch(256, timeout=10)
            assert batch, f"nothing came after {len(got)} messages"
            got.extend(int.from_bytes(m, "little") for m in batch)
        writer.join()
        assert got == list(range(count))


def test_a_stream_backoff_is_seconds_zero_or_more(bus):
    for bad in (-1e-6, float("nan")):
        with pytest.raises(ValueError, match="stream_backoff"):
            bus.subscribe("py.paced.bad", stream_backoff=bad)


def test_named_producers_refuse_duplicates(bus):
    with bus.publisher("py.named", producer="writer-1") as pub:
        pub.publish_sequence(7, b"x")
        with pytest.raises(shmbus.Error) as e:
            pub.publish_sequence(7, b"x")
        assert e.value.status == "duplicate"
        assert pub.last_sequence == 7


def test_errors_say_what_went_wrong(bus_dir, bus, tmp_path):
    with pytest.raises(shmbus.DaemonNotRunning) as e:
        shmbus.connect(str(tmp_path / "nobody"))
    assert str(e.value) and e.value.status == "daemon_not_running"
    with pytest.raises(shmbus.Error) as e:
        bus.subscribe("bad name!")
    assert e.value.status == "invalid_name" and "bad name!" in str(e.value)
    with pytest.raises(ValueError):
        bus.subscribe("py.e", start="yesterday")
    with pytest.raises(ValueError):
        bus.subscribe("py.e").receive(-1)
    sub = bus.subscribe("py.e")
    sub.close()
    with pytest.raises(ValueError):
        sub.receive(0)
    bus.create_topic("py.small", capacity=4096, max_message=64, on_full="fail")
    pub = bus.publisher("py.small")
    with pytest.raises(shmbus.TooLarge):
        pub.publish(b"x" * 65)
    with bus.subscribe("py.small", durable="slow"):
        with pytest.raises(shmbus.Full):
            for _ in range(1000):
                pub.publish(b"y" * 64)
