r"""Converts an official PyTorch HAN checkpoint into an avvp_jax checkpoint.

  python launch/convert_official.py --checkpoint=models/MMIL_Net.pt --out=./workdir/han_official
  python launch/evaluate.py --config=configs/han.py --config.data.features_dir=/data/llp \
      --workdir=./workdir/han_official --checkpoint=./workdir/han_official --split=test

Flags:
  --checkpoint  the state_dict saved by YapengTian/AVVP-ECCV20's main_avvp.py (`MMIL_Net`).
  --out         the folder to write: OUT/config.json (the config of the converted model) and OUT/params/
                (an Orbax StandardCheckpointer save of the Flax params), the params-only layout of
                `avvp_jax.checkpoint` that launch/evaluate.py and launch/parse.py accept via --checkpoint.
  --config      optional base config file[:preset] with `--config.x=y` overrides (e.g. the data fields to
                store in OUT/config.json); default configs/han.py. Its model section is replaced by the
                architecture read off the checkpoint.

Needs torch (the `parity` extra: pip install -e '.[parity]'). Bad input prints one line `error: ...` to
stderr and exits with status 2.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from ml_collections import config_flags

from avvp_jax import cli  # pylint: disable=g-import-not-at-top

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Official MMIL_Net state_dict (.pt).")
_OUT = flags.DEFINE_string("out", None, "Folder to write OUT/config.json and OUT/params/ into.")
_CONFIG = config_flags.DEFINE_config_file("config", None, "Optional base config file[:preset]; default "
                                          "configs/han.py.", lock_config=True)


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  if not _CHECKPOINT.value or not _OUT.value:
    cli.fail("--checkpoint (the official .pt file) and --out (the folder to write) are both required.")
  config = cli.loaded_config(_CONFIG)
  from avvp_jax import convert  # pylint: disable=g-import-not-at-top
  from avvp_jax.errors import InputError  # pylint: disable=g-import-not-at-top
  try:
    out = convert.convert_official_han(_CHECKPOINT.value, _OUT.value, config)
  except InputError as error:
    cli.fail(str(error))
  print(f"wrote {out}/config.json and {out}/params/")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
