"""avvp_jax: weakly-supervised audio-visual video parsing in JAX/Flax.

The package import is light: it pulls in neither TensorFlow nor the models. Import submodules as needed,
e.g. `from avvp_jax import metrics`, `from avvp_jax.data import annotations`.
"""

__version__ = "0.1.0"
