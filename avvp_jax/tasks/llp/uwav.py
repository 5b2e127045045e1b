"""UWAV's student targets: a teacher's segment logits as soft, class-balanced targets; feature mixup.

UWAV (Lai et al., "Uncertainty-weighted Weakly-supervised Audio-Visual Video Parsing", CVPR 2025, arXiv
2505.09615). The official code was read from the public code index (its repository name was not shown there):
the teacher's `main.py` (`pseudo_label_generation` mode), `utils/eval_utils.py`
(`calculate_classwise_thresholds`, `get_best_f_threshold`), the student's `main.py`, `dataloader.py`
(`LLP_dataset.get_class_freq`) and its HAN's `calculate_loss`, `calculate_segment_loss`,
`calculate_mixup_loss` and `mixup_data`; its LLP test script sets
`--apply_uncertainty --apply_reweighting --reweight_type inverse_freq --pos_weight 0.5 --cal_mixup_loss
--alpha 1.7 --apply_uncertainty_mixup`.

The teacher's side (`launch/make_pseudo_labels.py --uwav`):
  * Thresholds, per class and modality (`fit_thresholds`): on the validation clips, the teacher's logits of
    the classes outside a clip's weak label are set to -inf, every (clip, second) of a class is pooled, and
    `best_f_threshold` (`get_best_f_threshold`) picks the midpoint between consecutive sorted logits that
    maximises F1 against the dense labels. -inf is a possible answer (below every finite logit), and is what a
    class with no positive second in validation gets (its F1s are 0/0 = NaN, and argmax takes the first NaN).
  * Hard labels: `weak and logit > threshold` (the official `--label_filtering`), in VALOR's layout.
  * Files, UWAV's names (the threshold files keep the official spelling, so the official loader reads them):
      OUT/UWAV/a_segmentwise_logits/<id>.npy, OUT/UWAV/v_segmentwise_logits/<id>.npy   [10, 25] float32
      OUT/UWAV/a_classwise_threhsolds.npy, OUT/UWAV/v_classwise_threhsolds.npy         [25] float32

The student's loss (`losses.uwav_loss`), per modality m, with z the teacher's logits `[B, T, C]`:
  * soft target (`soft_targets`): sigmoid((z - theta_c) / 2) on the classes of the clip's weak label, 0
    elsewhere; a threshold of -inf is first replaced by the batch's smallest logit of that class minus 1.
  * class-balanced weight (`segment_weights`, "inverse_freq"): with s = sum over classes of the fraction of
    the training segments the hard labels mark positive (`positive_frequency`; only the sum enters, as
    officially), weak-positive classes weigh (C - s) x positive_weight and the others s.
  * segment term: mean over (clip, second, class) of weight x BCE-with-logits(student segment logits, target).
  * mixup term (`mixup_term`): the batch's B x T segments of a modality mixed with a random permutation of
    themselves, lambda ~ Beta(alpha, alpha) (one per modality and step, `draw_mixup`), scored by the
    segment classifier against both targets: lambda BCE(mix, y) + (1 - lambda) BCE(mix, y[perm]).
  The loss is video BCE + segment_weight x (audio + visual segment) + mixup_weight x (audio + visual mixup).

Where this differs from the official code, and why:
  * Mixup is applied to the segment logits, not to the features: the segment classifier (MMIL's fc_prob) is
    affine and lambda + (1 - lambda) = 1, so fc(lambda x + (1 - lambda) x') equals
    lambda fc(x) + (1 - lambda) fc(x')
    exactly (value and gradient); the model needs no second classifier call. The tests check it against the
    official feature mixup.
  * Padding: the last, padded batch of an epoch leaves its padding clips out of the means, of the -inf
    replacement's minimum and of the mixup permutation (real segments mix with real segments only).
  * `best_f_threshold` sorts stably (torch.argsort promises no order among ties); only tied finite logits
    with different labels could tell the difference. Pooled logits of classes outside the weak labels all
    tie at -inf but carry label 0 (dense labels lie inside the weak labels), so their order does not matter.
  * Our teachers hand probabilities (a seed ensemble averages them), so the logits written are
    log(p / (1 - p)) of the segment probability, p clipped to [2^-24, 1 - 2^-24] (|logit| <= 16.6); the
    official teacher saves its raw logits.
  * SIMULATED teacher (`config.data.pseudo_labels="simulated"`, the embedded SYNTHETIC data only): the
    simulated teacher gives labels, not scores, so its logits are +2 on a simulated positive second and -2
    elsewhere (`SIMULATED_LOGIT`) and its thresholds 0, their midpoint (the synthetic build stores simulated
    labels of the training clips only, so there is nothing to fit them on): the soft targets are then two
    values, sigmoid(+-1) = 0.73 / 0.27 on weak-positive classes, a smoothed copy of the simulated labels. It
    exercises the code path on the SYNTHETIC data; it is not UWAV's teacher.

This module is numpy and jax.numpy only (no model code); the loss itself lives with the others in `losses`.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import batch_keys
from avvp_jax.errors import InputError

MODALITIES = annotations.LABEL_MODALITIES  # ("audio", "visual")
FOLDER = "UWAV"  # under the pseudo-label root (config.data.pseudo_labels)
LOGIT_DIRS = {"audio": f"{FOLDER}/a_segmentwise_logits", "visual": f"{FOLDER}/v_segmentwise_logits"}
# The official file names, misspelling included (main.py writes 'a_classwise_threhsolds.npy').
THRESHOLD_FILES = {
    "audio": f"{FOLDER}/a_classwise_threhsolds.npy",
    "visual": f"{FOLDER}/v_classwise_threhsolds.npy",
}
SIMULATED_LOGIT = 2.0  # the SIMULATED teacher's logit magnitude (module docstring)
PROB_CLIP = 2.0**-24  # probabilities are clipped to [PROB_CLIP, 1 - PROB_CLIP] before the logit
REWEIGHTS = ("inverse_freq", "fixed", "off")

BATCH_KEYS = {
    "audio": (
        batch_keys.AUDIO_TEACHER_LOGITS,
        batch_keys.AUDIO_TEACHER_THRESHOLD,
        batch_keys.AUDIO_POSITIVE_FREQUENCY,
    ),
    "visual": (
        batch_keys.VISUAL_TEACHER_LOGITS,
        batch_keys.VISUAL_TEACHER_THRESHOLD,
        batch_keys.VISUAL_POSITIVE_FREQUENCY,
    ),
}
MIXUP_KEYS = {m: (f"uwav_mixup_lambda_{m}", f"uwav_mixup_permutation_{m}") for m in MODALITIES}


# --- the teacher's side (numpy) --------------------------------------------------------------------------


def best_f_threshold(labels: Any, scores: Any) -> tuple[float, float]:
  """`get_best_f_threshold`: the threshold on `scores` with the best F1 against 0/1 `labels`, and that F1.

  The scores are sorted ascending; at position i the prediction is "score >= scores[i]", with TP the
  positives from i on, precision TP / (N - i), recall TP / (all positives) and F1 2PR / max(P + R, 1e-12);
  the threshold is the midpoint of scores[i] and scores[i - 1] (-inf for i = 0, and whenever one of the two is
  -inf). float32 arithmetic, as the official torch code; argmax takes the first maximum, and a NaN (no
  positive at all: recall 0/0) counts as the maximum, as torch.argmax does.

  Args:
    labels: `[N]` 0/1.
    scores: `[N]` logits (may hold -inf).

  Returns:
    (threshold, f1) as Python floats.
  """
  labels = np.asarray(labels, np.float32).ravel()
  scores = np.asarray(scores, np.float32).ravel()
  if labels.shape != scores.shape or not labels.size:
    raise InputError(
        f"best_f_threshold got {labels.size} labels and {scores.size} scores: pass as many of each, at "
        "least one."
    )
  order = np.argsort(scores, kind="stable")
  labels, scores = labels[order], scores[order]
  num_tps = np.cumsum(labels[::-1], dtype=np.float32)[::-1]
  total_pred = np.float32(len(scores)) - np.arange(len(scores), dtype=np.float32)
  with np.errstate(divide="ignore", invalid="ignore"):
    precision = num_tps / total_pred
    recall = num_tps / num_tps[0]
    f1 = np.float32(2) * precision * recall / np.maximum(precision + recall, np.float32(1e-12))
  previous = np.concatenate([np.full(1, -np.inf, np.float32), scores[:-1]])
  with np.errstate(invalid="ignore"):
    thresholds = (scores + previous) / np.float32(2)
  best = int(np.argmax(f1))
  return float(thresholds[best]), float(f1[best])


def fit_thresholds(logits: Any, true_labels: Any, weak_labels: Any) -> np.ndarray:
  """`calculate_classwise_thresholds` of one modality: `[C]` float32 thresholds on the teacher's logits.

  Args:
    logits: `[N, T, C]` the teacher's segment logits of the modality on the validation clips.
    true_labels: `[N, T, C]` their dense labels of the modality.
    weak_labels: `[N, C]` their weak labels; logits of classes outside them become -inf before the fit.
  """
  logits = np.asarray(logits, np.float32)
  true = np.asarray(true_labels, np.float32)
  weak = np.asarray(weak_labels) > 0
  if (
      logits.ndim != 3
      or true.shape != logits.shape
      or weak.shape
      != (
          logits.shape[0],
          logits.shape[2],
      )
  ):
    raise InputError(
        f"fit_thresholds got logits {logits.shape}, dense labels {true.shape} and weak labels "
        f"{weak.shape}: pass [N, T, C], [N, T, C] and [N, C] arrays of the same clips."
    )
  masked = np.where(weak[:, None, :], logits, -np.inf).astype(np.float32)
  return np.array(
      [
          best_f_threshold(true[..., c].ravel(), masked[..., c].ravel())[0]
          for c in range(logits.shape[2])
      ],
      np.float32,
  )


def hard_labels(logits: Any, weak_labels: Any, thresholds: Any) -> np.ndarray:
  """The teacher's 0/1 labels, bool `[N, T, C]`: `weak[n, c] and logits[n, t, c] > thresholds[c]` (strict)."""
  logits = np.asarray(logits, np.float32)
  weak = np.asarray(weak_labels) > 0
  return (logits > np.asarray(thresholds, np.float32)) & weak[:, None, :]


