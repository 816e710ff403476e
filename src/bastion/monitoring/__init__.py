"""Signals: Prometheus metrics of the gateway and of rollouts (the monitoring issue adds drift,
anomaly scores, SLOs and burn rates here).

May import `bastion.registry` and everything below it.
"""
