"""Records its start, arguments and environment, then behaves as
Z4J_SCHEDULER_STANDIN_MODE says:

* ``exit``: exits at once (status 0, still a crash to the supervisor);
* ``run``: runs until SIGTERM, then exits;
* ``stubborn``: records SIGTERM and keeps running (only SIGKILL ends it).

Every record is one JSON line appended to Z4J_SCHEDULER_STANDIN_LOG. While
running it writes a heartbeat every 50 ms, so the suite can tell when it
died; it exits by itself if its parent goes away (unless
Z4J_SCHEDULER_STANDIN_ORPHAN_EXIT=0, for the case that checks the brain
sees to that).
"""

import json
import os
import signal
import sys
import threading
import time

LOG = os.environ.get("Z4J_SCHEDULER_STANDIN_LOG", "")
MODE = os.environ.get("Z4J_SCHEDULER_STANDIN_MODE", "run")
MARKER = os.environ.get("Z4J_SCHEDULER_STANDIN_MARKER", "")
ORPHAN_EXIT = os.environ.get("Z4J_SCHEDULER_STANDIN_ORPHAN_EXIT", "1") == "1"


def record(event, **fields):
    fields.update(event=event, pid=os.getpid(), t=time.time())
    if LOG:
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(fields) + "\n").encode())
        finally:
            os.close(fd)


def main():
    parent = os.getppid()
    record("start", ppid=parent, argv=sys.argv[1:], env=dict(os.environ),
           pgid=os.getpgid(0))
    print(f"standin hello {MARKER}", flush=True)
    print(f"-----BEGIN PRIVATE KEY----- standin-secret-{MARKER}", file=sys.stderr, flush=True)
    if MODE == "exit":
        record("exit")
        os._exit(0)

    def on_term(signum, frame):
        record("term")
        if MODE != "stubborn":
            os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    while True:
        if ORPHAN_EXIT and os.getppid() != parent:
            record("orphaned")
            os._exit(0)
        record("beat")
        time.sleep(0.05)


if __name__ == "__main__":
    main()