def logits_from_prob(prob: Any) -> np.ndarray:
  """float32 log(p / (1 - p)) of probabilities clipped to [2^-24, 1 - 2^-24] (module docstring)."""
  p = np.clip(np.asarray(prob, np.float64), PROB_CLIP, 1.0 - PROB_CLIP)
  return (np.log(p) - np.log1p(-p)).astype(np.float32)


def simulated_logits(labels: Any) -> np.ndarray:
  """The SIMULATED teacher's logits `[N, T, C]`: +SIMULATED_LOGIT on a 0/1 label's positives, - elsewhere."""
  return np.where(np.asarray(labels) > 0, SIMULATED_LOGIT, -SIMULATED_LOGIT).astype(np.float32)


def simulated_teacher(hard: Mapping[str, np.ndarray]) -> "TeacherLogits":
  """The SIMULATED teacher of the SYNTHETIC data from its simulated 0/1 labels {modality: `[N, T, C]`}."""
  return TeacherLogits(
      logits={m: simulated_logits(hard[m]) for m in MODALITIES},
      thresholds={m: np.zeros(annotations.NUM_CLASSES, np.float32) for m in MODALITIES},
      frequency={m: positive_frequency(hard[m]) for m in MODALITIES},
      synthetic=True,
  )


def positive_frequency(hard: Any) -> float:
  """`get_class_freq` summed over the classes: sum_c (positive segments of c) / (segments) of `[N, T, C]`
  0/1 labels."""
  hard = np.asarray(hard, np.float64)
  if hard.ndim != 3 or not hard.shape[0]:
    raise InputError(
        f"positive_frequency got labels of shape {hard.shape}: pass [N, T, C], N >= 1."
    )
  return float((hard.sum(axis=(0, 1)) / (hard.shape[0] * hard.shape[1])).sum())


