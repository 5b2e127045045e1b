"""PyTorch's `nn.LSTM(..., batch_first=True)` in Flax, parameter for parameter.

The AVE models (AVE-ECCV18, PSP, CMBS) encode each modality's ten segments with PyTorch LSTMs. `LSTM` here
computes what `torch.nn.LSTM(input_size, hidden_size, num_layers, batch_first=True, bidirectional=...)`
computes from a zero initial state, and keeps torch's parameters under torch's own names and layouts, so a
converter copies them without reshaping:

  weight_ih_l{k}[_reverse]  [4H, D_k]   input-to-hidden weights of layer k (D_0 = input width,
                                        D_k = H * directions above)
  weight_hh_l{k}[_reverse]  [4H, H]     hidden-to-hidden weights
  bias_ih_l{k}[_reverse]    [4H]        the two bias vectors torch keeps apart (their sum is what acts)
  bias_hh_l{k}[_reverse]    [4H]

The four gate blocks of each are stacked in torch's order (input i, forget f, cell g, output o):

  i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of  x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh
  c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)

The reverse direction runs the same cell from the last step to the first; the outputs of a bidirectional
layer are [forward, reverse] concatenated on the feature axis. Every parameter is initialised as torch does,
uniform in +-1/sqrt(H). Between stacked layers torch applies dropout to the outputs (not after the last
layer), only in training; here too (`train=True`, rngs "dropout").

Use: `LSTM(hidden_size=128)(x_BxTxD, train=False) -> [B, T, 2 * 128]`; `param_shapes(D, H, ...)` gives the
names and shapes a converter checks a state_dict against (prefix them with the torch module's name).
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

NUM_GATES = 4  # i, f, g, o, in torch's order


def param_names(layer: int, reverse: bool) -> tuple[str, str, str, str]:
  """torch's names of one direction of one layer: (weight_ih, weight_hh, bias_ih, bias_hh)."""
  suffix = f"_l{layer}" + ("_reverse" if reverse else "")
  return tuple(f"{name}{suffix}" for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def param_shapes(
    input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = True
) -> dict[str, tuple[int, ...]]:
  """Every parameter of `nn.LSTM(input_size, hidden_size, num_layers, bidirectional=...)`: name -> shape."""
  directions = 2 if bidirectional else 1
  gates = NUM_GATES * hidden_size
  shapes = {}
  for layer in range(num_layers):
    width = input_size if layer == 0 else directions * hidden_size
    for reverse in (False, True)[:directions]:
      w_ih, w_hh, b_ih, b_hh = param_names(layer, reverse)
      shapes.update(
          {w_ih: (gates, width), w_hh: (gates, hidden_size), b_ih: (gates,), b_hh: (gates,)}
      )
  return shapes


def _uniform(limit: float) -> nn.initializers.Initializer:
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -limit, limit)

  return init


def _run_direction(gates_in_BxTxG: jax.Array, weight_hh_GxH: jax.Array, reverse: bool) -> jax.Array:
  """One direction of one layer: the recurrence over T from zero state; returns the hidden states [B, T, H]."""
  batch = gates_in_BxTxG.shape[0]
  hidden = weight_hh_GxH.shape[1]
  zeros_BxH = jnp.zeros((batch, hidden), gates_in_BxTxG.dtype)

  def step(carry, gates_in_BxG):
    h_BxH, c_BxH = carry
    gates_BxG = gates_in_BxG + h_BxH @ weight_hh_GxH.T.astype(h_BxH.dtype)
    i, f, g, o = jnp.split(gates_BxG, NUM_GATES, axis=-1)
    c_BxH = jax.nn.sigmoid(f) * c_BxH + jax.nn.sigmoid(i) * jnp.tanh(g)
    h_BxH = jax.nn.sigmoid(o) * jnp.tanh(c_BxH)
    return (h_BxH, c_BxH), h_BxH

  _, h_TxBxH = jax.lax.scan(
      step, (zeros_BxH, zeros_BxH), jnp.swapaxes(gates_in_BxTxG, 0, 1), reverse=reverse
  )
  return jnp.swapaxes(h_TxBxH, 0, 1)


class LSTM(nn.Module):
  """`torch.nn.LSTM(D, hidden_size, num_layers, batch_first=True, bidirectional=..., dropout=...)` from zero
  state (module docstring: parameter names, layouts, gate order).

  Attributes:
    hidden_size: H, the hidden width of each direction.
    num_layers: stacked layers (the AVE models: 1).
    bidirectional: a reverse direction too (outputs [B, T, 2H]); False: [B, T, H].
    dropout: dropout on the outputs of every layer but the last, in training (torch's `dropout`).
    dtype: computation dtype of the products (None: that of the inputs); params stay float32.
  """

  hidden_size: int
  num_layers: int = 1
  bidirectional: bool = True
  dropout: float = 0.0
  dtype: Dtype | None = None

  @nn.compact
  def __call__(self, inputs_BxTxD: jax.Array, *, train: bool = False) -> jax.Array:
    """Runs the stacked LSTM over the time axis.

    Args:
      inputs_BxTxD: the sequence [B, T, D].
      train: training mode (dropout between layers).

    Returns:
      The last layer's hidden states [B, T, H * directions] (forward, then reverse).
    """
    init = _uniform(1.0 / math.sqrt(self.hidden_size))
    gates = NUM_GATES * self.hidden_size
    x_BxTxD = inputs_BxTxD if self.dtype is None else inputs_BxTxD.astype(self.dtype)
    directions = (False, True) if self.bidirectional else (False,)
    for layer in range(self.num_layers):
      if layer > 0:
        x_BxTxD = nn.Dropout(self.dropout)(x_BxTxD, deterministic=not train)
      width = x_BxTxD.shape[-1]
      outputs = []
      for reverse in directions:
        w_ih, w_hh, b_ih, b_hh = param_names(layer, reverse)
        weight_ih_GxD = self.param(w_ih, init, (gates, width), jnp.float32)
        weight_hh_GxH = self.param(w_hh, init, (gates, self.hidden_size), jnp.float32)
        bias_G = self.param(b_ih, init, (gates,), jnp.float32) + self.param(
            b_hh, init, (gates,), jnp.float32
        )
        gates_in_BxTxG = x_BxTxD @ weight_ih_GxD.T.astype(x_BxTxD.dtype)
        gates_in_BxTxG = gates_in_BxTxG + bias_G.astype(x_BxTxD.dtype)[None, None, :]
        outputs.append(_run_direction(gates_in_BxTxG, weight_hh_GxH, reverse))
      x_BxTxD = jnp.concatenate(outputs, axis=-1)
    return x_BxTxD
