"""JoMoLD's joint modality label denoising (Cheng et al., ECCV 2022; MCG-NJU/JoMoLD `main.py`).

A weak label says a class happens in a clip, not in which modality; JoMoLD drops, per training batch and
class, the modality labels that both modalities' losses flag as noise. Three stages (docs/recipes.md):

1. A noise estimator (configs/jomold.py:estimator): HAN without cross-modal attention, trained with the
   label-smoothed NCE term (`losses.jomold_loss`).
2. Per-class noise ratios (`calculate_noise_ratio`, launch/make_noise_ratios.py): the share of each class's
   weak labels whose modality probability is far below that class's mean, written as the official
   `noise_ratios.npz` (`audio`, `visual`: 25 floats each; `write_noise_ratios`, read by `load_noise_ratios`).
3. Training with denoising (configs/jomold.py): before each step a forward of the student's own parameters
   without cross-modal attention (dropout on, no gradient) gives per-clip BCEs of p_a and p_v against the
   smoothed labels; then per class c (`select_noisy`), among the clips with a visual label of c, the visual
   label is dropped from those that are both among the k_v largest visual losses and among the k_v smallest
   audio losses, k_v = int(r_v[c] x the visual positives of c in the batch); the audio label symmetrically
   (k_a largest audio and k_a smallest visual losses among the audio positives). A dropped label's target is 0.

The ratio in force at (epoch e, batch b), 0-based here (`ratio_factor`), with W warm-up epochs and I steps
per epoch, is the file's ratio times:
  "official"  prod_{j <= b} min(1, (e I + j) / (W I)): the released code rescales the ratio of the previous
              batch in place and reloads the file each epoch, so with W = 0.9 no label is dropped in the first
              epoch (its batch 0 has factor 0) and the full ratios apply from the second on;
  "linear"    min(1, (e I + b) / (W I)): the ramp the code meant;
  "none"      1 (the official code with --warm_up_epoch None).
The counts are exact (`count_table`: int(r x n) in float64 on the host, as torch's float64 product and
truncation) whenever the factor is 0 or 1, which with W = 0.9 is every step of "official"; in between (the
"linear" ramp, or "official" with W > 1) they are floor(r x factor x n) in float32.

Everything in the step is a pure jitted function of static shapes (`make_denoiser`); ties in a loss order
are broken by batch position (the official `torch.sort` leaves them unspecified).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from avvp_jax.errors import InputError
from avvp_jax.tasks.llp import batch_keys
from avvp_jax.tasks.llp import losses

WARM_UPS = ("official", "linear", "none")
MODALITIES = ("audio", "visual")
# calculate_noise_ratio's official thresholds (--a_thres 0.6, --v_thres 1.8) on p / mean(p) of a class.
AUDIO_THRESHOLD = 0.6
VISUAL_THRESHOLD = 1.8
RATIO_BATCH_SIZE = 128  # official --batch_size: the class means are means of these batches' means


# --- the noise ratios file ---------------------------------------------------------------------------


def load_noise_ratios(path: str | os.PathLike[str], num_classes: int = 25) -> dict[str, np.ndarray]:
  """The `audio` and `visual` `[num_classes]` float64 ratios of an official-layout `noise_ratios.npz`.

  Raises:
    InputError (one line naming the file): no such file, not an .npz, a missing key, the wrong length, or a
      value outside [0, 1] (NaN included: a class without training labels).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise InputError(
        f"noise ratios {path!r}: no such file (launch/make_noise_ratios.py writes one)."
    )
  try:
    with np.load(path, allow_pickle=False) as data:
      arrays = {key: np.asarray(data[key]) for key in data.files}
  except Exception as error:  # noqa: BLE001  (np.load's many ways to fail on a file of another kind)
    raise InputError(
        f"noise ratios {path!r} is not an .npz file of JoMoLD's layout ({type(error).__name__}): give "
        "the noise_ratios.npz of launch/make_noise_ratios.py or of JoMoLD's release."
    ) from error
  ratios = {}
  for key in MODALITIES:
    if key not in arrays:
      raise InputError(
          f"noise ratios {path!r} has no {key!r} array (it has {sorted(arrays)}): JoMoLD's file holds "
          "'audio' and 'visual'."
      )
    value = arrays[key]
    if value.shape != (num_classes,) or not np.issubdtype(value.dtype, np.number):
      raise InputError(
          f"noise ratios {path!r}: {key!r} has shape {value.shape} ({value.dtype}), not {num_classes} "
          "numbers, one per class."
      )
    value = value.astype(np.float64)
    bad = np.flatnonzero(~((value >= 0.0) & (value <= 1.0)))
    if bad.size:
      raise InputError(
          f"noise ratios {path!r}: {key!r} of class {int(bad[0])} is {value[bad[0]]}, outside [0, 1]."
      )
    ratios[key] = value
  return ratios