# --- files ----------------------------------------------------------------------------------------------


def array_files(
    clip_ids: Sequence[str], logits: Mapping[str, np.ndarray], thresholds: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
  """{path under the pseudo-label root: array} of UWAV's layout (module docstring), for
  `write_pseudo_labels`."""
  files = {}
  for m in MODALITIES:
    for clip, row in zip(clip_ids, np.asarray(logits[m], np.float32)):
      files[f"{LOGIT_DIRS[m]}/{annotations.clip_id(clip)}.npy"] = row
    files[THRESHOLD_FILES[m]] = np.asarray(thresholds[m], np.float32)
  return files


def check_folder(root: str | pathlib.Path) -> None:
  """InputError naming the first missing logit folder or threshold file of a UWAV student's `root`."""
  root = pathlib.Path(root).expanduser()
  for m in MODALITIES:
    for name, kind in ((LOGIT_DIRS[m], "folder"), (THRESHOLD_FILES[m], "file")):
      path = root / name
      if not (path.is_dir() if kind == "folder" else path.is_file()):
        raise InputError(
            f"{str(path)!r} is missing: a UWAV student needs its teacher's segment logits and fitted "
            "thresholds beside the segment labels (make the folder with launch/make_pseudo_labels.py --uwav)."
        )


def _read_array(path: pathlib.Path, shape: tuple[int, ...], what: str) -> np.ndarray:
  if not path.is_file():
    raise InputError(
        f"{what} file {str(path)!r} is missing: make the pseudo-label folder again with "
        "launch/make_pseudo_labels.py --uwav."
    )
  try:
    array = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError) as error:
    raise InputError(f"{what} file {str(path)!r} is not a readable .npy array ({error}).") from None
  if array.shape != shape or not np.issubdtype(array.dtype, np.floating):
    raise InputError(
        f"{what} file {str(path)!r} holds {array.dtype} {array.shape}, expected float {shape}."
    )
  return array.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class TeacherLogits:
  """A UWAV teacher's side data of the training clips, in their order.

  Attributes:
    logits: {modality: `[N, T, C]` float32}.
    thresholds: {modality: `[C]` float32, may hold -inf}.
    frequency: {modality: `positive_frequency` of the hard labels the student trains beside}.
    synthetic: SIMULATED from the SYNTHETIC set's simulated teacher.
  """

  logits: Mapping[str, np.ndarray]
  thresholds: Mapping[str, np.ndarray]
  frequency: Mapping[str, float]
  synthetic: bool = False

  def batch(self, index: np.ndarray) -> dict[str, np.ndarray]:
    """The batch entries of rows `index` (`[B]` or `[S, B]`); rows of -1 (padding) get zeros."""
    index = np.asarray(index)
    rows = np.where(index >= 0, index, 0)
    valid = index >= 0
    out = {}
    for m in MODALITIES:
      logit_key, threshold_key, frequency_key = BATCH_KEYS[m]
      out[logit_key] = np.where(valid[..., None, None], self.logits[m][rows], 0.0).astype(
          np.float32
      )
      out[threshold_key] = np.where(
          valid[..., None],
          np.broadcast_to(self.thresholds[m], (*index.shape, self.thresholds[m].size)),
          0.0,
      ).astype(np.float32)
      out[frequency_key] = np.where(valid, self.frequency[m], 0.0).astype(np.float32)
    return out

  def describe(self) -> str:
    kind = "SIMULATED teacher logits" if self.synthetic else "teacher logits"
    finite = {m: int(np.isfinite(self.thresholds[m]).sum()) for m in MODALITIES}
    return (
        f"UWAV {kind}: {len(self.logits['audio'])} clips; thresholds finite for {finite['audio']} audio and "
        f"{finite['visual']} visual classes (the rest -inf); positive frequency sum audio "
        f"{self.frequency['audio']:.4f}, visual {self.frequency['visual']:.4f}"
    )


