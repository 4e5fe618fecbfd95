"""Ray SMC workers and the supervised actor pool (workers never call the oracle)."""
