"""Enqueues conformance jobs:
`rq_enqueue.py <queue> <ok-count> <fail-count> <flaky-count>`; prints one
`<job id> ok|fail|flaky` line per job."""

import sys
import uuid

from redis import Redis
from rq import Queue

import rq_jobs


def main() -> None:
    queue = Queue(sys.argv[1], connection=Redis.from_url("redis://127.0.0.1:6379/0"))
    for i in range(int(sys.argv[2])):
        print(queue.enqueue(rq_jobs.add, i, 1).id, "ok", flush=True)
    for _ in range(int(sys.argv[3])):
        print(queue.enqueue(rq_jobs.boom).id, "fail", flush=True)
    for _ in range(int(sys.argv[4]) if len(sys.argv) > 4 else 0):
        print(queue.enqueue(rq_jobs.flaky, f"z4jconf-flaky-{uuid.uuid4().hex}").id, "flaky", flush=True)
    print("enqueued", flush=True)


if __name__ == "__main__":
    main()