def load_teacher(
    root: str | pathlib.Path, clip_ids: Sequence[str], hard: Mapping[str, np.ndarray]
) -> TeacherLogits:
  """Reads a UWAV folder's logits of `clip_ids` and its thresholds; `hard` ({modality: `[N, T, C]`}) are the
  segment labels read beside them (their class frequencies weight the loss).

  Raises:
    InputError: a missing folder, file (named), or an array of the wrong shape or dtype.
  """
  root = pathlib.Path(root).expanduser()
  check_folder(root)
  t, c = annotations.NUM_SECONDS, annotations.NUM_CLASSES
  logits, thresholds = {}, {}
  for m in MODALITIES:
    folder = root / LOGIT_DIRS[m]
    logits[m] = (
        np.stack(
            [
                _read_array(folder / f"{annotations.clip_id(clip)}.npy", (t, c), f"{m} logit")
                for clip in clip_ids
            ]
        )
        if len(clip_ids)
        else np.zeros((0, t, c), np.float32)
    )
    if not np.isfinite(logits[m]).all():
      row = int(np.argwhere(~np.isfinite(logits[m]))[0][0])
      raise InputError(
          f"{m} logit file {str(folder / (annotations.clip_id(clip_ids[row]) + '.npy'))!r} holds a "
          "non-finite value: the teacher's logits are finite (only thresholds may be -inf)."
      )
    thresholds[m] = _read_array(root / THRESHOLD_FILES[m], (c,), f"{m} threshold")
    if np.isnan(thresholds[m]).any() or (thresholds[m] == np.inf).any():
      raise InputError(
          f"{m} threshold file {str(root / THRESHOLD_FILES[m])!r} holds NaN or +inf: thresholds are "
          "finite or -inf."
      )
  return TeacherLogits(
      logits=logits,
      thresholds=thresholds,
      frequency={m: positive_frequency(hard[m]) for m in MODALITIES},
  )


