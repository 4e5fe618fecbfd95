"""The campaign loop: config, seeds, rounds, dispatch, resume."""
