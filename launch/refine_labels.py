r"""MA's stage 2: refines the training clips' weak labels into modality-level labels by the modality exchange.

  python launch/refine_labels.py --checkpoint=WORKDIR --out=DIR [--features=DIR] [--labels_dir=DIR] \
      [--partner_seed=0] [--replica=] [--batch_size=64]

Then retrain on them (stage 3): `python launch/train.py --config=configs/ma.py:retrain
--config.data.refined_labels=DIR` (with the same --config.data.features_dir / labels_dir). The recipe, all three
stages: docs/recipes.md, "MA".

Each training clip gets a partner whose weak labels share no class with its own (drawn from --partner_seed, stored);
the frozen stage-1 model runs on the clip, on the clip with the partner's visual streams, and on the clip with
the partner's audio; MA's `estimate_label` rule then drops the weak labels neither modality recovers once the
other track is exchanged (avvp_jax/tools/ma_refine.py).

Flags:
  --checkpoint   (required) the stage-1 model: a workdir trained with configs/ma.py (its kept save: the last
                 epoch), a step folder, or a params-only checkpoint folder.
  --out          (required) the folder to write: refined_labels.npz (ours), need_to_change.pkl (MA's layout:
                 [visual, audio], 25 lists of training-CSV rows each, plain ints), refine_report.json, and
                 SYNTHETIC.txt for synthetic data. Written whole; an existing folder is replaced only if this
                 tool wrote it.
  --features     a features folder (either layout); empty: the embedded SYNTHETIC data the checkpoint's config
                 describes, whose hidden dense training labels then score the dropped labels.
  --labels_dir   the AVVP_*.csv files; default: the checkpoint's config.data.labels_dir, else the packaged LLP.
  --partner_seed the partners' draw.
  --replica      a multi-seed stage-1 run's replica (the seed it was trained with); default: its first.
  --batch_size   clips per jitted call (three forwards each).

Prints the dropped labels per modality (and, on synthetic data, how many were dropped correctly / wrongly
against the hidden dense labels); the whole report is DIR/refine_report.json. Bad input prints one line
`error: ...` to stderr and exits with status 2.
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
    "checkpoint", None, "Workdir or checkpoint folder of the stage-1 model (required)."
)
_OUT = flags.DEFINE_string(
    "out", None, "Folder to write the refined labels into (config.data.refined_labels) (required)."
)
_FEATURES = flags.DEFINE_string(
    "features", "", "Features folder (either layout); empty: the embedded SYNTHETIC data."
)
_LABELS_DIR = flags.DEFINE_string(
    "labels_dir", "", "Folder with AVVP_*.csv; default: the checkpoint's, else packaged."
)
_PARTNER_SEED = flags.DEFINE_integer("partner_seed", 0, "Seed of the exchange partners' draw.")
_REPLICA = flags.DEFINE_integer(
    "replica", None, "Multi-seed stage-1 run: the replica to use (default: its first seed)."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Clips per jitted call.")
cli.required(_CHECKPOINT, _OUT)


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  from avvp_jax.errors import InputError  # pylint: disable=g-import-not-at-top
  from avvp_jax.tools import ma_refine  # pylint: disable=g-import-not-at-top  (JAX after the flags)

  try:
    report = ma_refine.refine_labels(
        _CHECKPOINT.value,
        _OUT.value,
        features_dir=_FEATURES.value,
        labels_dir=_LABELS_DIR.value,
        seed=_PARTNER_SEED.value,
        replica=_REPLICA.value,
        batch_size=_BATCH_SIZE.value,
    )
  except InputError as error:
    cli.fail(str(error))
  lines = ma_refine.report_lines(report)
  for line in lines:
    logging.info("%s", line)
  print("\n".join(lines))
  print(
      f"wrote {report['out']}; retrain on them with --config=configs/ma.py:retrain "
      f"--config.data.refined_labels={report['out']}"
  )


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
