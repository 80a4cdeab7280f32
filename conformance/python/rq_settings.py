"""RQ worker settings module (`rq worker -c rq_settings`): installs the z4j
agent into the worker process, as an operator would."""

from z4j_rq import register_worker_bootstrap

register_worker_bootstrap()
