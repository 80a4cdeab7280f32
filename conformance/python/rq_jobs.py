"""Jobs the conformance suite enqueues on a real RQ worker."""


def add(x, y):
    return x + y


def boom():
    raise ValueError("conformance job failure")
