"""Benchmarks of the project; ``python bench/run_all.py`` runs them all and prints one table."""
