"""Enqueues conformance jobs: `rq_enqueue.py <queue> <ok-count> <fail-count>`;
prints one `<job id> ok|fail` line per job."""

import sys

from redis import Redis
from rq import Queue

import rq_jobs


def main() -> None:
    queue = Queue(sys.argv[1], connection=Redis.from_url("redis://127.0.0.1:6379/0"))
    for i in range(int(sys.argv[2])):
        print(queue.enqueue(rq_jobs.add, i, 1).id, "ok", flush=True)
    for _ in range(int(sys.argv[3])):
        print(queue.enqueue(rq_jobs.boom).id, "fail", flush=True)


if __name__ == "__main__":
    main()
