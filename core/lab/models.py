"""Networks built from a `RunConfig` with PyTorch's own modules and `nn.init`.

Every network is a chain of named `Layer`s (`hidden1` … `hiddenN`, or `conv1` … `dense` for the
CNN, then `output`) so the recorder can hook each one and the charts can label it.

    model = build_model(cfg, input_shape=(1, 8, 8), n_classes=10)
    [name for name in model.layers]    # ['hidden1', 'hidden2', 'hidden3', 'hidden4', 'output']
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from core import activations
from core.data.datasets import IMAGE_SHAPES
from core.lab.config import RunConfig
from core.training import init_weights_, pytorch_default_bias_

# What the networks read, by dataset, for counting their cost without loading anything.
TOY_INPUTS = 2              # a 2-D toy set's points: (x, y)
CLASSES = 10                # every image set's; the toy sets have 2


class Layer(nn.Module):
    """One recorded layer: linear map (dense or conv) → batch norm? → activation → dropout → pool?

    `residual=True` adds the input back (x + f(x)), which needs matching shapes.
    """

    def __init__(self, linear: nn.Module, *, activation: str | None, norm: nn.Module | None = None,
                 dropout: float = 0.0, pool: bool = False, flatten_input: bool = False,
                 residual: bool = False):
        super().__init__()
        self.linear = linear
        self.norm = norm
        self.activation = activation  # None for the output layer: logits go to the loss
        self.act = activations.make(activation) if activation else None
        self.drop = nn.Dropout(dropout) if dropout > 0 else None
        self.pool = nn.MaxPool2d(2) if pool else None
        self.flatten_input = flatten_input
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flatten_input:
            x = x.flatten(1)
        h = self.linear(x)
        if self.norm is not None:
            h = self.norm(h)
        if self.act is not None:
            h = self.act(h)
        if self.drop is not None:
            h = self.drop(h)
        if self.pool is not None:
            h = self.pool(h)
        return x + h if self.residual else h


class Network(nn.Module):
    def __init__(self, layers: "OrderedDict[str, Layer]"):
        super().__init__()
        self.layers = nn.ModuleDict(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers.values():
            x = layer(x)
        return x


def build_model(cfg: RunConfig, input_shape: tuple[int, ...], n_classes: int) -> Network:
    """The network the config describes, initialised with the config's scheme and seed."""
    torch.manual_seed(cfg.seed)
    if cfg.model == "cnn":
        layers = _cnn_layers(cfg, input_shape)
    else:
        layers = _mlp_layers(cfg, math.prod(input_shape))
    # Both the MLPs and the CNN (through its dense layer) end in `width` features.
    layers["output"] = Layer(nn.Linear(cfg.width, n_classes, bias=cfg.bias), activation=None)
    model = Network(layers)
    initialise(model, cfg)
    return model


def network_macs(model: str, depth: int, width: int, dataset: str,
                 conv_weight: float = 1.0) -> float:
    """Multiply-adds of one example's forward pass through the network `build_model` builds,
    each of a convolution's counted `conv_weight` times (for the compute budget)."""
    if dataset not in IMAGE_SHAPES:  # a 2-D toy set
        n_in, classes, shape = TOY_INPUTS, 2, None
    else:
        shape, classes = IMAGE_SHAPES[dataset], CLASSES
        n_in = math.prod(shape)
    if model != "cnn":
        return n_in * width + (depth - 1) * width * width + width * classes
    channels, size, macs = shape[0], shape[1], 0
    for _ in range(depth):  # 3×3 convolutions, padding 1, then 2×2 pooling while size ≥ 4
        macs += conv_weight * 9 * channels * width * size * size
        channels, size = width, size // 2 if size >= 4 else size
    return macs + channels * size * size * width + width * classes


