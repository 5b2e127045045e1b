r"""Converts an official PyTorch checkpoint into an avvp_jax one: HAN, VALOR/VALOR+/VALOR++, JoMoLD or LEAP (LLP),
or AVE-ECCV18's A+V-att / DMRN / weak A+V-att, PSP (fully or weakly supervised) or CMBS (either) (AVE).

  python launch/convert_official.py --official=models/MMIL_Net.pt --out=./workdir/han_official
  python launch/convert_official.py --official=MMPyr_LEAP_pretrained.pt \
      --label_embeddings=llp_label_glove_embeddings.pt --out=./workdir/leap_official
  python launch/evaluate.py --checkpoint=./workdir/leap_official --split=test   # writes its eval_test.json
  python launch/convert_official.py --model=psp --official=PSP_fully.pt --out=./workdir/psp_official \
      --config=configs/psp.py --config.data.features_dir=/path/to/ave_features
  python launch/evaluate.py --checkpoint=./workdir/psp_official --split=test   # SYNTHETIC AVE data without
                                                                                # a features_dir

Flags:
  --official          (required) the .pt file the official training script saved: YapengTian/AVVP-ECCV20's MMIL_Net.pt,
                      Franklin905/VALOR's checkpoint_best.pt, MCG-NJU/JoMoLD's JoMoLD.pt (its "model" entry) or
                      jasongief/LEAP's MMPyr_LEAP_pretrained.pt.
  --out               (required) the folder to create (new or empty): OUT/config.json (the converted model's config),
                      OUT/params/ (an Orbax save of the Flax params) and, for LEAP, OUT/label_embeddings.npy.
                      Written to a temporary folder and renamed when complete: an error leaves no OUT.
  --model             LLP: han, leap, valor, jomold; AVE: av_att, dmrn, av_att_weak (AVE-ECCV18's models.att_Net,
                      models_fusion.TBMRF_Net, models_weakly.att_Net), psp, psp_weak (fully_model / weakly_model
                      .psp_net), cmbs, cmbs_weak (CMBS's supv_main_model / weak_main_model); or auto (default: from
                      the file's keys, or a pickled module's class). A checkpoint of another model than the one
                      named is refused. AVE-ECCV18 and PSP save whole pickled modules (torch.save(model)): they
                      are read without their code, and a file asking its unpickler for anything but torch's
                      tensors and modules and the official classes is refused before anything runs.
  --label_embeddings  LEAP only, required: its class-name table, which the state_dict does not hold: the
                      official glove/6B/300d/llp_label_glove_embeddings.pt, or that table as .npy.
  --num_heads         attention heads, which the files do not record: VALOR and LEAP only; default 8, the
                      official runs' (--nhead 8; --mmp_head 8 --avl_head 8).
  --config            optional base config file[:preset] with `--config.x=y` overrides (e.g. the data fields to
                      store in OUT/config.json); default configs/han.py, configs/leap_mmpyr.py for LEAP, and for
                      an AVE model its run card (configs/ave.py, dmrn.py, psp.py, cmbs.py; :weak for the weak
                      ones). Its model section is replaced by the architecture read off the checkpoint (AVE:
                      the run card's model section and data.ave.supervision).

The converted folder is then a --checkpoint of the other launchers (evaluate; LLP models also parse,
parse_video, make_pseudo_labels), and avvp_jax.load_parser(OUT) (LLP) or avvp_jax.load_localizer(OUT) (AVE)
loads it. Old name, deprecated (it warns): --checkpoint (here it named the official .pt: now
--official).

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

# convert.MODELS and "auto" (listed here so that --help and a bad name answer before JAX loads).
MODEL_NAMES = (
    "auto",
    "han",
    "leap",
    "valor",
    "jomold",
    "av_att",
    "dmrn",
    "av_att_weak",
    "psp",
    "psp_weak",
    "cmbs",
    "cmbs_weak",
)
_OFFICIAL = flags.DEFINE_string(
    "official", None, "Official checkpoint file (.pt, .pth.tar) (required)."
)
_OUT = flags.DEFINE_string(
    "out", None, "New folder to write OUT/config.json and OUT/params/ into (required)."
)
_MODEL = flags.DEFINE_enum(
    "model",
    "auto",
    list(MODEL_NAMES),
    "Which official model the checkpoint is; auto: from its keys or pickled class.",
)
_LABEL_EMBEDDINGS = flags.DEFINE_string(
    "label_embeddings",
    None,
    "LEAP: its class-name table " "(llp_label_glove_embeddings.pt or a [25, D] .npy).",
)
_NUM_HEADS = flags.DEFINE_integer("num_heads", None, "VALOR and LEAP: attention heads (default 8).")
_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Optional base config file[:preset]; default "
    "configs/han.py (configs/leap_mmpyr.py for LEAP; an AVE model's run card).",
    lock_config=True,
)
cli.deprecated_alias(
    "checkpoint",
    "official",
    note="here it is now --official (the official .pt file to convert); use --official",
)
cli.required(_OFFICIAL, _OUT)


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  config = cli.loaded_config(_CONFIG)
  from avvp_jax import convert  # pylint: disable=g-import-not-at-top  (after flag parsing: JAX loads late)
  from avvp_jax.errors import InputError  # pylint: disable=g-import-not-at-top

  try:
    out = convert.convert_official(
        _OFFICIAL.value,
        _OUT.value,
        _MODEL.value,
        config,
        label_embeddings=_LABEL_EMBEDDINGS.value,
        num_heads=_NUM_HEADS.value,
    )
  except InputError as error:
    cli.fail(str(error))
  print(f"wrote {out}/config.json and {out}/params/")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
