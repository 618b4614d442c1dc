"""The peers the service is measured against, on the same agent-definition documents.

`models`: one Django model per Django peer (django-reversion, django-simple-history), each
an agent definition stored as its raw text plus a version number used as the If-Match
token. `eventsourced`: the same agent as an `eventsourcing` aggregate and application.
The app is installed by bench.settings only, so its tables exist in the benchmark
databases and nowhere else.
"""
