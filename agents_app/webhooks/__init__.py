"""Webhooks: subscribers that follow the event log, each from its own checkpoint (API.md "Webhooks").

services.py: subscriptions (create, change, delete, redeliver) and the delivery runner;
delivery.py: one signed HTTP POST to a checked address; selectors.py: reads.
"""
