"""VGGish audio features: 16-kHz waveform -> log-mel examples -> 128-d embeddings (Flax, batched).

Two halves, as in VGGish's reference (tensorflow/models research/audioset/vggish):

1. Log-mel examples (`waveform_to_examples`, batched `log_mel_examples`), the recipe of `vggish_input.py`
   and `mel_features.py` with `vggish_params.py`'s numbers: 16 kHz mono; frames of 25 ms (400 samples)
   every 10 ms (160 samples), no padding; a periodic Hann window; |rfft| of length 512 (the next power of
   two); 64 mel bands from 125 to 7500 Hz, triangles in HTK mel (1127 ln(1 + f / 700)), DC bin excluded;
   log(mel + 0.01); then examples of 96 frames (0.96 s). A waveform of S samples has
   F = 1 + (S - 400) // 160 frames; a 10-s window (S = 160000) has F = 998.

   Where the examples start (`alignment`):
     "reference": every 96 frames (0.96 s), `vggish_input.waveform_to_examples`: N = 1 + (F - 96) // 96,
       example i = frames [96 i, 96 i + 96), starting 0.96 i s into the waveform. A 10-s window gives
       10 examples covering 0-9.6 s (plus the last frame's 15 ms); its last 0.385 s is unused.
     "seconds": one example at the start of every second, as the AVE/AVVP author's own
       `vggish_input.wavfile_to_examples` computes them (YapengTian/AVE-ECCV18 `vggish_input.py`; the
       AVVP-ECCV20 README's "audio feature extractor" link is, per jasongief/CPSP#4, the AVE repo's
       feature scripts; the Drive archive itself could not be read here): for i in 0..9, the reference
       `waveform_to_examples` of second i alone (samples [16000 i, 16000 (i + 1))), which has 98 frames
       and yields one example, its first 96. Frame j of second i starts at sample 16000 i + 160 j =
       160 (100 i + j), so this is frames [100 i, 100 i + 96) of the whole waveform:
       N = 1 + (F - 96) // 100, 10 for a 10-s window. This is `LLP_ALIGNMENT`, the framing the released
       LLP features most likely have. (The author's script reads moviepy's 16-kHz int16 stereo WAV and
       averages the channels; a float decode differs by that int16 rounding, ~3e-5 of full scale.)
   A waveform too short for one example (S < 15600 samples) gives N = 0. Only 16-kHz input is accepted
   (the reference resamples other rates with resampy; the decoder already delivers 16 kHz): another rate
   is an InputError. [S, C] input is averaged over channels first, as the reference does.

2. The network (`VGGish`), as torchaudio's VGGish bundle (`torchaudio.prototype.pipelines.VGGISH`,
   torchaudio 2.1-2.8, `_vggish_impl.py`, ported from harritaylor/torchvggish): [N, 96, 64] log-mel as an
   NHWC image [N, 96, 64, 1]; conv3x3 64, maxpool 2; conv 128, pool; conv 256, 256, pool; conv 512, 512,
   pool (ReLU after every conv) -> [N, 6, 4, 512]; flattened in NHWC order (torchaudio permutes its NCHW
   map to NHWC before flattening, as TF did) -> 12288; FC 4096, ReLU, 4096, ReLU, 128, ReLU -> [N, 128].

   The final ReLU (`final_relu`, default True): torchaudio's bundle and torchvggish have it, and so did
   tensorflow/models' `vggish_slim.py` until PR #9080 (2020-08-10: "VGGish embeddings are
   pre-activation, not post-activation"). The AVE (2018) features, and the AVVP (ECCV 2020) ones made
   with the same scripts, predate it, and those scripts take `vggish/embedding` without the
   PCA/quantisation `Postprocessor` (their `pca_params_path` is set but never used): LLP's audio
   features should be the raw, non-negative, post-ReLU embedding (no released file was readable here to
   confirm the value range). No PCA, no 8-bit quantisation here.

Weights: torchaudio's `models/vggish.pt` (`WEIGHT_FILE`), a state_dict with keys
`features_network.{0,3,6,8,11,13}.{weight,bias}` and `embedding_network.{0,2,4}.{weight,bias}`;
`params_from_state_dict` converts it (torchvggish's `features.*` / `embeddings.*` names are accepted too).
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from avvp_jax.errors import InputError
from avvp_jax.video import weights as weights_lib

PyTree = Any

# vggish_params.py
SAMPLE_RATE = 16000
WINDOW_SAMPLES = 400  # 0.025 s
HOP_SAMPLES = 160  # 0.010 s
FFT_LENGTH = 512  # 2 ** ceil(log2(400))
NUM_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # 0.96 s
EMBEDDING_SIZE = 128
_MEL_BREAK_FREQUENCY_HERTZ = 700.0
_MEL_HIGH_FREQUENCY_Q = 1127.0

# alignment -> frames between the starts of consecutive examples
EXAMPLE_HOPS = {"reference": 96, "seconds": SAMPLE_RATE // HOP_SAMPLES}
# How the released LLP / AVE audio features were framed (see the module docstring).
LLP_ALIGNMENT = "seconds"

WEIGHT_FILE = weights_lib.WeightFile(
    name="vggish.pt",
    url="https://download.pytorch.org/torchaudio/models/vggish.pt",
    source=(
        "torchaudio's VGGish bundle, torchaudio.prototype.pipelines.VGGISH (torchaudio 2.1-2.8; "
        "torchaudio.utils.download_asset('models/vggish.pt'), cached as "
        "$TORCH_HOME/hub/torchaudio/models/vggish.pt), ported from harritaylor/torchvggish"
    ),
    library_cache_path="torchaudio/models/vggish.pt",
)
# The file holds these float32 parameters (about 288.6 MB; the exact byte size was not checkable offline).
WEIGHT_FILE_PARAMETERS = 72_141_184

# torchaudio state_dict prefix -> Flax module name (the TF checkpoint's scopes)
_LAYERS = {
    "features_network.0": "conv1",
    "features_network.3": "conv2",
    "features_network.6": "conv3_1",
    "features_network.8": "conv3_2",
    "features_network.11": "conv4_1",
    "features_network.13": "conv4_2",
    "embedding_network.0": "fc1_1",
    "embedding_network.2": "fc1_2",
    "embedding_network.4": "fc2",
}
_CONV_WIDTHS = (("conv1", 64), ("conv2", 128), ("conv3_1", 256), ("conv3_2", 256))
_CONV_WIDTHS += (("conv4_1", 512), ("conv4_2", 512))
_POOL_AFTER = ("conv1", "conv2", "conv3_2", "conv4_2")  # 2x2 max-pools, stride 2
# Flax name -> the torch weight's shape ([out, in, kh, kw] or [out, in]).
_TORCH_SHAPES = {
    "conv1": (64, 1, 3, 3),
    "conv2": (128, 64, 3, 3),
    "conv3_1": (256, 128, 3, 3),
    "conv3_2": (256, 256, 3, 3),
    "conv4_1": (512, 256, 3, 3),
    "conv4_2": (512, 512, 3, 3),
    "fc1_1": (4096, 512 * 6 * 4),
    "fc1_2": (4096, 4096),
    "fc2": (EMBEDDING_SIZE, 4096),
}
# torchvggish (harritaylor) names the same layers features.* / embeddings.*
_ALIASES = {"features.": "features_network.", "embeddings.": "embedding_network."}


# --- log-mel examples -------------------------------------------------------------------------------


def hertz_to_mel(frequencies_hertz: np.ndarray) -> np.ndarray:
  """HTK mel: 1127 ln(1 + f / 700)."""
  return _MEL_HIGH_FREQUENCY_Q * np.log1p(
      np.asarray(frequencies_hertz) / _MEL_BREAK_FREQUENCY_HERTZ
  )


@functools.lru_cache(maxsize=None)
def mel_matrix() -> np.ndarray:
  """The [257, 64] float64 matrix M with mel = |rfft| @ M (triangles in mel, DC row zero)."""
  bins_mel = hertz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2.0, FFT_LENGTH // 2 + 1))[:, None]
  edges = np.linspace(hertz_to_mel(MEL_MIN_HZ), hertz_to_mel(MEL_MAX_HZ), NUM_BANDS + 2)
  lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
  rising = (bins_mel - lower) / (center - lower)
  falling = (upper - bins_mel) / (upper - center)
  matrix = np.maximum(0.0, np.minimum(rising, falling))
  matrix[0, :] = 0.0
  matrix.flags.writeable = False
  return matrix


@functools.lru_cache(maxsize=None)
def periodic_hann() -> np.ndarray:
  """The [400] periodic Hann window, 0.5 - 0.5 cos(2 pi n / 400)."""
  window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(WINDOW_SAMPLES) / WINDOW_SAMPLES)
  window.flags.writeable = False
  return window


def num_frames(num_samples: int) -> int:
  """STFT frames of a waveform of `num_samples` samples (no padding): 998 for 160000."""
  return 0 if num_samples < WINDOW_SAMPLES else 1 + (num_samples - WINDOW_SAMPLES) // HOP_SAMPLES


def num_examples(num_samples: int, alignment: str = "reference") -> int:
  """Log-mel examples of a waveform of `num_samples` samples: 10 for 160000 (either alignment)."""
  frames = num_frames(num_samples)
  return 0 if frames < EXAMPLE_FRAMES else 1 + (frames - EXAMPLE_FRAMES) // _hop(alignment)


def _hop(alignment: str) -> int:
  if alignment not in EXAMPLE_HOPS:
    raise InputError(
        f"unknown VGGish example alignment {alignment!r}: use one of {', '.join(EXAMPLE_HOPS)}."
    )
  return EXAMPLE_HOPS[alignment]


@functools.partial(jax.jit, static_argnames=("alignment",))
def log_mel_examples(waveforms: jax.Array, alignment: str = "reference") -> jax.Array:
  """Batched log-mel examples in float32 (jittable; the accelerator's FFT).

  float32 FFT rounding (~1e-7 of a frame's norm) makes this differ from the float64 reference by up to
  ~1e-5 (3e-5 tested) in quiet bands beside loud tones; `waveform_to_examples` computes in float64.

  Args:
    waveforms: [B, S] 16-kHz mono waveforms (samples nominally in [-1, 1]).
    alignment: "reference" (examples every 0.96 s) or "seconds" (one at the start of each second).

  Returns:
    [B, N, 96, 64] log-mel examples, N = `num_examples(S, alignment)` (10 for S = 160000).
  """
  waveforms = jnp.asarray(waveforms, jnp.float32)
  batch, samples = waveforms.shape
  rows = _example_rows(samples, alignment)
  if rows.size == 0:
    return jnp.zeros((batch, 0, EXAMPLE_FRAMES, NUM_BANDS), jnp.float32)
  starts = np.arange(rows[-1, -1] + 1) * HOP_SAMPLES  # only the frames the examples use
  windows_BxFxW = waveforms[:, starts[:, None] + np.arange(WINDOW_SAMPLES)]
  windowed_BxFxW = windows_BxFxW * jnp.asarray(periodic_hann(), jnp.float32)[None, None, :]
  magnitude_BxFxK = jnp.abs(jnp.fft.rfft(windowed_BxFxW, n=FFT_LENGTH, axis=-1))
  mel_BxFxM = jnp.matmul(
      magnitude_BxFxK,
      jnp.asarray(mel_matrix(), jnp.float32),
      precision=jax.lax.Precision.HIGHEST,
  )
  return jnp.log(mel_BxFxM + LOG_OFFSET)[:, rows]


def waveform_to_examples(
    waveform: np.ndarray, sample_rate: int = SAMPLE_RATE, alignment: str = "reference"
) -> np.ndarray:
  """VGGish's `vggish_input.waveform_to_examples` for one waveform, in float64 as the reference computes.

  Args:
    waveform: [S] (or [S, C], averaged over channels) float samples at 16 kHz.
    sample_rate: must be 16000 (resample beforehand otherwise).
    alignment: "reference" (the reference's 0.96-s hop) or "seconds" (`LLP_ALIGNMENT`: one example at the
      start of each second, as the LLP/AVE features were made).

  Returns:
    [N, 96, 64] float32 log-mel examples; N = 10 for a 10-s window (160000 samples), 0 when S < 15600.

  Raises:
    InputError: another sample rate, a waveform of more than 2 dimensions, an unknown alignment.
  """
  if sample_rate != SAMPLE_RATE:
    raise InputError(
        f"VGGish needs 16-kHz audio, got sample_rate={sample_rate}: resample the waveform to "
        f"{SAMPLE_RATE} Hz first (the decoder, avvp_jax.video.read_clip, already does)."
    )
  waveform = np.asarray(waveform, np.float64)
  if waveform.ndim == 2:
    waveform = waveform.mean(axis=1)
  if waveform.ndim != 1:
    raise InputError(
        f"a VGGish waveform is [num_samples] or [num_samples, channels], got shape {waveform.shape}."
    )
  rows = _example_rows(waveform.shape[0], alignment)
  if rows.size == 0:
    return np.zeros((0, EXAMPLE_FRAMES, NUM_BANDS), np.float32)
  used = rows[-1, -1] + 1
  windows_FxW = np.lib.stride_tricks.sliding_window_view(waveform, WINDOW_SAMPLES)
  windows_FxW = windows_FxW[: used * HOP_SAMPLES : HOP_SAMPLES]
  magnitude_FxK = np.abs(np.fft.rfft(windows_FxW * periodic_hann(), n=FFT_LENGTH, axis=-1))
  log_mel_FxM = np.log(magnitude_FxK @ mel_matrix() + LOG_OFFSET)
  return log_mel_FxM[rows].astype(np.float32)


def _example_rows(num_samples: int, alignment: str) -> np.ndarray:
  """[N, 96] the frame indices of each example."""
  hop = _hop(alignment)
  return np.arange(num_examples(num_samples, alignment))[:, None] * hop + np.arange(EXAMPLE_FRAMES)


# --- the network ------------------------------------------------------------------------------------


class VGGish(nn.Module):
  """VGGish: [N, 96, 64] log-mel examples -> [N, 128] embeddings (torchaudio's VGGish bundle).

  Attributes:
    final_relu: the ReLU after the 128-d layer (torchaudio, torchvggish, and the TF model the LLP features
      were made with); False gives the pre-activation embedding of tensorflow/models after 2020-08.
    dtype: computation dtype (params stay float32).
    precision: the convolutions' and matmuls' precision (None: the backend's default; pass
      `jax.lax.Precision.HIGHEST` for float32-exact results on GPUs that default to TF32).
  """

  final_relu: bool = True
  dtype: Any = jnp.float32
  precision: Any = None

  @nn.compact
  def __call__(self, examples_NxTxM: jax.Array) -> jax.Array:
    x = jnp.asarray(examples_NxTxM, self.dtype)[..., None]  # [N, 96, 64, 1], NHWC
    conv = functools.partial(
        nn.Conv, kernel_size=(3, 3), padding="SAME", dtype=self.dtype, precision=self.precision
    )
    for name, width in _CONV_WIDTHS:
      x = nn.relu(conv(width, name=name)(x))
      if name in _POOL_AFTER:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    # x: [N, 6, 4, 512]
    x = x.reshape(x.shape[0], -1)  # NHWC order, as torchaudio's permute(0, 2, 3, 1) then reshape
    dense = functools.partial(nn.Dense, dtype=self.dtype, precision=self.precision)
    x = nn.relu(dense(4096, name="fc1_1")(x))
    x = nn.relu(dense(4096, name="fc1_2")(x))
    x = dense(EMBEDDING_SIZE, name="fc2")(x)
    return nn.relu(x) if self.final_relu else x


def init_params(rng: jax.Array) -> PyTree:
  """Randomly initialised VGGish params (Flax's default initialisers; for `--weights=random`)."""
  examples = jnp.zeros((1, EXAMPLE_FRAMES, NUM_BANDS), jnp.float32)
  return jax.jit(VGGish().init)(rng, examples)["params"]


@jax.jit
def embed(params: PyTree, examples: jax.Array) -> jax.Array:
  """[N, 96, 64] log-mel examples -> [N, 128] float32 embeddings (post-ReLU, as the LLP features)."""
  return VGGish().apply({"params": params}, examples).astype(jnp.float32)


def params_from_state_dict(state_dict: Mapping[str, Any]) -> PyTree:
  """Flax params from torchaudio's VGGish state_dict (numpy arrays or tensors; see `WEIGHT_FILE`).

  Layouts: `Conv2d.weight [out, in, 3, 3]` -> kernel `[3, 3, in, out]`; `Linear.weight [out, in]` ->
  kernel `[in, out]`; biases as they are. The flatten order needs no permutation: both flatten NHWC.

  Raises:
    InputError: a missing, unexpected or misshaped key (the message names it).
  """
  renamed = {}
  for key, value in state_dict.items():
    for old, new in _ALIASES.items():
      if key.startswith(old):
        key = new + key[len(old) :]
    renamed[key] = value
  expected = {f"{prefix}.{part}" for prefix in _LAYERS for part in ("weight", "bias")}
  missing, extra = sorted(expected - set(renamed)), sorted(set(renamed) - expected)
  if missing:
    raise InputError(
        f"not a torchaudio VGGish state_dict: missing key {missing[0]}"
        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        + f"; use {WEIGHT_FILE.name} from {WEIGHT_FILE.url}."
    )
  if extra:
    raise InputError(
        f"not a torchaudio VGGish state_dict: unexpected key {extra[0]}"
        + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
        + f"; use {WEIGHT_FILE.name} from {WEIGHT_FILE.url}."
    )
  params = {}
  for prefix, name in _LAYERS.items():
    weight = _array(renamed, f"{prefix}.weight", _TORCH_SHAPES[name])
    bias = _array(renamed, f"{prefix}.bias", _TORCH_SHAPES[name][:1])
    kernel = weight.transpose(2, 3, 1, 0) if weight.ndim == 4 else weight.T
    params[name] = {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}
  return params


def _array(state_dict: Mapping[str, Any], key: str, shape: tuple[int, ...]) -> np.ndarray:
  value = state_dict[key]
  if hasattr(value, "detach"):  # a torch tensor
    value = value.detach().cpu().numpy()
  value = np.asarray(value, np.float32)
  if value.shape != shape:
    raise InputError(
        f"VGGish state_dict key {key} has shape {list(value.shape)}, expected {list(shape)}: "
        f"use {WEIGHT_FILE.name} from {WEIGHT_FILE.url}."
    )
  return value
