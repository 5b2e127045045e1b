"""PyTorch transcriptions shared by the converter tests (the `parity` extra): independent oracles of the
official forwards, written with the official parameter names so a random state_dict maps one to one.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F


class HANLayer(nn.Module):
  """The official HAN layer (AVVP-ECCV20 `HANLayer`, as JoMoLD and VALOR's post-norm branch keep it): cross-modal
  and self attention summed into one residual, then a feed-forward block, both post-norm. Inputs `[B, T, D]`.
  """

  def __init__(self, d_model=512, nhead=1, dim_feedforward=512, dropout=0.1):
    super().__init__()
    self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
    self.cm_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
    self.linear1 = nn.Linear(d_model, dim_feedforward)
    self.dropout = nn.Dropout(dropout)
    self.linear2 = nn.Linear(dim_feedforward, d_model)
    self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
    self.dropout11, self.dropout12, self.dropout2 = (
        nn.Dropout(dropout),
        nn.Dropout(dropout),
        nn.Dropout(dropout),
    )

  def forward(self, src_q, src_v):
    src_q, src_v = src_q.permute(1, 0, 2), src_v.permute(1, 0, 2)
    src1 = self.cm_attn(src_q, src_v, src_v)[0]
    src2 = self.self_attn(src_q, src_q, src_q)[0]
    src_q = self.norm1(src_q + self.dropout11(src1) + self.dropout12(src2))
    src_q = self.norm2(
        src_q + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(src_q)))))
    )
    return src_q.permute(1, 0, 2)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
  """Draws every parameter of `model` anew, so that no parameter keeps a default a converter could get right by
  chance: LayerNorm scale 1 +- 0.2 and bias +-0.2, weights uniform in +-1/sqrt(fan_in), other biases +-0.1.
  Returns the model in eval mode."""
  generator = torch.Generator().manual_seed(seed)
  draw = lambda shape: torch.rand(shape, generator=generator) * 2 - 1
  with torch.no_grad():
    for name, param in model.named_parameters():
      if "norm" in name:
        param.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * draw(param.shape))
      elif param.ndim == 2:
        param.copy_(draw(param.shape) / math.sqrt(param.shape[1]))
      else:
        param.copy_(0.1 * draw(param.shape))
  return model.eval()
