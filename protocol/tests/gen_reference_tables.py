"""Regenerates tests/data/python_reference_tables.json from CPython 3.11.

The protocol crate must print floats as CPython's repr() does and read
timestamps as datetime.fromisoformat() does. This script asks CPython itself
for a large deterministic sample of both, so the Rust tests compare against
the real thing rather than against our reading of its source.

    python3 protocol/tests/gen_reference_tables.py
"""
import json
import random
import struct
import sys
from datetime import datetime, timezone

assert sys.version_info[:2] == (3, 11), "the reference brain runs on CPython 3.11"
rng = random.Random(20261126)

floats = []
for _ in range(4000):  # uniformly random bit patterns: every exponent
    bits = rng.getrandbits(64)
    (x,) = struct.unpack("<d", struct.pack("<Q", bits))
    if x != x or x in (float("inf"), float("-inf")):
        continue
    floats.append(x)
for exp in range(-330, 310):  # every decimal magnitude, and its neighbours
    for mant in (1, 1.5, 9.999999999999999, 2.2250738585072014):
        try:
            floats.append(float(f"{mant}e{exp}"))
        except OverflowError:
            pass
for _ in range(2000):  # "human" decimals like 0.1, 123.45
    floats.append(round(rng.uniform(-1e6, 1e6), rng.randint(0, 8)))
floats = [x for x in floats if x == x and abs(x) != float("inf")]
float_rows = [{"bits": struct.unpack("<Q", struct.pack("<d", x))[0], "repr": repr(x)} for x in floats]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
iso_inputs = [
    "2026-05-01T12:00:00+00:00", "2026-05-01T12:00:00", "2026-05-01", "20260501",
    "2026-05-01T12", "2026-05-01T12:30", "2026-05-01T1230", "2026-05-01T123045",
    "2026-05-01T12:30:45.5", "2026-05-01T12:30:45,5", "2026-05-01T12:30:45.123456789",
    "2026-05-01T12.5", "2026-05-01T123045678", "2026-05-01T12:30:45:11",
    "2026-05-01 12:00:00+02:00", "2026-05-01x12:00:00-05:30", "2026-05-01T12:00:00+0530",
    "2026-05-01T12:00:00+05", "2026-05-01T12:00:00+05:30:15", "2026-05-01T12:00:00+05:30:15.5",
    "2026-05-01T12:00:00+053015.25", "2026-05-01T12:00:00-00:00", "2026-05-01T12:00:00+24:00",
    "2026-05-01T12:00:00+23:59", "2026-W18", "2026-W18-5", "2026W18", "2026W185", "2026W18T12",
    "2026-W18-5T12:00Z", "2026-W53", "2020-W53-7", "2026-W00", "2026-05-01T24:00:00",
    "2026-02-29", "2024-02-29T00:00Z", "0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59.999999+00:00",
    "2026-05-01T12:00:00.", "2026-05-01T12:00:00+", "2026-05-01T12:00:00+1", "2026-05-01T12:00:00+123",
    "2026-05-01T12:00:00Z", "2026-05-01T12:00:00z", "2026-05-01T", "2026-05-01TT", "2026-5-01",
    "garbage", "", "2026-05-01T12:00:00 +00:00", "2026-05-01T12:0", "2026-05-01T1:00",
    "2026-05-01T12:00:00.000001+00:00", "+2026-05-01", "2026-05-01é12:00", "２０２６-05-01",
]
alphabet = "0123456789-:T .,+Z"
base = "2026-05-01T12:30:45.123456+01:00"
for _ in range(3000):  # random mutations of a valid stamp
    s = list(base)
    for _ in range(rng.randint(1, 3)):
        op = rng.randint(0, 2)
        i = rng.randrange(len(s) + 1)
        if op == 0 and s:
            s[min(i, len(s) - 1)] = rng.choice(alphabet)
        elif op == 1:
            s.insert(i, rng.choice(alphabet))
        elif s:
            del s[min(i, len(s) - 1)]
    iso_inputs.append("".join(s))
iso_rows = []
for text in iso_inputs:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        iso_rows.append({"input": text, "ok": False})
        continue
    aware = dt.tzinfo is not None
    d = dt if aware else dt.replace(tzinfo=timezone.utc)
    delta = d - EPOCH
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    iso_rows.append({"input": text, "ok": True, "micros": micros, "aware": aware})

out = {
    "generator": "protocol/tests/gen_reference_tables.py",
    "python": sys.version.split()[0],
    "float_repr": float_rows,
    "fromisoformat": iso_rows,
}
path = __file__.rsplit("/", 1)[0] + "/data/python_reference_tables.json"
with open(path, "w") as f:
    json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
print(f"wrote {len(float_rows)} floats, {len(iso_rows)} timestamps to {path}")
