"""Bring your own network: the Lab's per-layer diagnostics recorded from any PyTorch training loop
(`watch`), kept as a Lab-shaped result the charts and the doctor read (`WatchedRun`, `load`)."""

from core.watch.result import WatchedConfig, WatchedRun, load
from core.watch.watcher import Watch, watch

__all__ = ["Watch", "WatchedConfig", "WatchedRun", "load", "watch"]
