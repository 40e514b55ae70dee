"""A tiny Django app: orders, shipped by a FlowStone worker once their order commits."""
