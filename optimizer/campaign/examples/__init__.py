"""Example campaign configs (package data): ``demo-manifold.toml``, ``demo-gmm-toy.toml``."""
