"""JetStream's pull consumer under the shape of `eventbus-bench consumer`, as its yardstick.

N fetchers share one durable pull consumer (explicit ack, file storage, one replica) while E
events of ~400 B, each carrying its send time, are published in batches of in-flight publishes
awaiting their acks; then the same fetchers drain a backlog of E events. Prints events acked per
second (first publish or first fetch to last ack) and publish->ack latency p50/p99.

Needs a `nats-server -js` on 127.0.0.1:4222 and the `nats-py` client
(`pip install nats-py`); the stream is created for the run and deleted after. The client is
Python, so on a small machine the client's CPU bounds the figure, not the server's.

    python3 jetstream_pull.py --fetchers 8 --events 20000 --batch 100
"""

import argparse
import asyncio
import json
import time
import uuid

import nats
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig
from nats.errors import TimeoutError as NatsTimeout


def now_micros():
    return time.time_ns() // 1000


def percentile(sorted_samples, q):
    """Nearest rank, as the bench's stats module."""
    if not sorted_samples:
        return 0
    rank = max(1, min(len(sorted_samples), int(-(-q * len(sorted_samples) // 1))))
    return sorted_samples[rank - 1]


async def publish_all(js, subject, events, batch, pad):
    sent = 0
    while sent < events:
        n = min(batch, events - sent)
        await asyncio.gather(
            *(
                js.publish(subject, json.dumps({"sentAt": now_micros(), "pad": pad}).encode())
                for _ in range(n)
            )
        )
        sent += n


async def shape(nc, js, stream, subject, args, backlog):
    durable = f"bench-{'backlog' if backlog else 'live'}"
    await js.add_consumer(
        stream,
        ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=60,
            max_ack_pending=max(1000, min(10000, args.fetchers * args.batch * 2)),
            filter_subject=subject,
            deliver_policy=nats.js.api.DeliverPolicy.NEW,
        ),
    )
    state = {"acked": 0, "last": None, "lat": []}
    deadline = time.monotonic() + args.duration
    pad = "x" * max(0, args.payload_bytes - 60)

    async def fetcher():
        psub = await js.pull_subscribe_bind(durable, stream)
        while state["acked"] < args.events and time.monotonic() < deadline:
            try:
                msgs = await psub.fetch(args.batch, timeout=0.5)
            except NatsTimeout:
                continue
            for m in msgs:
                await m.ack()
            await nc.flush()
            acked_at = now_micros()
            for m in msgs:
                state["lat"].append(acked_at - json.loads(m.data)["sentAt"])
            state["acked"] += len(msgs)
            state["last"] = time.monotonic()

    if backlog:
        await publish_all(js, subject, args.events, args.publish_batch, pad)
        started = time.monotonic()
        await asyncio.gather(*(fetcher() for _ in range(args.fetchers)))
    else:
        tasks = [asyncio.create_task(fetcher()) for _ in range(args.fetchers)]
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await publish_all(js, subject, args.events, args.publish_batch, pad)
        await asyncio.gather(*tasks)
    elapsed = (state["last"] or time.monotonic()) - started
    lat = sorted(state["lat"])
    return state["acked"], elapsed, lat


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="nats://127.0.0.1:4222")
    p.add_argument("--fetchers", type=int, default=8)
    p.add_argument("--events", type=int, default=20000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--publish-batch", type=int, default=100)
    p.add_argument("--payload-bytes", type=int, default=400)
    p.add_argument("--duration", type=float, default=120.0)
    args = p.parse_args()
    nc = await nats.connect(args.url)
    js = nc.jetstream()
    stream = f"BENCH_{uuid.uuid4().hex[:12]}"
    subject = f"bench.{stream}.project.updated"
    await js.add_stream(StreamConfig(name=stream, subjects=[subject], storage=StorageType.FILE))
    try:
        print(f"{'run':<48} {'acked':>8} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
        for backlog in (False, True):
            acked, elapsed, lat = await shape(nc, js, stream, subject, args, backlog)
            name = f"jetstream pull {'backlog' if backlog else 'live'}: {args.fetchers} fetchers x max {args.batch}"
            p50 = "-" if backlog else f"{percentile(lat, 0.5) / 1000:.1f}"
            p99 = "-" if backlog else f"{percentile(lat, 0.99) / 1000:.1f}"
            print(f"{name:<48} {acked:>8} {acked / max(elapsed, 1e-9):>10.0f} {p50:>8} {p99:>8}")
    finally:
        await js.delete_stream(stream)
        await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
