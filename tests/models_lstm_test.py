"""Tests of avvp_jax.models.lstm against torch.nn.LSTM itself (the `parity` extra), with random weights."""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import numpy as np
import torch

from avvp_jax.models import lstm
import torch_oracles


def _torch_lstm(input_size, hidden, num_layers, bidirectional, seed=0):
  torch.manual_seed(seed)
  module = torch.nn.LSTM(
      input_size, hidden, num_layers, batch_first=True, bidirectional=bidirectional
  )
  return torch_oracles.randomize(module, seed)


def _params(module: torch.nn.Module) -> dict[str, np.ndarray]:
  return {name: value.detach().numpy() for name, value in module.state_dict().items()}


class LSTMTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.enter_context(jax.numpy_rank_promotion("raise"))

  @parameterized.named_parameters(
      ("ave_audio", 128, 128, 1, True),  # AVE-ECCV18's lstm_audio
      ("small_bidirectional", 12, 8, 1, True),
      ("unidirectional", 12, 8, 1, False),
      ("two_layers", 12, 8, 2, True),
  )
  def test_matches_torch(self, input_size, hidden, num_layers, bidirectional):
    reference = _torch_lstm(input_size, hidden, num_layers, bidirectional)
    inputs = np.random.default_rng(1).normal(size=(3, 10, input_size)).astype(np.float32)
    with torch.no_grad():
      expected = reference(torch.from_numpy(inputs))[0].numpy()
    module = lstm.LSTM(hidden, num_layers=num_layers, bidirectional=bidirectional)
    got = module.apply({"params": _params(reference)}, inputs)
    self.assertEqual(got.shape, (3, 10, hidden * (2 if bidirectional else 1)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)

  def test_reverse_direction_reads_the_future(self):
    module = lstm.LSTM(4)
    inputs = np.random.default_rng(0).normal(size=(1, 10, 3)).astype(np.float32)
    params = module.init(jax.random.key(0), inputs)
    changed = inputs.copy()
    changed[:, -1] += 1.0  # only the last step
    got, got_changed = (module.apply(params, x) for x in (inputs, changed))
    np.testing.assert_array_equal(got[:, :-1, :4], got_changed[:, :-1, :4])  # forward: causal
    self.assertGreater(float(np.abs(got[:, 0, 4:] - got_changed[:, 0, 4:]).max()), 1e-4)

  def test_params_have_torch_names_shapes_and_init(self):
    module = lstm.LSTM(8, num_layers=2)
    inputs = np.zeros((2, 10, 5), np.float32)
    params = module.init(jax.random.key(0), inputs)["params"]
    reference = _params(torch.nn.LSTM(5, 8, 2, batch_first=True, bidirectional=True))
    self.assertEqual(
        {k: v.shape for k, v in params.items()}, {k: v.shape for k, v in reference.items()}
    )
    self.assertEqual(lstm.param_shapes(5, 8, 2), {k: v.shape for k, v in reference.items()})
    for value in params.values():
      self.assertLessEqual(float(np.abs(value).max()), 1 / np.sqrt(8))
      self.assertGreater(float(np.abs(value).max()), 0.5 / np.sqrt(8))

  def test_dropout_between_layers_only_in_training(self):
    module = lstm.LSTM(8, num_layers=2, dropout=0.5)
    inputs = np.random.default_rng(0).normal(size=(2, 10, 5)).astype(np.float32)
    params = module.init(jax.random.key(0), inputs)
    evaluated = module.apply(params, inputs, rngs={"dropout": jax.random.key(1)})
    trained = module.apply(params, inputs, train=True, rngs={"dropout": jax.random.key(1)})
    np.testing.assert_array_equal(evaluated, module.apply(params, inputs))
    self.assertGreater(float(np.abs(trained - evaluated).max()), 1e-3)


if __name__ == "__main__":
  absltest.main()
