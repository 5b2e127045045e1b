"""MA's stage 2, the modality exchange: which modality each weak label of a training clip belongs to.

Wu and Yang (CVPR 2021), Yu-Wu/Modaily-Aware-Audio-Visual-Video-Parsing `step2_find_exchange`
(`main_avvp.py:get_modality_aware_label`, `estimate_label`; `dataloader.py`). `launch/refine_labels.py` runs it:

  report = ma_refine.refine_labels("workdir/ma_stage1", "refined/ma")

1. Partners. Each training clip n gets one partner p(n), drawn uniformly among the training clips whose weak
   labels share no class with n's (the official loader's rejection loop), from `seed`; the partners are
   stored (`refined_labels.npz` "partner", and the report's seed).
2. Three forwards of the frozen stage-1 model (evaluation mode, no dropout), one jitted call per batch
   (`make_exchange_forward`): the clip as it is (audio_prob a, visual_prob v), with the partner's visual
   streams (frames and motion) in place of its own (a_v, v_v), and with the partner's audio (a_a, v_a).
3. Per-class error of each modality over all training clips, err_m[c] = mean_n [(m_prob[n, c] > 0.5) !=
   y[n, c]] of the unexchanged forward, normalised by its largest class: k_m = err_m / max_c err_m.
4. The two drop rules (`estimate_label`), for every weak label y[n, c] = 1:
     visual dropped  when v_a[n, c] / k_v[c] < 0.5 and a_a[n, c] / k_v[c] < 0.5
                     (with someone else's audio, neither modality finds c: the visual track does not show it);
     audio dropped   when a_v[n, c] / k_a[c] < 0.5 and v_v[n, c] / k_a[c] < 0.5
                     (with someone else's visual track, neither finds c: the audio does not carry it).
   Both rules divide by the visual (resp. audio) normaliser, as the official code does; a class with no error
   (k = 0) divides to inf or nan and drops nothing, as torch's division does.

Output (`out`): `refined_labels.npz` (ours, `avvp_jax.tasks.llp.refined_labels`), `need_to_change.pkl` (MA's
layout: [visual, audio], 25 lists of training rows each, plain ints, increasing), `refine_report.json`, and
`SYNTHETIC.txt` for SYNTHETIC data. The report counts the dropped labels per modality and class and, on the
embedded SYNTHETIC data, compares them with the set's hidden dense training labels: a weak label dropped from a
modality is dropped correctly when that modality has no second of the class, wrongly otherwise.

Where this differs from the official code: the partners are drawn once from a seed and stored (official: Python's
unseeded `random`, a new draw each run); the rows in the pickle are sorted plain ints (official: 0-d torch
tensors in the shuffled loader's order); a multi-seed stage-1 workdir gives one replica (`replica`, default its
first seed), not an ensemble.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import uuid
from typing import Any, Callable, Mapping

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from avvp_jax import inference
from avvp_jax.errors import InputError
from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import refined_labels as refined_lib
from avvp_jax.tasks.llp import synthetic
from avvp_jax.tools import pseudo_label_maker

ACCURACY_THRESHOLD = 0.5  # official `(v_prob > 0.5) == target`
DROP_THRESHOLD = 0.5  # official `v_a[b][c] / v_class[c] < 0.5`
PROB_KEYS = ("a", "v", "a_v", "v_v", "a_a", "v_a")  # the official names of the six [N, C] outputs
_MAX_DRAWS = 10_000  # rejection rounds before a clip is declared partnerless


# --- partners ----------------------------------------------------------------------------------------


def draw_partners(weak_labels: np.ndarray, seed: int) -> np.ndarray:
  """`[N]` int64: for each clip a partner drawn uniformly among the clips whose weak labels `[N, C]` share no
  class with its own (every unmatched clip redraws until it has one: the official rejection loop, vectorised).

  Raises:
    InputError: a clip that shares a class with every other clip (no partner exists).
  """
  weak = np.asarray(weak_labels) > 0
  num = len(weak)
  rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x4D41]))
  partner = np.full(num, -1, np.int64)
  todo = np.arange(num)
  for _ in range(_MAX_DRAWS):
    if not todo.size:
      return partner
    draw = rng.integers(0, num, size=todo.size)
    ok = ~(weak[todo] & weak[draw]).any(axis=1)
    partner[todo[ok]] = draw[ok]
    todo = todo[~ok]
  possible = [n for n in todo if (~(weak & weak[n]).any(axis=1)).any()]
  if len(possible) < len(todo):
    n = next(n for n in todo if n not in set(possible))
    raise InputError(
        f"training clip row {int(n)} shares a weak class with every other training clip: MA's exchange needs a "
        "partner with no class in common; use more training clips."
    )
  for n in todo:  # rare: very few candidates; draw among them directly
    candidates = np.flatnonzero(~(weak & weak[n]).any(axis=1))
    partner[n] = candidates[rng.integers(0, candidates.size)]
  return partner


# --- the forwards and the rule -------------------------------------------------------------------------


def make_exchange_forward(
    model: Any, input_keys: tuple[str, ...]
) -> Callable[..., dict[str, jax.Array]]:
  """The jitted `(params, own, partner) -> {PROB_KEYS: [B, C]}` of the three forwards (module docstring).

  `own` and `partner` are feature batches (`audio`, `frames`, and `motion` when the model has it) of the clips
  and of their partners, row by row; the model runs in evaluation mode.
  """
  from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top  (flax: only when refining)

  def forward(params, own: Mapping[str, jax.Array], partner: Mapping[str, jax.Array]):
    apply = lambda batch: state_lib.apply_model(
        model, params, batch, input_keys=input_keys, train=False
    )
    visual_keys = [key for key in ("frames", "motion") if key in own]
    original = apply(own)
    visual_swapped = apply({**own, **{key: partner[key] for key in visual_keys}})
    audio_swapped = apply({**own, "audio": partner["audio"]})
    return {
        "a": original["audio_prob"],
        "v": original["visual_prob"],
        "a_v": visual_swapped["audio_prob"],
        "v_v": visual_swapped["visual_prob"],
        "a_a": audio_swapped["audio_prob"],
        "v_a": audio_swapped["visual_prob"],
    }

  return jax.jit(forward)


@jax.jit
def class_accuracy(prob: jax.Array, label: jax.Array) -> jax.Array:
  """`[C]` the official per-class accuracy mean_n [(prob > 0.5) == label] of `[N, C]` arrays (float32)."""
  correct = (prob > ACCURACY_THRESHOLD) == (label > 0)
  return correct.astype(jnp.float32).mean(axis=0)


@jax.jit
def estimate_label(
    label: jax.Array,
    a_v: jax.Array,
    v_v: jax.Array,
    a_a: jax.Array,
    v_a: jax.Array,
    v_acc: jax.Array,
    a_acc: jax.Array,
) -> tuple[jax.Array, jax.Array]:
  """MA's `estimate_label`: the (visual, audio) labels to drop, `[N, C]` bool each.

  Args:
    label: `[N, C]` weak labels.
    a_v, v_v: `[N, C]` audio / visual video-level probabilities with the partner's visual streams.
    a_a, v_a: `[N, C]` audio / visual probabilities with the partner's audio.
    v_acc, a_acc: `[C]` per-class accuracies of the unexchanged forward (`class_accuracy`).
  """
  label = jnp.asarray(label, jnp.float32)
  v_err = 1.0 - jnp.asarray(v_acc, jnp.float32)
  a_err = 1.0 - jnp.asarray(a_acc, jnp.float32)
  v_class = (v_err / jnp.max(v_err))[None]  # [1, C]: per class, for every clip
  a_class = (a_err / jnp.max(a_err))[None]
  positive = label != 0
  # Comparisons with nan (0 / 0) are False, as torch's are: a class with no error drops nothing.
  drop_visual = (
      positive
      & ((v_a * label) / v_class < DROP_THRESHOLD)
      & ((a_a * label) / v_class < DROP_THRESHOLD)
  )
  drop_audio = (
      positive
      & ((a_v * label) / a_class < DROP_THRESHOLD)
      & ((v_v * label) / a_class < DROP_THRESHOLD)
  )
  return drop_visual, drop_audio


# --- the stage -----------------------------------------------------------------------------------------


def _teacher(checkpoint: str, replica: int | None) -> inference.Parser:
  """One replica of the stage-1 model (a multi-seed workdir: `replica`, default its first seed)."""
  from avvp_jax import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top  (orbax: only here)

  parser = inference.load_parser(checkpoint, seed=replica)
  if parser.seeds is not None:  # an ensemble: take the first replica
    first = parser.seeds[0]
    params = checkpoint_lib.select_seed(parser.config, parser.params, first)
    parser = inference.Parser(parser.config, params, source=parser.source)
    logging.info("Stage-1 model: replica of seed %d (of %s).", first, parser.source)
  return parser


def _padded(batch: Mapping[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
  return {
      key: np.concatenate([v, np.zeros((size - len(v), *v.shape[1:]), v.dtype)])
      for key, v in batch.items()
  }


def exchange_probabilities(
    parser: inference.Parser,
    read: Callable[[np.ndarray], Mapping[str, np.ndarray]],
    partners: np.ndarray,
    batch_size: int,
) -> dict[str, np.ndarray]:
  """{PROB_KEYS: `[N, C]` float32} of the three forwards over every training clip, `batch_size` at a time
  (padded to one size: one compilation)."""
  from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top  (flax: only when refining)
  from avvp_jax import tasks  # pylint: disable=g-import-not-at-top  (as state above)

  config = parser.config
  forward = make_exchange_forward(state_lib.build_model(config), tasks.of(config).input_keys)
  keys = ["audio", "frames"] + (["motion"] if parser.uses_motion else [])
  num = len(partners)
  parts: dict[str, list[np.ndarray]] = {key: [] for key in PROB_KEYS}
  for start in range(0, num, batch_size):
    rows = np.arange(start, min(start + batch_size, num))
    own = {k: v for k, v in read(rows).items() if k in keys}
    other = {k: v for k, v in read(partners[rows]).items() if k in keys}
    probs = forward(parser.params, _padded(own, batch_size), _padded(other, batch_size))
    for key in PROB_KEYS:
      parts[key].append(np.asarray(probs[key], np.float32)[: len(rows)])
  return {key: np.concatenate(parts[key]) for key in PROB_KEYS}


def hidden_label_report(
    dropped: Mapping[str, np.ndarray], weak: np.ndarray, dense: Mapping[str, np.ndarray]
) -> dict[str, Any]:
  """Per modality, the dropped labels against the hidden dense labels `[N, T, C]`: dropped correctly (the
  modality has no second of the class), wrongly, and the weak labels absent from the modality (noisy).
  """
  weak = np.asarray(weak) > 0
  out = {}
  for m in ("audio", "visual"):
    absent = weak & (np.asarray(dense[m]).max(axis=1) == 0)
    drop = np.asarray(dropped[m]) & weak
    correct, wrong = int((drop & absent).sum()), int((drop & ~absent).sum())
    out[m] = {
        "weak_labels_absent_from_modality": int(absent.sum()),
        "dropped_correctly": correct,
        "dropped_wrongly": wrong,
        "absent_kept": int((absent & ~drop).sum()),
        "precision": round(correct / max(correct + wrong, 1), 4),
        "recall": round(correct / max(int(absent.sum()), 1), 4),
    }
  return out


def _write(
    out: pathlib.Path, labels: refined_lib.RefinedLabels, report: dict[str, Any], marker: str | None
):
  """Writes the folder whole (a sibling temporary folder, then renamed); replaces only a folder it wrote."""
  if out.exists() and not (out / refined_lib.REPORT_FILE).is_file():
    if not out.is_dir() or any(out.iterdir()):
      raise InputError(
          f"--out {str(out)!r} already holds files launch/refine_labels.py did not write: pick a new or empty "
          "folder."
      )
  out.parent.mkdir(parents=True, exist_ok=True)
  partial = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
  partial.mkdir()
  try:
    refined_lib.write_npz(partial / refined_lib.NPZ_FILE, labels)
    dropped = labels.dropped
    refined_lib.write_ma_pickle(partial / refined_lib.MA_FILE, dropped["audio"], dropped["visual"])
    (partial / refined_lib.REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    if marker:
      (partial / synthetic.MARKER_FILE).write_text(marker)
    if out.exists():
      shutil.rmtree(out)
    os.replace(partial, out)
  finally:
    if partial.exists():
      shutil.rmtree(partial)


def refine_labels(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    features_dir: str | os.PathLike[str] | None = None,
    labels_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    replica: int | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
  """MA's stage 2 over the training split; writes `out` and returns the report (module docstring).

  Args:
    checkpoint: the stage-1 model (a training workdir: its best save, the last epoch with configs/ma.py).
    out: the folder to write (`config.data.refined_labels` of stage 3).
    features_dir: the features folder; None or "": the embedded SYNTHETIC data of the checkpoint's config.
    labels_dir: the `AVVP_*.csv` files; None: the checkpoint's `config.data.labels_dir`, else the packaged ones.
    seed: the partners' draw.
    replica: a multi-seed stage-1 run's replica (its seed); None: the first.
    batch_size: clips per jitted call.

  Raises:
    InputError: bad arguments, checkpoint, features or labels (nothing is written then).
  """
  if batch_size < 1:
    raise InputError(f"batch_size={batch_size} must be positive.")
  if not out or not str(out).strip():
    raise InputError("out is empty: pass the folder to write the refined labels into.")
  checkpoint = os.path.abspath(os.path.expanduser(os.fspath(checkpoint)))
  parser = _teacher(checkpoint, replica)
  config = parser.config
  data_config = config.get("data", None) or {}
  labels_dir = labels_dir or data_config.get("labels_dir", "") or None
  dense = None
  if features_dir:
    source = pseudo_label_maker.folder_source(
        features_dir, labels_dir, ["train"], parser.input_dims
    )
  else:
    if data_config.get("features_dir", ""):
      raise InputError(
          f"the stage-1 model in {checkpoint} was trained on the features in "
          f"{data_config['features_dir']!r}: pass --features (without it the embedded synthetic data is "
          "refined, which only fits a model trained on it)."
      )
    source = pseudo_label_maker.synthetic_source(
        data_config, labels_dir, ["train"], parser.input_dims
    )
    hidden = synthetic.SyntheticLLP(
        num_train_clips=int(
            data_config.get("synthetic_train_clips") or synthetic.DEFAULT_NUM_TRAIN_CLIPS
        ),
        seed=int(data_config.get("synthetic_seed") or 0),
        layout=data_config.get("layout") or "official",
        frames="pooled",
        labels_dir=labels_dir,
    )
    dense = dict(zip(("audio", "visual"), hidden.dense_train_labels))
  train = source.splits["train"]
  weak = np.asarray(train.weak_labels, np.float32)
  logging.info("MA's modality exchange with %s on %s", parser.source, source.description)

  partners = draw_partners(weak, seed)
  probs = exchange_probabilities(
      parser, lambda rows: source.read("train", rows), partners, min(batch_size, len(weak))
  )
  v_acc = class_accuracy(probs["v"], weak)
  a_acc = class_accuracy(probs["a"], weak)
  drop_visual, drop_audio = (
      np.asarray(x)
      for x in estimate_label(
          weak, probs["a_v"], probs["v_v"], probs["a_a"], probs["v_a"], v_acc, a_acc
      )
  )
  labels = refined_lib.from_drops(
      train.filenames, weak, drop_audio, drop_visual, partner=partners, synthetic=source.synthetic
  )
  classes = annotations.CLASSES
  report: dict[str, Any] = {
      "synthetic": source.synthetic,
      "data": source.description,
      "stage1": {
          "checkpoint": checkpoint,
          "model": f"{config.model.encoder}/{config.model.decoder}",
      },
      "partner_seed": int(seed),
      "num_clips": len(weak),
      "weak_labels": int(weak.sum()),
      "dropped": {"visual": int(drop_visual.sum()), "audio": int(drop_audio.sum())},
      "dropped_per_class": {
          m: dict(zip(classes, (int(x) for x in d.sum(axis=0))))
          for m, d in (("visual", drop_visual), ("audio", drop_audio))
      },
      "class_error": {
          m: dict(zip(classes, (round(float(1.0 - x), 4) for x in np.asarray(acc))))
          for m, acc in (("visual", v_acc), ("audio", a_acc))
      },
      "hidden_labels": None
      if dense is None
      else hidden_label_report({"audio": drop_audio, "visual": drop_visual}, weak, dense),
  }
  marker = None
  if source.synthetic:
    marker = (
        "SYNTHETIC DATA - refined labels of SYNTHETIC features, not of real LLP clips.\n\n"
        f"Made by launch/refine_labels.py with the stage-1 model {checkpoint}\non {source.description}.\n"
    )
  out_path = pathlib.Path(out).expanduser().absolute()
  _write(out_path, labels, report, marker)
  report["out"] = str(out_path)
  return report


def report_lines(report: Mapping[str, Any]) -> list[str]:
  """The printed summary of a report."""
  kind = "SYNTHETIC " if report["synthetic"] else ""
  lines = [
      f"{kind}refined labels of {report['num_clips']} training clips ({report['weak_labels']} weak labels): "
      f"{report['dropped']['visual']} visual and {report['dropped']['audio']} audio labels dropped.",
  ]
  for m, entry in (report.get("hidden_labels") or {}).items():
    lines.append(
        f"  {m} against the hidden dense labels: dropped correctly {entry['dropped_correctly']}, wrongly "
        f"{entry['dropped_wrongly']}, absent but kept {entry['absent_kept']} (precision {entry['precision']:.3f}, "
        f"recall {entry['recall']:.3f})."
    )
  return lines
