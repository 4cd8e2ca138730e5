"""Tests of the store simulator (edge.sim)."""
