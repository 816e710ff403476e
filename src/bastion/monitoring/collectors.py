"""Metrics read from the database at scrape time rather than counted in one process: they
must agree across replicas (every download is a row, whichever replica served it)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from bastion.registry import ModelService


class DownloadCollector(Collector):
    """`bastion_model_downloads_total{model, version}`: artifact downloads (the model-theft
    signal), from the registry's download log."""

    def __init__(self, models: ModelService) -> None:
        self._models = models

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "bastion_model_downloads",
            "Model artifact downloads recorded by the registry",
            labels=["model", "version"],
        )
        for model, version, count in self._models.download_counts():
            family.add_metric([model, str(version)], count)
        yield family
