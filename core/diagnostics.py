"""Diagnostics that read a training step without changing it: how the two terms of Eq. 4 pull
on the parameters they share.

L = λ·L_seg + (1−λ)·L_ccl (Eq. 4). Both terms reach the two encoders, and only those:

    visual  `model.visual`: the ResNet (Res2..Res5), SEM (Eq. 9) and the merge conv: F
    text    `model.text`:   the bi-LSTM, the self-guided attention (Eq. 8) and its Linear: s

(L_seg alone reaches the fusion and the decoder, L_ccl alone LCF (Eq. 5) and the projection
head g.) For each group θ the diagnostic reports |∇θ λL_seg|, |∇θ (1−λ)L_ccl|, the seg share
|∇seg| / (|∇seg| + |∇ccl|) and the cosine of the two gradients: which term drives the shared
features, and whether the terms agree. Computed with `torch.autograd.grad` on the step's own
graph (retain_graph), so nothing reaches `.grad`, no RNG is drawn, and the step's backward
that follows is the one it would have been.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from core.model import CVLS


def shared_parameters(model: CVLS) -> dict[str, list[nn.Parameter]]:
    """The trainable parameters both terms of Eq. 4 reach, by group: 'visual' and 'text'
    (frozen stages, model.freeze_at, get no gradient and are left out)."""
    return {
        "visual": [p for p in model.visual.parameters() if p.requires_grad],
        "text": [p for p in model.text.parameters() if p.requires_grad],
    }


def _grads(term: Tensor | None, params: Sequence[Tensor]) -> list[Tensor]:
    """∇ of `term` w.r.t. each of `params`, zeros where it does not reach (or is absent)."""
    if term is None or not term.requires_grad:
        return [torch.zeros_like(p) for p in params]
    grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def gradient_shares(terms: Mapping[str, Tensor], groups: Mapping[str, Sequence[Tensor]]) -> dict[str, Tensor]:
    """Per group g of `groups`: grad_<g>_seg = |∇ terms['seg']|, grad_<g>_ccl = |∇ terms['ccl']|
    (0 without a 'ccl' term: the Baseline), grad_<g>_seg_share = seg / (seg + ccl), grad_<g>_cos
    = their cosine (0 when either is 0). `terms` are the weighted summands of Eq. 4
    (`core.losses.cvls_terms`), with their graph; returns detached float32 scalars (no host sync).
    """
    params = [p for group in groups.values() for p in group]
    all_seg, all_ccl = _grads(terms["seg"], params), _grads(terms.get("ccl"), params)  # one backward each
    out: dict[str, Tensor] = {}
    start = 0
    for name, group in groups.items():
        g_seg, g_ccl = all_seg[start : start + len(group)], all_ccl[start : start + len(group)]
        start += len(group)
        seg = torch.stack([g.float().square().sum() for g in g_seg]).sum().sqrt()
        ccl = torch.stack([g.float().square().sum() for g in g_ccl]).sum().sqrt()
        dot = torch.stack([(a.float() * b.float()).sum() for a, b in zip(g_seg, g_ccl)]).sum()
        out[f"grad_{name}_seg"] = seg
        out[f"grad_{name}_ccl"] = ccl
        zero = torch.zeros_like(seg)
        out[f"grad_{name}_seg_share"] = torch.where(seg + ccl > 0, seg / (seg + ccl), zero)
        out[f"grad_{name}_cos"] = torch.where(seg * ccl > 0, dot / (seg * ccl), zero)
    return {k: v.detach() for k, v in out.items()}


def gradient_share_names(groups: Iterable[str]) -> tuple[str, ...]:
    """The keys `gradient_shares` returns for groups named `groups`, in its order."""
    return tuple(f"grad_{g}_{k}" for g in groups for k in ("seg", "ccl", "seg_share", "cos"))