def write_noise_ratios(path: str | os.PathLike[str], audio: Any, visual: Any) -> None:
  """Writes the official layout: `np.savez(path, audio=..., visual=...)`, float64 `[C]` each."""
  np.savez(
      os.fspath(path),
      audio=np.asarray(audio, np.float64),
      visual=np.asarray(visual, np.float64),
  )


# --- stage 2: calculate_noise_ratio ------------------------------------------------------------------


def calculate_noise_ratio(
    audio_prob: Any,
    visual_prob: Any,
    labels: Any,
    *,
    order: Any = None,
    batch_size: int = RATIO_BATCH_SIZE,
    audio_threshold: float = AUDIO_THRESHOLD,
    visual_threshold: float = VISUAL_THRESHOLD,
    audio_smoothing: float = 1.0,
    visual_smoothing: float = 0.9,
) -> dict[str, np.ndarray]:
  """The official per-class noise ratios from the estimator's video-level probabilities of the train split.

  As `calculate_noise_ratio` of JoMoLD's main.py: with the clips in `order` cut into batches of `batch_size`
  (the last one smaller), the class mean m[c] of a modality is the mean over batches of each batch's mean
  probability; a weak label (n, c) counts as noise of the modality when p[n, c] x P[n, c] / m[c] is below
  the modality's threshold, P the smoothed label (HAN's s_a = 1, s_v = 0.9: a positive's P is 1 and 0.95);
  the ratio is the count over the class's weak labels in the whole split.

  Args:
    audio_prob, visual_prob: `[N, C]` the estimator's p_a, p_v (eval mode, without cross-modal attention).
    labels: `[N, C]` 0/1 weak labels.
    order: the clip order of the batches (a permutation of N; the official loader shuffles); None: 0..N-1.
    batch_size, audio_threshold, visual_threshold, audio_smoothing, visual_smoothing: the official values.

  Returns:
    {"audio": [C], "visual": [C]} float64, and "audio_noisy", "visual_noisy": bool `[N, C]` the labels
    counted as noise (rows in the input's order), "class_counts" `[C]` the weak labels per class.
  """
  audio_prob = np.asarray(audio_prob, np.float32)
  visual_prob = np.asarray(visual_prob, np.float32)
  labels = np.asarray(labels)
  n = labels.shape[0]
  order = np.arange(n) if order is None else np.asarray(order)
  if sorted(order.tolist()) != list(range(n)) or audio_prob.shape != labels.shape:
    raise InputError(
        f"calculate_noise_ratio got probabilities {audio_prob.shape}, {visual_prob.shape}, labels "
        f"{labels.shape} and an order of {order.shape[0]} clips: pass [N, C] arrays and a permutation of N."
    )
  starts = range(0, n, batch_size)
  batch_mean = lambda p: np.mean(
      [p[order[s : s + batch_size]].mean(axis=0) for s in starts], axis=0
  ).astype(np.float32)
  positive = labels != 0
  noisy = {}
  for name, prob, smoothing, threshold in (
      ("audio", audio_prob, audio_smoothing, audio_threshold),
      ("visual", visual_prob, visual_smoothing, visual_threshold),
  ):
    target = (smoothing * labels + (1.0 - smoothing) * 0.5).astype(np.float32)
    noisy[name] = positive & ((prob * target) / batch_mean(prob) < np.float32(threshold))
  counts = positive.sum(axis=0)
  with np.errstate(invalid="ignore", divide="ignore"):
    out = {m: noisy[m].sum(axis=0) / counts.astype(np.float64) for m in MODALITIES}
  out.update({f"{m}_noisy": noisy[m] for m in MODALITIES}, class_counts=counts)
  return out


