"""The visual backbone: a torchvision ResNet cut into Res2..Res5, optionally narrowed, with ImageNet
weights loaded from a local file (nothing is downloaded), and frozen stages as detectron2 freezes them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter

from core.errors import UserError

log = logging.getLogger("cvls")

RESNET_CHANNELS = {  # output channels of layer1..layer4 = Res2..Res5
    "resnet10": (64, 128, 256, 512),  # torchvision's ResNet with one BasicBlock per stage
    "resnet18": (64, 128, 256, 512),
    "resnet34": (64, 128, 256, 512),
    "resnet50": (256, 512, 1024, 2048),
}
_warned_scratch = False  # the "training from scratch" warning is logged once per process


class Backbone(nn.Module):
    """A torchvision ResNet cut after layer4, returning [Res2, Res3, Res4, Res5]."""

    def __init__(self, net: torchvision.models.ResNet, channels: tuple[int, ...], pretrained: bool):
        super().__init__()
        self.body = IntermediateLayerGetter(net, {f"layer{i}": f"res{i + 1}" for i in range(1, 5)})
        self.channels = channels
        self.pretrained = pretrained

    def freeze(self, at: int) -> None:
        """Freeze the first `at` stages, detectron2's FREEZE_AT: 1 = the stem (conv1, bn1), 2 = the
        stem and res2 (layer1), ... 5 = the whole ResNet. Their weights get no gradients (no backward
        through them at all, as nothing below them trains) and their batch norms keep the start
        weights' running statistics."""
        self.frozen = nn.ModuleList(m for name, m in self.body.named_children() if _stage(name) <= at)
        for p in self.frozen.parameters():
            p.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> "Backbone":
        super().train(mode)
        for m in getattr(self, "frozen", ()):
            m.eval()  # frozen batch norms: running statistics, never updated
        return self

    def forward(self, x: Tensor) -> list[Tensor]:
        return list(self.body(x).values())


def _stage(child: str) -> int:
    """detectron2's stage number of a ResNet child: the stem (conv1, bn1, relu, maxpool) 1, layer<k> k + 1."""
    return int(child.removeprefix("layer")) + 1 if child.startswith("layer") else 1


def build_backbone(name: str, weights_path: Path | None, widths: tuple[int, ...] | None = None) -> Backbone:
    """ResNet Res2..Res5; ImageNet weights from a LOCAL state_dict file when given.

    Nothing is downloaded: with `weights_path=None` the network starts from random init.
    A missing, unreadable or mismatching file is a `UserError` naming the file. `widths`
    (model.backbone_widths): Res2..Res5's channels of a BasicBlock ResNet; None = torchvision's.
    """
    if name not in RESNET_CHANNELS:
        raise UserError(f"model.backbone: unknown backbone {name!r} (one of {', '.join(RESNET_CHANNELS)})")
    if name == "resnet10":  # the light synthetic-benchmark backbone: no torchvision builder, same class
        net = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1])
    else:
        net = getattr(torchvision.models, name)(weights=None)
    widths = tuple(widths or RESNET_CHANNELS[name])
    if widths != RESNET_CHANNELS[name]:
        _set_widths(net, widths)
    if weights_path is not None:
        _load_imagenet(net, name, Path(weights_path))
    return Backbone(net, widths, pretrained=weights_path is not None)


def _set_widths(net: torchvision.models.ResNet, widths: tuple[int, ...]) -> None:
    """Rebuild a BasicBlock ResNet's four stages with `widths` output channels (the same blocks per
    stage and strides), initialised as torchvision initialises a ResNet."""
    block = torchvision.models.resnet.BasicBlock
    if not isinstance(net.layer1[0], block):  # a Bottleneck's width is not its output's (x4)
        raise UserError("model.backbone_widths applies to resnet10/18/34 (BasicBlock); set it to null")
    blocks = [len(getattr(net, f"layer{i}")) for i in range(1, 5)]
    net.inplanes = net.conv1.out_channels  # what torchvision's _make_layer chains from
    for i, (width, n) in enumerate(zip(widths, blocks)):
        setattr(net, f"layer{i + 1}", net._make_layer(block, width, n, stride=1 if i == 0 else 2))
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def note_random_init(name: str) -> None:
    """Say once per process that the backbone trains from random init (model.init: scratch)."""
    global _warned_scratch
    if not _warned_scratch:
        log.warning("model.init is scratch: the %s backbone trains from random init (no weights file)", name)
        _warned_scratch = True


def _load_imagenet(net: nn.Module, name: str, path: Path) -> None:
    where = f"backbone weights {path}"
    if not path.is_file():
        raise UserError(
            f"{where}: file not found (model.pretrained_weights: a local torchvision {name} ImageNet state_dict)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle/zip errors of every kind: the file is not a state_dict
        raise UserError(f"{where}: not a readable torch state_dict ({type(err).__name__}: {err})") from None
    for wrapper in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise UserError(f"{where}: expected a mapping of parameter names to tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatch, e.g. resnet50 weights for a resnet18
        first = str(err).strip().splitlines()[1:2] or [str(err)]
        raise UserError(f"{where}: does not fit {name} ({first[0].strip()})") from None
    missing = [k for k in missing if not k.startswith("fc.")]  # the classifier is not used
    if missing or unexpected:
        raise UserError(
            f"{where}: not a {name} state_dict ({len(missing)} missing keys, e.g. {missing[:3]}; "
            f"{len(unexpected)} unexpected keys, e.g. {unexpected[:3]})"
        )
