"""The runtime: verified model loading, input contracts at the gateway, routing between the
stable, canary and shadow versions of an endpoint, rate limits and prediction receipts.

May import `bastion.deploy`, `bastion.monitoring` and everything below them; never the API,
CLI or platform.
"""
