"""mpgo benchmarks: the workloads W1–W9 of shared/PERF.md, mpgo against its peers.

Run ``python -m benchmarks --help``.  Each workload lives in its own module,
which defines ``workload(cfg) -> Workload`` and its case functions.
"""

WORKLOADS = {
    "W1": "w1_cpu",
    "W2": "w2_tiny",
    "W3": "w3_local_chan",
    "W4": "w4_cross_chan",
    "W5": "w5_pingpong",
    "W6": "w6_spawn",
    "W7": "w7_startup",
    "W8": "w8_sync",
    "W9": "w9_pipeline",
    "W10": "w10_http",  # issue 7: HTTP under wrk, mpgo vs gevent
}
