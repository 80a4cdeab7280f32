"""A stand-in for z4j-scheduler used by the conformance suite's embedded
scheduler cases: the brain runs it as `<python> -m z4j_scheduler serve`
(PYTHONPATH points here) and it records what it saw and when."""
