"""The long-running node: producers, listener, stager, heartbeat and leader plugins."""

from flowstone.queue.runtime.node import Node

__all__ = ["Node"]
