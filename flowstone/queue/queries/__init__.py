"""All SQL of the queue layer, one module per table; values are always bound parameters."""
