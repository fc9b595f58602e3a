"""Activation calls seen as functions: which torch functions (and Tensor methods) are which
activation, and the `TorchFunctionMode` that intercepts them while a watched model's forward runs,
so `F.relu` inside nn.TransformerEncoderLayer is measured as nn.ReLU would be."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

# The functions (and the Tensor methods) of each activation, as the function mode sees them.
ACTIVATION_OF = {
    **dict.fromkeys((torch.sigmoid, torch.sigmoid_, F.sigmoid, torch.Tensor.sigmoid,
                     torch.Tensor.sigmoid_), "sigmoid"),
    **dict.fromkeys((torch.tanh, torch.tanh_, F.tanh, torch.Tensor.tanh, torch.Tensor.tanh_),
                    "tanh"),
    **dict.fromkeys((torch.relu, torch.relu_, F.relu, F.relu_, torch.Tensor.relu,
                     torch.Tensor.relu_), "relu"),
    **dict.fromkeys((F.leaky_relu, F.leaky_relu_), "leaky_relu"),
    **dict.fromkeys((F.elu, F.elu_), "elu"),
    **dict.fromkeys((F.selu, torch.selu, torch.selu_), "selu"),
    F.gelu: "gelu", F.silu: "silu", F.softplus: "softplus",
}


class ActivationCalls(TorchFunctionMode):
    """Intercepts activation functions while the model's forward runs; passes all else on.
    `measure_input(name, z)` sees each call's input (what it returns, None to skip the call),
    then `measure_output(measured, out)` its output."""

    def __init__(self, measure_input: Callable[[str, torch.Tensor], Any],
                 measure_output: Callable[[Any, torch.Tensor], None]):
        super().__init__()
        self.measure_input, self.measure_output = measure_input, measure_output

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = ACTIVATION_OF.get(func)
        if name is None or not args or not isinstance(args[0], torch.Tensor):
            return func(*args, **kwargs)
        # The input is measured before the call: an in-place one (nn.ReLU(inplace=True))
        # overwrites it, and .float() of a float32 tensor is that tensor, not a copy.
        measured = self.measure_input(name, args[0].detach().float())
        out = func(*args, **kwargs)
        if measured is not None:
            self.measure_output(measured, out)
        return out
