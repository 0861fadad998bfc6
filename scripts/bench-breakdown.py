"""Summarises withdrawd's latency histograms from a Prometheus text scrape on stdin:
mean and approximate p50/p99 (bucket upper bounds) per histogram and label set."""
import re
import sys
from collections import defaultdict

WANTED = (
    "withdraw_intake_request_seconds",
    "withdraw_intake_commit_seconds",
    "withdraw_sqlite_write_wait_seconds",
    "withdraw_sqlite_write_hold_seconds",
    "withdraw_stage_batch_seconds",
    "withdraw_nonce_check_seconds",
    "withdraw_nonce_owners_seconds",
)
buckets = defaultdict(list)
sums, counts = {}, {}
for line in sys.stdin:
    m = re.match(r'^(\w+?)(_bucket|_sum|_count)(\{[^}]*\})? ([0-9.eE+-]+|\+Inf)$', line.strip())
    if not m or m.group(1) not in WANTED:
        continue
    name, kind, labels, value = m.group(1), m.group(2), m.group(3) or "", float(m.group(4))
    le = re.search(r'le="([^"]+)"', labels)
    key = (name, re.sub(r',?le="[^"]+"', "", labels).replace("{}", ""))
    if kind == "_bucket":
        buckets[key].append((float("inf") if le.group(1) == "+Inf" else float(le.group(1)), value))
    elif kind == "_sum":
        sums[key] = value
    else:
        counts[key] = value


def quantile(bs, q):
    bs = sorted(bs)
    total = bs[-1][1] if bs else 0
    for bound, c in bs:
        if total and c >= q * total:
            return bound
    return float("nan")


print("where the time goes (withdrawd's histograms; p50/p99 are bucket upper bounds):")
for key in sorted(counts):
    n = counts[key]
    if not n:
        continue
    mean = sums.get(key, 0) / n * 1000
    p50, p99 = quantile(buckets[key], 0.5) * 1000, quantile(buckets[key], 0.99) * 1000
    print(f"  {key[0]}{key[1]:<22} n={int(n):>7}  mean {mean:7.2f} ms  p50 <= {p50:g} ms  p99 <= {p99:g} ms")
