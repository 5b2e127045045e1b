r"""Makes segment pseudo labels with a trained parser (the teacher), in VALOR's layout, for training LEAP.

  python launch/make_pseudo_labels.py --checkpoint=WORKDIR --features=DIR --out=DIR \
      [--labels_dir=] [--threshold=0.5] [--audio_threshold=] [--visual_threshold=] \
      [--class_thresholds=audio:Speech=0.4,Dog=0.6] [--tune_on_val] [--uwav] [--splits=train,val,test]
      [--replica=]

Then train on them: `python launch/train.py --config=configs/leap.py --config.data.pseudo_labels=OUT` (with
the same --config.data.features_dir / labels_dir as the features labelled here).

A second of class c becomes a pseudo label of a modality when c is in the clip's weak label and the teacher's
segment probability of that modality is >= the threshold of (modality, c); every split is filtered by its
weak labels, as VALOR's released files are (see avvp_jax/tools/pseudo_label_maker.py).

Flags:
  --checkpoint         (required) the teacher: a training workdir (a multi-seed one: its seed ensemble), a step
                       folder, or a params-only checkpoint folder.
  --replica            a multi-seed teacher's replica to use (the seed it was trained with); default: the
                       ensemble.
  --features           a features folder in either layout (official: vggish/ res152/ r2plus1d_18/; clip_clap:
                       CLAP/features/ CLIP/features/). Empty: the embedded SYNTHETIC data the teacher's config
                       describes (for a teacher trained on it with launch/train.py and no
                       --config.data.features_dir).
  --labels_dir         the AVVP_*.csv files of those clips (a launch/make_synthetic.py folder: DIR/labels);
                       default: the teacher's config.data.labels_dir, else the packaged LLP files.
  --out                (required) the folder to write: OUT/CLAP/segment_pseudo_labels/<id>.npy (audio) and
                       OUT/CLIP/segment_pseudo_labels/<id>.npy (visual), [10, 25] int64 0/1, OUT/quality.json,
                       and OUT/SYNTHETIC.txt when the features are synthetic. Written whole or not at all; an
                       existing folder is replaced only if this tool wrote it.
  --threshold          the segment probability threshold of every class and modality (default 0.5);
  --audio_threshold, --visual_threshold   one modality's (default --threshold);
  --class_thresholds   per class: CLASS=VALUE for both modalities, audio:CLASS=VALUE or visual:CLASS=VALUE for
                       one (a bare entry after a prefixed one keeps its prefix: audio:Speech=0.4,Dog=0.6).
  --tune_on_val        choose every (modality, class) threshold on the val split's dense labels (maximising
                       its pooled F1; the given thresholds break ties). Val figures are then optimistic.
  --uwav               for a UWAV student (configs/uwav.py): also write the teacher's segment logits,
                       OUT/UWAV/a_segmentwise_logits/<id>.npy and OUT/UWAV/v_segmentwise_logits/<id>.npy
                       ([10, 25] float32, log(p / (1 - p)) of its probabilities), and per-class thresholds
                       fitted on them on val with UWAV's get_best_f_threshold rule (-inf allowed),
                       OUT/UWAV/a_classwise_threhsolds.npy and v_... ([25] float32, the official names);
                       the labels are then weak and logit > threshold (the threshold flags are not used).
  --splits             splits to label (train is required; val and test get quality figures).
  --batch_size         clips per jitted call.

Old names, deprecated (they warn): --features_dir (now --features), --seed (now --replica).

Prints, and writes to OUT/quality.json, the pseudo labels' segment-level precision, recall and F1 (pooled) and
official segment F1 against the dense labels of val and test, per modality, beside the teacher's own official
segment F1. A tqdm bar counts the clips on a terminal. Bad input prints one line `error: ...` to stderr and exits
with status 2.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

from avvp_jax import cli  # pylint: disable=g-import-not-at-top
from avvp_jax import official  # the 0.5 of the official code (a leaf module: no JAX at start-up)

_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Workdir or checkpoint folder of the trained teacher (required)."
)
_REPLICA = flags.DEFINE_integer(
    "replica", None, "Multi-seed teacher: the replica to use (default: the seed ensemble)."
)
_FEATURES = flags.DEFINE_string(
    "features", "", "Features folder (either layout); empty: the embedded SYNTHETIC data."
)
_LABELS_DIR = flags.DEFINE_string(
    "labels_dir", "", "Folder with AVVP_*.csv; default: the teacher's, else packaged."
)
_OUT = flags.DEFINE_string(
    "out",
    None,
    "Pseudo-label folder to write (config.data.pseudo_labels of the LEAP run) (required).",
)
_THRESHOLD = flags.DEFINE_float(
    "threshold", official.THRESHOLD, "Segment probability threshold, every class and modality."
)
_AUDIO_THRESHOLD = flags.DEFINE_float(
    "audio_threshold", None, "Audio threshold; default --threshold."
)
_VISUAL_THRESHOLD = flags.DEFINE_float(
    "visual_threshold", None, "Visual threshold; default --threshold."
)
_CLASS_THRESHOLDS = flags.DEFINE_list(
    "class_thresholds", [], "Per-class thresholds: [audio:|visual:]CLASS=VALUE,..."
)
_TUNE_ON_VAL = flags.DEFINE_bool(
    "tune_on_val", False, "Choose per-class thresholds on the val split's dense labels."
)
_UWAV = flags.DEFINE_bool(
    "uwav",
    False,
    "Also write the teacher's logits and val-fitted thresholds in UWAV's layout (OUT/UWAV/), labels by its rule.",
)
_SPLITS = flags.DEFINE_list("splits", ["train", "val", "test"], "Splits to label (train required).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Clips per jitted call.")
cli.deprecated_alias("features_dir", "features")
cli.deprecated_alias("seed", "replica")
cli.required(_CHECKPOINT, _OUT)


def thresholds_from_flags() -> dict[str, list[float]]:
  """--threshold, --audio_threshold, --visual_threshold and --class_thresholds as {modality: [C] values}."""
  from avvp_jax.tasks.llp import annotations  # pylint: disable=g-import-not-at-top
  from avvp_jax.errors import InputError  # pylint: disable=g-import-not-at-top

  base = {"audio": _AUDIO_THRESHOLD.value, "visual": _VISUAL_THRESHOLD.value}
  values = {
      m: [_THRESHOLD.value if v is None else v] * annotations.NUM_CLASSES for m, v in base.items()
  }
  modalities = ("audio", "visual")
  for item in _CLASS_THRESHOLDS.value:
    prefix, colon, rest = item.partition(":")
    if colon:
      if prefix not in ("audio", "visual"):
        raise InputError(
            f"--class_thresholds entry {item!r} has prefix {prefix!r}: use audio: or visual: (or none)."
        )
      modalities, item = (prefix,), rest
    index, number = cli.class_value(item)
    for modality in modalities:
      values[modality][index] = number
  return values


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  from avvp_jax.tools import pseudo_label_maker  # pylint: disable=g-import-not-at-top
  from avvp_jax.errors import InputError  # pylint: disable=g-import-not-at-top

  try:
    report = pseudo_label_maker.make_pseudo_labels(
        _CHECKPOINT.value,
        _OUT.value,
        features_dir=_FEATURES.value,
        labels_dir=_LABELS_DIR.value,
        threshold=thresholds_from_flags(),
        tune_on_val=_TUNE_ON_VAL.value,
        splits=_SPLITS.value,
        batch_size=_BATCH_SIZE.value,
        seed=_REPLICA.value,
        uwav_layout=_UWAV.value,
    )
  except InputError as error:
    cli.fail(str(error))
  lines = pseudo_label_maker.report_lines(report)
  for line in lines:
    logging.info("%s", line)
  print("\n".join(lines))
  print(
      f"wrote {os.path.join(report['out'], pseudo_label_maker.QUALITY_FILE)}; train LEAP on them with "
      f"--config.data.pseudo_labels={report['out']}"
  )


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
