r"""JoMoLD's stage 2: per-class noise ratios from a trained noise estimator, as the official noise_ratios.npz.

  python launch/make_noise_ratios.py --checkpoint=WORKDIR --out=FILE.npz [--features=DIR] [--labels_dir=DIR] \
      [--replica=SEED] [--batch_size=128] [--order_seed=0] [--audio_threshold=0.6] [--visual_threshold=1.8]

Then train with them (stage 3): `python launch/train.py --config=configs/jomold.py
--config.loss.noise_ratios=FILE.npz` (with the same --config.data.features_dir as the features used here).
The whole recipe is docs/recipes.md.

Flags:
  --checkpoint        (required) the noise estimator (configs/jomold.py:estimator): a training workdir (its best
                      state), a step folder or a params-only checkpoint. It runs in eval mode without
                      cross-modal attention, as JoMoLD's calculate_noise_ratio.
  --out               (required) the .npz to write (`audio`, `visual`: 25 float64 each); the JSON report goes
                      beside it (FILE.json).
  --features          a features folder (either layout); empty: the embedded SYNTHETIC data of the
                      estimator's config.
  --labels_dir        the AVVP_*.csv of those clips; default: the estimator's config.data.labels_dir, else the
                      packaged LLP files.
  --replica           a multi-seed estimator's replica (its seed); default: the seed ensemble.
  --batch_size        clips per batch of the class means (official 128).
  --order_seed        seeds the shuffle of the clips into those batches (the official loader shuffles).
  --audio_threshold, --visual_threshold   official 0.6 and 1.8 (on p / class mean).

Prints the mean ratios and, on the embedded SYNTHETIC data, how many labels were flagged correctly and wrongly
against the set's hidden dense training labels. Bad input prints one line `error: ...` and exits with status 2.
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

_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Workdir or checkpoint folder of the noise estimator (required)."
)
_OUT = flags.DEFINE_string("out", None, "The noise_ratios.npz to write (required).")
_FEATURES = flags.DEFINE_string(
    "features", "", "Features folder (either layout); empty: the embedded SYNTHETIC data."
)
_LABELS_DIR = flags.DEFINE_string(
    "labels_dir", "", "Folder with AVVP_*.csv; default: the estimator's, else packaged."
)
_REPLICA = flags.DEFINE_integer(
    "replica", None, "Multi-seed estimator: the replica to use (default: the seed ensemble)."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Clips per batch of the class means.")
_ORDER_SEED = flags.DEFINE_integer("order_seed", 0, "Seed of the clip order of those batches.")
_AUDIO_THRESHOLD = flags.DEFINE_float("audio_threshold", 0.6, "Audio threshold on p / class mean.")
_VISUAL_THRESHOLD = flags.DEFINE_float(
    "visual_threshold", 1.8, "Visual threshold on p / class mean."
)
cli.required(_CHECKPOINT, _OUT)


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  from avvp_jax.tools import noise_ratio_maker  # pylint: disable=g-import-not-at-top
  from avvp_jax.errors import InputError  # pylint: disable=g-import-not-at-top

  try:
    report = noise_ratio_maker.make_noise_ratios(
        _CHECKPOINT.value,
        _OUT.value,
        features_dir=_FEATURES.value,
        labels_dir=_LABELS_DIR.value,
        replica=_REPLICA.value,
        batch_size=_BATCH_SIZE.value,
        order_seed=_ORDER_SEED.value,
        audio_threshold=_AUDIO_THRESHOLD.value,
        visual_threshold=_VISUAL_THRESHOLD.value,
    )
  except InputError as error:
    cli.fail(str(error))
  lines = noise_ratio_maker.report_lines(report)
  for line in lines:
    logging.info("%s", line)
  print("\n".join(lines))
  print(
      f"wrote {report['out']} and {noise_ratio_maker.report_path(report['out'])}; train stage 3 with "
      f"--config.loss.noise_ratios={report['out']}"
  )


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
