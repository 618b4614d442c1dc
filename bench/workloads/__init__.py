"""The workloads of issue 7 (one module each, W1-W6) and what they share.

common: databases, Django set-up, results and timing; documents: the texts every system
stores; systems: this project, the peers and raw psycopg behind one interface; suite:
sizes and the run's state; profiling: pyinstrument summaries and query counts.
"""
