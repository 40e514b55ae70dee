"""FlowStone's benchmark suite: the peer harness's workloads, measured the same way.

Run `python -m benchmarks --help`; results are one JSON line per run plus a table.
"""