def ratio_quality(noisy: np.ndarray, present: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
  """How labels flagged as noise compare with the truth (SYNTHETIC data: the hidden dense labels).

  Args:
    noisy: bool `[N, C]` weak labels flagged as noise of one modality.
    present: bool `[N, C]` whether the class truly occurs in that modality of the clip (any second).
    labels: `[N, C]` 0/1 weak labels.

  Returns:
    {"flagged", "correct" (flagged and truly absent), "wrong" (flagged, truly present), "truly_noisy"
    (weak labels absent in the modality), "missed"} as ints, and "precision", "recall" of the flags.
  """
  positive = np.asarray(labels) != 0
  absent = positive & ~np.asarray(present, bool)
  flagged = np.asarray(noisy, bool) & positive
  correct, total = int((flagged & absent).sum()), int(flagged.sum())
  return {
      "flagged": total,
      "correct": correct,
      "wrong": total - correct,
      "truly_noisy": int(absent.sum()),
      "missed": int((absent & ~flagged).sum()),
      "precision": correct / total if total else 0.0,
      "recall": correct / int(absent.sum()) if absent.any() else 0.0,
  }


# --- stage 3: the per-batch selection ----------------------------------------------------------------


def count_table(ratios: Any, max_count: int) -> np.ndarray:
  """`[C, max_count + 1]` int32: entry (c, n) = int(ratios[c] x n), in float64 as the official code."""
  ratios = np.asarray(ratios, np.float64)
  return np.trunc(ratios[:, None] * np.arange(max_count + 1)[None, :]).astype(np.int32)


def ratio_factor(
    step: jax.Array, steps_per_epoch: int, warm_up: str, warm_up_epochs: float
) -> jax.Array:
  """The factor of the file's ratios at a 0-based global `step` (module docstring), float32 scalar."""
  if warm_up not in WARM_UPS:
    raise InputError(f"config.loss.denoise_warm_up {warm_up!r} is unknown: use one of {WARM_UPS}.")
  if warm_up == "none":
    return jnp.ones((), jnp.float32)
  span = jnp.float32(warm_up_epochs * steps_per_epoch)
  step = jnp.asarray(step, jnp.int32)
  if warm_up == "linear":
    return jnp.minimum(1.0, step.astype(jnp.float32) / span)
  epoch, batch = step // steps_per_epoch, step % steps_per_epoch
  j = jnp.arange(steps_per_epoch)
  factors = jnp.minimum(1.0, (epoch * steps_per_epoch + j).astype(jnp.float32) / span)
  return jnp.prod(jnp.where(j <= batch, factors, 1.0))


def noisy_counts(
    table: jax.Array, ratios: jax.Array, positives: jax.Array, factor: jax.Array
) -> jax.Array:
  """Labels to examine per class, `[C]` int32: `table[c, n_c]` at factor 1, 0 at 0, else floor(r f n).

  Args:
    table: `[C, B + 1]` `count_table` of the ratios; ratios: `[C]`; positives: `[C]` int32 counts n_c;
    factor: scalar `ratio_factor`.
  """
  exact = jnp.take_along_axis(table, positives[:, None], axis=1)[:, 0]
  ramp = jnp.floor(ratios * factor * positives.astype(jnp.float32)).astype(jnp.int32)
  return jnp.where(factor >= 1.0, exact, jnp.where(factor <= 0.0, 0, ramp))


def _ranks(values_BxC: jax.Array, candidate_BxC: jax.Array) -> jax.Array:
  """Per class, each candidate's 0-based rank among the candidates by ascending value (ties: batch order);
  non-candidates rank after every candidate."""
  keyed = jnp.where(candidate_BxC, values_BxC, jnp.inf)
  order = jnp.argsort(keyed, axis=0, stable=True)
  return jnp.argsort(order, axis=0, stable=True)


def select_noisy(
    audio_loss_BxC: jax.Array,
    visual_loss_BxC: jax.Array,
    audio_positive_BxC: jax.Array,
    visual_positive_BxC: jax.Array,
    audio_count_C: jax.Array,
    visual_count_C: jax.Array,
) -> tuple[jax.Array, jax.Array]:
  """The labels to drop, bool `(audio [B, C], visual [B, C])`, by JoMoLD's joint rule (module docstring).

  Visual label of (b, c) dropped: b has a visual label of c and is among the `visual_count[c]` largest
  visual losses and the `visual_count[c]` smallest audio losses of those clips. Audio: among the audio
  positives, the `audio_count[c]` largest audio and smallest visual losses.
  """
  vis_pos = visual_positive_BxC.astype(bool)
  aud_pos = audio_positive_BxC.astype(bool)
  n_vis = vis_pos.sum(axis=0)[None, :]
  n_aud = aud_pos.sum(axis=0)[None, :]
  k_vis, k_aud = visual_count_C[None, :], audio_count_C[None, :]
  drop_visual = (
      vis_pos
      & (_ranks(audio_loss_BxC, vis_pos) < k_vis)
      & (_ranks(visual_loss_BxC, vis_pos) >= n_vis - k_vis)
  )
  drop_audio = (
      aud_pos
      & (_ranks(audio_loss_BxC, aud_pos) >= n_aud - k_aud)
      & (_ranks(visual_loss_BxC, aud_pos) < k_aud)
  )
  return drop_audio, drop_visual


def _bce(prob: jax.Array, target: jax.Array) -> jax.Array:
  return -(target * jnp.log(prob) + (1.0 - target) * jnp.log1p(-prob))


def denoised_targets(
    audio_prob_BxC: jax.Array,
    visual_prob_BxC: jax.Array,
    label_BxC: jax.Array,
    real_B: jax.Array,
    tables: Mapping[str, jax.Array],
    ratios: Mapping[str, jax.Array],
    factor: jax.Array,
    *,
    clamp_eps: float,
    audio_smoothing: float,
    visual_smoothing: float,
) -> dict[str, jax.Array]:
  """One batch's denoised targets from the selection forward's p_a, p_v (module docstring).

  Args:
    audio_prob_BxC, visual_prob_BxC: the no-cross-attention forward's video-level probabilities.
    label_BxC: 0/1 weak labels; real_B: bool, False on padding clips.
    tables, ratios: per modality `count_table` `[C, B + 1]` and the ratios `[C]`; factor: `ratio_factor`.
    clamp_eps, audio_smoothing, visual_smoothing: `config.loss`'s.

  Returns:
    {"audio_target", "visual_target": [B, C] the smoothed labels with dropped ones 0, "audio_drop",
    "visual_drop": bool [B, C]}.
  """
  probs = {"audio": audio_prob_BxC, "visual": visual_prob_BxC}
  smoothing = {"audio": audio_smoothing, "visual": visual_smoothing}
  label = jnp.asarray(label_BxC, jnp.float32)
  targets, loss, positive, counts = {}, {}, {}, {}
  for m in MODALITIES:
    targets[m] = losses.smooth(label, smoothing[m])
    loss[m] = _bce(jnp.clip(probs[m], clamp_eps, 1.0 - clamp_eps), targets[m])
    positive[m] = (targets[m] > 0.5) & real_B[:, None]
    counts[m] = noisy_counts(
        tables[m], ratios[m], positive[m].sum(axis=0).astype(jnp.int32), factor
    )
  drop_audio, drop_visual = select_noisy(
      loss["audio"],
      loss["visual"],
      positive["audio"],
      positive["visual"],
      counts["audio"],
      counts["visual"],
  )
  return {
      "audio_target": jnp.where(drop_audio, 0.0, targets["audio"]),
      "visual_target": jnp.where(drop_visual, 0.0, targets["visual"]),
      "audio_drop": drop_audio,
      "visual_drop": drop_visual,
  }


def make_denoiser(
    loss_config: Any,
    model: Any,
    apply: Callable[..., Mapping[str, jax.Array]],
    steps_per_epoch: int,
    max_batch: int,
    num_classes: int,
) -> Callable[[Any, Mapping[str, Any], jax.Array, jax.Array], dict[str, Any]]:
  """Stage 3's per-step relabelling: `(params, batch, rng, step) -> batch` plus the denoised targets.

  Args:
    loss_config: `config.loss` (denoise fields, clamp_eps, audio_smoothing, visual_smoothing).
    model: the student (an `AVVPModel` with the HAN encoder); its selection forward is a clone without
      cross-modal attention.
    apply: `apply(model, params, batch, rng) -> outputs` in training mode (dropout on, as the official
      forward, which runs in train mode under no_grad).
    steps_per_epoch: I, steps of an epoch (the warm-up counts in them).
    max_batch: the largest per-replica batch (the count table's width).
    num_classes: C, the ratio files' length.

  Returns:
    `denoise(params, batch, rng, step)`: the batch with `audio_target`, `visual_target` `[B, C]` (smoothed
    weak labels, 0 where dropped) and `audio_dropped`, `visual_dropped` (the counts, float32 scalars).
  """
  ratios = load_noise_ratios(loss_config.noise_ratios, num_classes)
  tables = {m: jnp.asarray(count_table(ratios[m], max_batch)) for m in MODALITIES}
  ratio_arrays = {m: jnp.asarray(ratios[m], jnp.float32) for m in MODALITIES}
  ratio_factor(0, steps_per_epoch, loss_config.denoise_warm_up, loss_config.denoise_warm_up_epochs)
  if not hasattr(getattr(model, "encoder", None), "cross_attention"):
    raise InputError(
        "config.loss.denoise needs the HAN encoder (config.model.encoder='han'): JoMoLD's selection "
        "forward runs it without cross-modal attention."
    )
  selector = model.clone(encoder=model.encoder.clone(cross_attention=False))
  if steps_per_epoch < 1:
    raise InputError(
        "JoMoLD's denoising needs the run's steps per epoch (make_train_step's argument)."
    )

  def denoise(params, batch, rng, step):
    label = jnp.asarray(batch[batch_keys.LABEL], jnp.float32)
    real = (
        jnp.asarray(batch[batch_keys.MASK], jnp.float32) > 0
        if batch_keys.MASK in batch
        else jnp.ones(label.shape[:1], bool)
    )
    outputs = jax.lax.stop_gradient(apply(selector, params, batch, rng))
    factor = ratio_factor(
        step, steps_per_epoch, loss_config.denoise_warm_up, loss_config.denoise_warm_up_epochs
    )
    result = denoised_targets(
        outputs["audio_prob"],
        outputs["visual_prob"],
        label,
        real,
        tables,
        ratio_arrays,
        factor,
        clamp_eps=loss_config.clamp_eps,
        audio_smoothing=loss_config.audio_smoothing,
        visual_smoothing=loss_config.visual_smoothing,
    )
    out = dict(batch)
    for m in MODALITIES:
      out[f"{m}_target"] = result[f"{m}_target"]
      out[f"{m}_dropped"] = result[f"{m}_drop"].sum().astype(jnp.float32)
    return out

  return denoise
