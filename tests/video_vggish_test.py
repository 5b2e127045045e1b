"""avvp_jax.video.vggish against two oracles written here, independently of the module.

1. Log-mel examples: a float64, frame-by-frame numpy transcription of VGGish's reference
   (tensorflow/models research/audioset/vggish: `mel_features.frame`, `periodic_hann`, `stft_magnitude`,
   `hertz_to_mel`, `spectrogram_to_mel_matrix` (its per-band loop), `log_mel_spectrogram`, and
   `vggish_input.waveform_to_examples` with `vggish_params`' numbers), and of the AVE/AVVP author's
   per-second `vggish_input.wavfile_to_examples` (YapengTian/AVE-ECCV18: the reference's
   `waveform_to_examples` of each second on its own). The module is vectorised: float64 numpy in
   `waveform_to_examples` (as the reference computes; equal to 1e-6, its float32 output's rounding), float32
   jnp in the batched `log_mel_examples` (F32_ATOL below).
2. The network: a plain-torch transcription of torchaudio's VGGish (`_vggish_impl.py`: the same
   `features_network` / `embedding_network` Sequentials, so its `state_dict()` has the bundle's keys, and
   the NCHW -> NHWC permute before flattening), randomly initialised; its state_dict goes through
   `params_from_state_dict`.
torch is the `video` extra, required here.
"""

from absl.testing import absltest
import jax
import numpy as np
import torch
from torch import nn

from avvp_jax.errors import InputError
from avvp_jax.video import vggish

# --- oracle 1: the reference's log-mel examples, transcribed (float64, loops) ---------------------------

REF_SAMPLE_RATE = 16000
REF_WINDOW_SECS, REF_HOP_SECS = 0.025, 0.010
REF_BANDS, REF_MEL_MIN, REF_MEL_MAX, REF_LOG_OFFSET = 64, 125, 7500, 0.01
REF_EXAMPLE_WINDOW_SECS = REF_EXAMPLE_HOP_SECS = 0.96
# waveform_to_examples computes in float64 and returns float32: only the output's rounding (<= 3e-7 here).
F64_ATOL = 1e-6
# log_mel_examples computes in float32: the FFT's rounding, ~1e-7 of a frame's norm, is largest in log
# terms in a quiet band beside loud tones (error / (mel + 0.01)); over 8 seeds of _test_waveform the
# largest deviation was 1.1e-5, in 3 of 491520 values (all others below 1e-5).
F32_ATOL = 3e-5


def _ref_frame(data, window_length, hop_length):
  """mel_features.frame: complete frames only (as_strided there; a loop here)."""
  count = 1 + int(np.floor((data.shape[0] - window_length) / hop_length))
  rows = [data[i * hop_length : i * hop_length + window_length] for i in range(max(count, 0))]
  return np.stack(rows) if rows else np.zeros((0, window_length) + data.shape[1:])


def _ref_hertz_to_mel(hz):
  return 1127.0 * np.log(1.0 + (hz / 700.0))


def _ref_mel_matrix(num_mel_bins, num_spectrogram_bins, audio_sample_rate, lower_hz, upper_hz):
  """mel_features.spectrogram_to_mel_matrix."""
  nyquist = audio_sample_rate / 2.0
  bins_mel = _ref_hertz_to_mel(np.linspace(0.0, nyquist, num_spectrogram_bins))
  edges = np.linspace(_ref_hertz_to_mel(lower_hz), _ref_hertz_to_mel(upper_hz), num_mel_bins + 2)
  matrix = np.empty((num_spectrogram_bins, num_mel_bins))
  for i in range(num_mel_bins):
    lower, center, upper = edges[i : i + 3]
    lower_slope = (bins_mel - lower) / (center - lower)
    upper_slope = (upper - bins_mel) / (upper - center)
    matrix[:, i] = np.maximum(0.0, np.minimum(lower_slope, upper_slope))
  matrix[0, :] = 0.0
  return matrix