# --- the student's side (jax.numpy, jittable) -----------------------------------------------------------


def _real(mask_B: jax.Array | None, batch_size: int) -> jax.Array:
  return jnp.ones((batch_size,), bool) if mask_B is None else jnp.asarray(mask_B) > 0


def soft_targets(
    logits_BxTxC: jax.Array,
    thresholds_C: jax.Array,
    weak_BxC: jax.Array,
    mask_B: jax.Array | None = None,
) -> jax.Array:
  """`[B, T, C]` float32: sigmoid((z - theta) / 2) on weak-positive classes, 0 elsewhere (module docstring).

  A threshold of -inf becomes the smallest logit of its class over the batch's real segments, minus 1.
  """
  z = jnp.asarray(logits_BxTxC, jnp.float32)
  real = _real(mask_B, z.shape[0])
  smallest_C = jnp.min(jnp.where(real[:, None, None], z, jnp.inf), axis=(0, 1))
  theta = jnp.asarray(thresholds_C, jnp.float32)
  theta_C = jnp.where(jnp.isneginf(theta), smallest_C - 1.0, theta)
  soft = jax.nn.sigmoid((z - theta_C[None, None, :]) / 2.0)
  return jax.lax.stop_gradient(jnp.where(jnp.asarray(weak_BxC)[:, None, :] > 0, soft, 0.0))


def segment_weights(
    weak_BxC: jax.Array,
    frequency: jax.Array,
    reweight: str,
    positive_weight: float,
    negative_weight: float,
    num_segments: int,
) -> jax.Array:
  """`[B, T, C]` loss weights of `calculate_segment_loss`: "inverse_freq" (C - s) x positive_weight on weak
  positives and s elsewhere (s = `frequency`, the summed class frequencies); "fixed" positive_weight /
  negative_weight; "off" 1."""
  if reweight not in REWEIGHTS:
    raise InputError(f"config.loss.uwav_reweight {reweight!r} is unknown: use one of {REWEIGHTS}.")
  weak = jnp.broadcast_to(
      (jnp.asarray(weak_BxC) > 0)[:, None, :], (weak_BxC.shape[0], num_segments, weak_BxC.shape[1])
  )
  if reweight == "off":
    return jnp.ones(weak.shape, jnp.float32)
  if reweight == "fixed":
    return jnp.where(weak, positive_weight, negative_weight).astype(jnp.float32)
  s = jnp.asarray(frequency, jnp.float32)
  return jnp.where(weak, (weak.shape[-1] - s) * positive_weight, s).astype(jnp.float32)