def network_sizes(model: str, depth: int, width: int, dataset: str,
                  batch_norm: bool = False) -> tuple[int, list[int], int, int]:
    """(input elements, each layer's output elements before pooling, parameters, the largest
    convolution's unfolded input) of the network `build_model` builds, per example, without
    building it (for the memory budget: a CPU convolution unfolds its input, 9 × channels ×
    pixels, into a workspace)."""
    if dataset not in IMAGE_SHAPES:
        n_in, classes, shape = TOY_INPUTS, 2, None
    else:
        shape, classes = IMAGE_SHAPES[dataset], CLASSES
        n_in = math.prod(shape)
    norm = 4 * width if batch_norm else 0   # γ, β and the two running statistics
    outputs, params, unfolded = [], 0, 0
    if model != "cnn":
        for i in range(depth):
            outputs.append(width)
            params += (n_in if i == 0 else width) * width + width + norm
    else:
        channels, size = shape[0], shape[1]
        for _ in range(depth):
            outputs.append(width * size * size)
            params += 9 * channels * width + width + norm
            unfolded = max(unfolded, 9 * channels * size * size)
            channels, size = width, size // 2 if size >= 4 else size
        outputs.append(width)
        params += channels * size * size * width + width + norm
    outputs.append(classes)
    return n_in, outputs, params + width * classes + classes, unfolded


def _mlp_layers(cfg: RunConfig, n_inputs: int) -> "OrderedDict[str, Layer]":
    layers: OrderedDict[str, Layer] = OrderedDict()
    for i in range(1, cfg.depth + 1):
        # hidden1 maps the input to `width`; only width→width blocks can add a skip connection.
        layers[f"hidden{i}"] = Layer(
            nn.Linear(n_inputs if i == 1 else cfg.width, cfg.width, bias=cfg.bias),
            activation=cfg.activation,
            norm=nn.BatchNorm1d(cfg.width) if cfg.batch_norm else None,
            dropout=cfg.dropout,
            flatten_input=(i == 1),
            residual=(cfg.model == "residual_mlp" and i > 1),
        )
    return layers


def _cnn_layers(cfg: RunConfig, input_shape: tuple[int, ...]) -> "OrderedDict[str, Layer]":
    layers: OrderedDict[str, Layer] = OrderedDict()
    channels, size = input_shape[0], input_shape[1]
    for i in range(1, cfg.depth + 1):
        pool = size >= 4  # halve the image while it is big enough to keep a 2×2 neighbourhood
        layers[f"conv{i}"] = Layer(
            nn.Conv2d(channels, cfg.width, kernel_size=3, padding=1, bias=cfg.bias),
            activation=cfg.activation,
            norm=nn.BatchNorm2d(cfg.width) if cfg.batch_norm else None,
            dropout=cfg.dropout,
            pool=pool,
        )
        channels, size = cfg.width, size // 2 if pool else size
    layers["dense"] = Layer(
        nn.Linear(channels * size * size, cfg.width, bias=cfg.bias),
        activation=cfg.activation,
        norm=nn.BatchNorm1d(cfg.width) if cfg.batch_norm else None,
        dropout=cfg.dropout,
        flatten_input=True,
    )
    return layers


def initialise(model: Network, cfg: RunConfig) -> None:
    """Apply the config's weight and bias init to every dense/conv layer (output included)."""
    with torch.no_grad():
        for layer in model.layers.values():
            init_weights_(layer.linear.weight, cfg.init, sigma_w2=cfg.sigma_w2)
            if layer.linear.bias is not None:   # None: bias off
                _init_bias(layer.linear.bias, layer.linear.weight, cfg)


def _init_bias(b: torch.Tensor, w: torch.Tensor, cfg: RunConfig) -> None:
    match cfg.bias_init:
        case "zeros":
            nn.init.zeros_(b)
        case "constant":
            nn.init.constant_(b, cfg.bias_value)
        case "normal":
            # bias_value is the variance σ_b² here (the mean-field convention); negative means 0.
            nn.init.normal_(b, 0.0, math.sqrt(max(cfg.bias_value, 0.0)))
        case "pytorch_default":
            pytorch_default_bias_(b, w)
