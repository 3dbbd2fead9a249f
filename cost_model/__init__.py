"""The cost model: price sets, site scenarios, per-architecture estimates and the projection of a run to a month."""