def bce_with_logits(x: jax.Array, y: jax.Array) -> jax.Array:
  """Elementwise `binary_cross_entropy_with_logits`: max(x, 0) - x y + log(1 + exp(-|x|))."""
  x = jnp.asarray(x, jnp.float32)
  return (
      jnp.maximum(x, 0.0)
      - x * jax.lax.stop_gradient(jnp.asarray(y, jnp.float32))
      + jnp.log1p(jnp.exp(-jnp.abs(x)))
  )


def mixup_term(
    logits_BxTxC: jax.Array,
    targets_BxTxC: jax.Array,
    lam: jax.Array,
    permutation: jax.Array,
    mask_B: jax.Array | None = None,
) -> jax.Array:
  """`calculate_mixup_loss` on the segment logits (module docstring): scalar float32.

  Args:
    logits_BxTxC: the student's segment logits of one modality (its segment classifier's output).
    targets_BxTxC: their targets (soft or hard).
    lam: the mixing weight, a scalar.
    permutation: `[B * T]` int, the partner of each flattened (clip, second) row.
    mask_B: 1 on real clips; rows of padding clips count for nothing.
  """
  b, t, c = logits_BxTxC.shape
  x = jnp.asarray(logits_BxTxC, jnp.float32).reshape(b * t, c)
  y = jnp.asarray(targets_BxTxC, jnp.float32).reshape(b * t, c)
  lam = jnp.asarray(lam, jnp.float32)
  mixed = lam * x + (1.0 - lam) * x[permutation]
  per_row = lam * bce_with_logits(mixed, y).mean(axis=-1) + (1.0 - lam) * bce_with_logits(
      mixed, y[permutation]
  ).mean(axis=-1)
  weight = jnp.repeat(_real(mask_B, b).astype(jnp.float32), t)
  return (per_row * weight).sum() / jnp.maximum(weight.sum(), 1.0)


def draw_mixup(
    rng: jax.Array, mask_B: jax.Array, num_segments: int, alpha: float
) -> dict[str, jax.Array]:
  """One step's mixup draws, a pure function of `rng`: per modality lambda ~ Beta(alpha, alpha) and a random
  permutation of the `[B * T]` segment rows that maps real clips' rows among themselves (padding rows stay).
  """
  real_rows = jnp.repeat(jnp.asarray(mask_B) > 0, num_segments)
  canonical = jnp.argsort(jnp.where(real_rows, 0, 1), stable=True)  # real rows first, in order
  out = {}
  for i, m in enumerate(MODALITIES):
    key_lambda, key_perm = jax.random.split(jax.random.fold_in(rng, i))
    shuffled = jnp.argsort(jnp.where(real_rows, jax.random.uniform(key_perm, real_rows.shape), 2.0))
    permutation = jnp.zeros_like(canonical).at[canonical].set(shuffled)
    lam_key, perm_key = MIXUP_KEYS[m]
    out[lam_key] = jax.random.beta(key_lambda, alpha, alpha).astype(jnp.float32)
    out[perm_key] = permutation.astype(jnp.int32)
  return out


def make_mixup_step(loss_config: Any, num_segments: int):
  """The train step's batch hook (`Task.label_denoiser`): `(params, batch, rng, step) -> batch` with the
  step's mixup draws added (`draw_mixup` with `config.loss.uwav_mixup_alpha`)."""
  alpha = float(loss_config.uwav_mixup_alpha)
  if not alpha > 0:
    raise InputError(f"config.loss.uwav_mixup_alpha={alpha} must be positive (official 1.7).")

  def add_draws(params, batch, rng, step):
    del params, step
    label = batch[batch_keys.LABEL]
    mask = batch.get(batch_keys.MASK, jnp.ones(label.shape[:1], jnp.float32))
    return {**batch, **draw_mixup(rng, mask, num_segments, alpha)}

  return add_draws
