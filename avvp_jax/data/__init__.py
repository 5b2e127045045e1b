"""Task-free data: `streams`, every task's per-host, seeded, resumable, padded input path over its TFDS build.

A task's own data (its annotations, features, TFDS builder) live in its package (`avvp_jax/tasks/<family>/`).
"""
