"""Runs a real z4j-bare agent (with the z4j-rq engine adapter) against a
brain, for the conformance suite's interop cases.

Configuration comes from the agent's own Z4J_* variables (Z4J_BRAIN_URL,
Z4J_TOKEN, Z4J_PROJECT_ID, Z4J_HMAC_SECRET, Z4J_TRANSPORT, Z4J_AGENT_ID,
Z4J_HOME). The driver adds:

  DRIVER_TASKS   number of synthetic task lifecycles to record (default 0)
  DRIVER_PREFIX  task id prefix (default "drv")

It prints "driver: running" once the runtime started and "driver:
recorded N" after recording. Then each stdin line "record <prefix> <n>"
records n more lifecycles, and "big <prefix> <n> <chars>" n lifecycles
whose received event carries three argument strings of <chars> characters
each (a frame larger than the brain's default 8 KiB body cap); the driver
exits when stdin closes.
"""

import os
import sys
import uuid
from datetime import UTC, datetime

from z4j_bare.install import install_agent
from z4j_core.models.event import Event, EventKind
from z4j_rq.engine import RqEngineAdapter
from z4j_rq.worker_bootstrap import _build_rq_app


def main() -> int:
    rq_app = _build_rq_app(os.environ.get("Z4J_RQ_REDIS_URL", "redis://127.0.0.1:6379/0"))
    if rq_app is None:
        print("driver: redis unavailable", flush=True)
        return 2
    runtime = install_agent(engines=[RqEngineAdapter(rq_app=rq_app)], dev_mode=True, autostart=True)
    print("driver: running", flush=True)
    record(runtime, os.environ.get("DRIVER_PREFIX", "drv"), int(os.environ.get("DRIVER_TASKS", "0")))
    for line in sys.stdin:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "record":
            record(runtime, parts[1], int(parts[2]))
        elif len(parts) == 4 and parts[0] == "big":
            record(runtime, parts[1], int(parts[2]), int(parts[3]))
    runtime.stop(timeout=5.0)
    return 0


def record(runtime, prefix: str, count: int, big: int = 0) -> None:
    nil = uuid.UUID(int=0)
    args = ["a" * big, "b" * big, "c" * big] if big else [1, 2]
    lifecycle = [
        (EventKind.TASK_RECEIVED, {"task_name": "driver.add", "queue": "default", "args": args}),
        (EventKind.TASK_STARTED, {"worker": "driver-worker"}),
        (EventKind.TASK_SUCCEEDED, {"result": 3, "runtime_ms": 5}),
    ]
    for i in range(count):
        for kind, data in lifecycle:
            runtime.record_event(
                Event(
                    id=uuid.uuid4(),
                    project_id=nil,
                    agent_id=nil,
                    engine="rq",
                    task_id=f"{prefix}-{i}",
                    kind=kind,
                    occurred_at=datetime.now(UTC),
                    data=dict(data),
                )
            )
    print(f"driver: recorded {prefix} {count}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