def _ref_log_mel(data, sample_rate):
  """mel_features.log_mel_spectrogram (stft_magnitude frame by frame)."""
  window_length = int(round(sample_rate * REF_WINDOW_SECS))
  hop_length = int(round(sample_rate * REF_HOP_SECS))
  fft_length = 2 ** int(np.ceil(np.log(window_length) / np.log(2.0)))
  window = 0.5 - (0.5 * np.cos(2 * np.pi / window_length * np.arange(window_length)))
  frames = _ref_frame(data, window_length, hop_length)
  spectrogram = np.zeros((frames.shape[0], fft_length // 2 + 1))
  for f in range(frames.shape[0]):
    spectrogram[f] = np.abs(np.fft.rfft(frames[f] * window, int(fft_length)))
  matrix = _ref_mel_matrix(REF_BANDS, spectrogram.shape[1], sample_rate, REF_MEL_MIN, REF_MEL_MAX)
  return np.log(np.dot(spectrogram, matrix) + REF_LOG_OFFSET)


def _ref_waveform_to_examples(data, sample_rate=REF_SAMPLE_RATE):
  """vggish_input.waveform_to_examples (16-kHz input: no resampling)."""
  assert sample_rate == REF_SAMPLE_RATE
  data = np.asarray(data, np.float64)
  if len(data.shape) > 1:
    data = np.mean(data, axis=1)
  log_mel = _ref_log_mel(data, sample_rate)
  features_sample_rate = 1.0 / REF_HOP_SECS
  window = int(round(REF_EXAMPLE_WINDOW_SECS * features_sample_rate))
  hop = int(round(REF_EXAMPLE_HOP_SECS * features_sample_rate))
  return _ref_frame(log_mel, window, hop)


def _ref_ave_examples(data, num_secs, sample_rate=REF_SAMPLE_RATE):
  """AVE-ECCV18 vggish_input.wavfile_to_examples after reading: each second on its own."""
  log_mel = np.zeros([num_secs, 96, 64])
  for i in range(num_secs):
    log_mel[i, :, :] = _ref_waveform_to_examples(
        data[i * sample_rate : (i + 1) * sample_rate], sample_rate
    )
  return log_mel


def _test_waveform(num_samples, seed=0):
  """Tones (steady, swept, amplitude-modulated) + noise, with a silent stretch, in [-1, 1]."""
  rng = np.random.default_rng(seed)
  t = np.arange(num_samples) / REF_SAMPLE_RATE
  wave = 0.3 * np.sin(2 * np.pi * 440.0 * t)
  wave += (
      0.2 * np.sin(2 * np.pi * (1000.0 * t + 150.0 * t**2)) * (0.5 + 0.5 * np.sin(2 * np.pi * t))
  )
  wave += 0.1 * np.sin(2 * np.pi * 6123.4 * t + 0.3)
  wave += 0.05 * rng.standard_normal(num_samples)
  wave[int(0.31 * num_samples) : int(0.37 * num_samples)] = 0.0
  return np.clip(wave, -1.0, 1.0).astype(np.float32)


# --- oracle 2: torchaudio's VGGish network, transcribed ---------------------------------------------------


def _torch_features_network():
  layers = []
  for in_dim, out_dim in [(1, 64), (64, 128)]:
    layers += [nn.Conv2d(in_dim, out_dim, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2, 2)]
  for in_dim, out_dim in [(128, 256), (256, 512)]:
    layers += [nn.Conv2d(in_dim, out_dim, 3, 1, 1), nn.ReLU()]
    layers += [nn.Conv2d(out_dim, out_dim, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2, 2)]
  return nn.Sequential(*layers)


class _TorchVGGish(nn.Module):

  def __init__(self):
    super().__init__()
    self.features_network = _torch_features_network()
    self.embedding_network = nn.Sequential(
        nn.Linear(512 * 4 * 6, 4096),
        nn.ReLU(),
        nn.Linear(4096, 4096),
        nn.ReLU(),
        nn.Linear(4096, 128),
        nn.ReLU(),
    )

  def forward(self, x):  # [N, 1, 96, 64]
    x = self.features_network(x)
    x = x.permute(0, 2, 3, 1)
    return self.embedding_network(x.reshape(x.size(0), -1))


def _torch_model(seed=0):
  torch.manual_seed(seed)
  model = _TorchVGGish().eval()
  with torch.no_grad():  # biases away from torch's tiny defaults, so every bias matters
    for module in model.modules():
      if isinstance(module, (nn.Conv2d, nn.Linear)):
        module.bias.uniform_(-0.05, 0.05)
  return model


def _numpy_state_dict(model):
  return {key: value.detach().numpy().copy() for key, value in model.state_dict().items()}


class LogMelTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    # The batched log-mel broadcasts explicitly, so it runs where a user sets rank promotion to "raise".
    self.enter_context(jax.numpy_rank_promotion("raise"))

  def test_reference_alignment_matches_the_reference(self):
    waveform = _test_waveform(160000)
    ours = vggish.waveform_to_examples(waveform)
    ref = _ref_waveform_to_examples(waveform)
    self.assertEqual(ours.shape, (10, 96, 64))
    self.assertEqual(ours.dtype, np.float32)
    self.assertEqual(ref.shape, (10, 96, 64))
    np.testing.assert_allclose(ours, ref, atol=F64_ATOL, rtol=0)
    self.assertLess(ref.min(), -4.0)  # the silent stretch: log(0.01) = -4.6
    self.assertGreater(ref.max(), 0.5)
    batched = np.asarray(vggish.log_mel_examples(waveform[None]))
    self.assertEqual(batched.shape, (1, 10, 96, 64))
    np.testing.assert_allclose(batched[0], ref, atol=F32_ATOL, rtol=0)

  def test_seconds_alignment_matches_the_ave_per_second_loop(self):
    waveform = _test_waveform(160000, seed=1)
    ours = vggish.waveform_to_examples(waveform, alignment=vggish.LLP_ALIGNMENT)
    ave = _ref_ave_examples(waveform, 10)
    np.testing.assert_allclose(ours, ave, atol=F64_ATOL, rtol=0)
    batched = vggish.log_mel_examples(waveform[None], alignment=vggish.LLP_ALIGNMENT)
    np.testing.assert_allclose(np.asarray(batched)[0], ave, atol=F32_ATOL, rtol=0)
    # ... and the alignments differ after the first example (0.96 s vs 1 s apart).
    reference = vggish.waveform_to_examples(waveform)
    np.testing.assert_allclose(ours[0], reference[0], atol=1e-6)
    self.assertGreater(np.abs(ours[5] - reference[5]).max(), 0.1)

  def test_counts_follow_the_reference(self):
    self.assertEqual(vggish.num_frames(160000), 998)
    self.assertEqual(vggish.num_examples(160000), 10)
    self.assertEqual(vggish.num_examples(160000, "seconds"), 10)
    for num_samples in (15600, 15759, 31199, 31200, 47999, 48000, 170000):
      ref = _ref_waveform_to_examples(_test_waveform(num_samples, seed=num_samples))
      ours = vggish.waveform_to_examples(_test_waveform(num_samples, seed=num_samples))
      self.assertEqual(ours.shape, ref.shape, num_samples)
      np.testing.assert_allclose(ours, ref, atol=F64_ATOL, rtol=0)
    for num_samples in (0, 399, 15599):
      self.assertEqual(vggish.waveform_to_examples(np.zeros(num_samples)).shape, (0, 96, 64))
    # seconds: one example per second whose first 15600 samples exist.
    self.assertEqual(vggish.num_examples(31599, "seconds"), 1)
    self.assertEqual(vggish.num_examples(31600, "seconds"), 2)

  def test_batched_and_stereo(self):
    waveforms = np.stack([_test_waveform(48000, seed=s) for s in range(3)])
    batched = np.asarray(vggish.log_mel_examples(waveforms))
    self.assertEqual(batched.shape, (3, 3, 96, 64))
    for b in range(3):
      ref = _ref_waveform_to_examples(waveforms[b])
      np.testing.assert_allclose(batched[b], ref, atol=F32_ATOL, rtol=0)
    stereo = np.stack(
        [waveforms[0], waveforms[1]], axis=1
    )  # [S, 2], averaged as the reference does
    np.testing.assert_allclose(
        vggish.waveform_to_examples(stereo),
        _ref_waveform_to_examples(stereo),
        atol=F64_ATOL,
        rtol=0,
    )

  def test_bad_input_is_one_line(self):
    for call in (
        lambda: vggish.waveform_to_examples(np.zeros(16000), sample_rate=44100),
        lambda: vggish.waveform_to_examples(np.zeros((2, 3, 4))),
        lambda: vggish.waveform_to_examples(np.zeros(16000), alignment="centre"),
    ):
      with self.assertRaises(InputError) as caught:
        call()
      self.assertNotIn("\n", str(caught.exception))


class NetworkTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model = _torch_model()
    cls.state_dict = _numpy_state_dict(cls.model)
    cls.examples = _ref_waveform_to_examples(_test_waveform(64000, seed=3)).astype(
        np.float32
    )  # [6,..]
    with torch.no_grad():
      x = torch.from_numpy(cls.examples)[:, None]
      cls.expected = cls.model(x).numpy()
      cls.expected_pre = cls.model.embedding_network[:-1](
          cls.model.features_network(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1)
      ).numpy()

  def test_matches_torch(self):
    params = vggish.params_from_state_dict(self.state_dict)
    ours = np.asarray(vggish.embed(params, self.examples))
    self.assertEqual(ours.shape, (self.examples.shape[0], 128))
    scale = np.abs(self.expected).max()
    self.assertGreater(scale, 1e-3)
    self.assertGreater((self.expected > 0).mean(), 0.1)  # not a dead ReLU
    np.testing.assert_allclose(ours, self.expected, atol=1e-5 * scale, rtol=0)

  def test_pre_activation_embedding(self):
    params = vggish.params_from_state_dict(self.state_dict)
    ours = vggish.VGGish(final_relu=False).apply({"params": params}, self.examples)
    scale = np.abs(self.expected_pre).max()
    self.assertLess(self.expected_pre.min(), 0.0)
    np.testing.assert_allclose(np.asarray(ours), self.expected_pre, atol=1e-5 * scale, rtol=0)

  def test_torchvggish_names_are_accepted(self):
    renamed = {
        key.replace("features_network.", "features.").replace(
            "embedding_network.", "embeddings."
        ): v
        for key, v in self.state_dict.items()
    }
    params = vggish.params_from_state_dict(renamed)
    reference = vggish.params_from_state_dict(self.state_dict)
    jax.tree.map(np.testing.assert_array_equal, params, reference)

  def test_init_params_has_the_converted_structure(self):
    random = jax.eval_shape(vggish.init_params, jax.random.key(0))  # traced, not run (50M draws)
    converted = vggish.params_from_state_dict(self.state_dict)
    shapes = lambda tree: jax.tree.map(lambda x: (x.shape, str(x.dtype)), tree)
    self.assertEqual(shapes(random), shapes(converted))

  def test_bad_state_dict_is_one_line_naming_the_key(self):
    missing = dict(self.state_dict)
    del missing["features_network.8.bias"]
    extra = dict(self.state_dict, **{"embedding_network.6.weight": np.zeros((1,))})
    misshaped = dict(self.state_dict, **{"embedding_network.4.weight": np.zeros((128, 2048))})
    for state_dict, key in (
        (missing, "features_network.8.bias"),
        (extra, "embedding_network.6.weight"),
        (misshaped, "embedding_network.4.weight"),
    ):
      with self.assertRaises(InputError) as caught:
        vggish.params_from_state_dict(state_dict)
      self.assertIn(key, str(caught.exception))
      self.assertNotIn("\n", str(caught.exception))


if __name__ == "__main__":
  absltest.main()
