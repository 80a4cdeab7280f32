"""Jobs the conformance suite enqueues on a real RQ worker."""

from redis import Redis


def add(x, y):
    return x + y


def boom():
    raise ValueError("conformance job failure")


def flaky(key):
    """Fails on its first run, succeeds on every later one (a retry)."""
    redis = Redis.from_url("redis://127.0.0.1:6379/0")
    attempt = redis.incr(key)
    redis.expire(key, 600)
    if attempt == 1:
        raise ValueError("first attempt fails")
    return attempt
