"""Runs: supervised runs of one spec and sweeps of many trials."""
