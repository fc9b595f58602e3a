"""`RunConfig`: the one frozen, validated, hashable description of a training run.

Everything that can vary about a run is a field here, declared with `core.settings.setting`
(its allowed values in the field's metadata), plus the rules across fields (`check_rules`). The CLI flags (`python -m core train --help`), the URL query parameters and the app's
widgets are all derived from these fields, so a new setting is added in exactly one place.

    cfg = RunConfig(depth=10, activation="sigmoid")
    cfg.key()                               # stable hash: run store, URL and CLI agree on it
    RunConfig.from_params(cfg.to_params())  # round-trips through a flat dict of strings
"""

from __future__ import annotations

from dataclasses import dataclass

from core.activations import ACTIVATIONS
from core.budget import MAX_LAYER_ROWS
from core.data.datasets import DATASETS, IMAGE_DATASETS
from core.settings import ConfigError, Settings, setting
from core.optimizer_choices import OPTIMIZERS

MODELS = ("mlp", "residual_mlp", "cnn")
INITS = (
    "zeros",
    "normal_small",   # N(0, 0.01²): the classic "too small" init
    "normal_large",   # N(0, 1): the classic "too large" init
    "xavier_normal",
    "xavier_uniform",
    "he_normal",
    "he_uniform",
    "orthogonal",
    "mean_field",     # N(0, σ_w²/fan_in): the mean-field parameterisation
    "pytorch_default",  # U(±1/√fan_in): nn.Linear's and nn.Conv2d's own reset_parameters()
)
BIAS_INITS = ("zeros", "constant", "normal", "pytorch_default")
LOSSES = ("cross_entropy", "mse")   # core.training.loss_of computes each
LOSS_NAMES = {"cross_entropy": "cross-entropy", "mse": "squared error"}   # in titles
SCHEDULES = ("constant", "exponential", "cosine", "cyclic")
DEVICES = ("auto", "cpu", "cuda", "mps")

# Caps keep one request from stalling a shared server; they are generous for teaching.
MAX_DEPTH = 100
MAX_WIDTH = 1024
MAX_EPOCHS = 200
MAX_TRAIN = 60_000
MAX_CNN_DEPTH = 6
VAL_TRACE_EXAMPLES = 1000   # the fixed validation subset eval_every measures on
CRITERION_WINDOW = 10       # steps the training loss is averaged over for target_loss


@dataclass(frozen=True)
class RunConfig(Settings):
    # Bump when the meaning of a field or the content of a result changes, so cached results of
    # the old meaning are never served for the new one.
    # 3: grad/update ratios are norm ratios (RMS); 4: early stopping; 5: PyTorch's default init
    # and Adam's ε as settings (every key changes with the new fields anyway) and the lead's new
    # result content (inactive share, dead on a probe set, ‖∂L/∂z‖ depth ratio); 6: histograms
    # binned per snapshot (were clamped into the first snapshot's edges), a finer boundary grid.
    # 7: bias, loss, eval_every, target_loss, sharpness_every, percentile_traces; per-unit
    # percentile traces, a validation trace and the sharpness table in results that ask.
    SCHEMA_VERSION = 7

    # data
    dataset: str = setting("digits", "Training data: real images (digits 8×8, MNIST and "
                           "Fashion-MNIST 28×28) or a 2-D toy set.", choices=DATASETS,
                           group="data")
    # 300 examples: the overfitting lessons' (a preset's value must be a stop, or its button
    # would set the nearest one and lose the lesson)
    max_train: int | None = setting(None, "Cap on training examples (empty = the whole "
                                    "training split). Smaller is faster.", lo=1, hi=MAX_TRAIN,
                                    group="data", none="all",
                                    stops=(None, 100, 200, 300, 500, 1000, 2000, 5000, 10000,
                                           20000, 55000))
    noise: float = setting(0.1, "Noise of the 2-D toy sets (ignored for images).", lo=0.0, hi=1.0,
                           group="data")
    # architecture
    model: str = setting("mlp", "mlp: plain stack of dense layers; residual_mlp: x + f(x) blocks; "
                         "cnn: conv–pool layers then a dense layer.", choices=MODELS,
                         group="architecture")
    depth: int = setting(4, "Hidden layers (conv layers for the CNN). Deep sigmoid nets vanish.",
                         lo=1, hi=MAX_DEPTH, group="architecture")
    width: int = setting(64, "Units per hidden layer (channels per conv layer for the CNN).",
                         lo=1, hi=MAX_WIDTH, group="architecture",
                         stops=(2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768,
                                1024))
    activation: str = setting("relu", "Nonlinearity of every hidden layer.", choices=ACTIVATIONS,
                              group="architecture")
    bias: bool = setting(True, "Each dense/conv layer, the output's included, adds a bias: "
                         "z = Wx + b. Off: z = Wx, as in the deep linear networks of Saxe et al. "
                         "2013 (bias_init and bias_value then have nothing to start).",
                         group="architecture")
    # initialisation
    init: str = setting("he_normal", "How weights start. He suits ReLU, Xavier suits tanh; "
                        "normal_large explodes, normal_small vanishes. pytorch_default: "
                        "PyTorch's default for nn.Linear/nn.Conv2d, W ~ U(±1/√fan_in) (the "
                        "'standard' init of Glorot & Bengio 2010, who start biases at 0); for "
                        "PyTorch's biases too, set bias_init=pytorch_default.", choices=INITS,
                        group="initialisation")
    sigma_w2: float = setting(2.0, "Weight variance σ_w² for init=mean_field: "
                              "W ~ N(0, σ_w²/fan_in).", lo=1e-4, hi=100.0, log=True,
                              group="initialisation")
    bias_init: str = setting("zeros", "How biases start: zeros, a constant (bias_value), "
                             "N(0, bias_value) with bias_value as the variance σ_b², or "
                             "pytorch_default: U(±1/√fan_in), as nn.Linear/nn.Conv2d draw them.",
                             choices=BIAS_INITS, group="initialisation")
    bias_value: float = setting(0.0, "The constant for bias_init=constant, or σ_b² for "
                                "bias_init=normal.", lo=-10.0, hi=10.0, group="initialisation")
    # normalisation & regularisation
    batch_norm: bool = setting(False, "Batch normalisation before each hidden activation: keeps "
                               "pre-activations near zero mean, unit variance.",
                               group="regularisation")
    dropout: float = setting(0.0, "Probability of zeroing a hidden unit during training.",
                             lo=0.0, hi=0.9, group="regularisation")
    weight_decay: float = setting(0.0, "L2 weight decay (decoupled for adamw).", lo=0.0, hi=1.0,
                                  group="regularisation")
    patience: int | None = setting(None, "Early stopping: stop once the validation loss has not "
                                   "improved for this many epochs (empty = off).", lo=1,
                                   hi=MAX_EPOCHS, group="regularisation")
    # optimisation
    optimizer: str = setting("adam", "Update rule (torch.optim). momentum/nesterov are SGD with "
                             "momentum.", choices=OPTIMIZERS, group="optimisation")
    lr: float = setting(1e-3, "Learning rate. Too high diverges, too low crawls.", lo=1e-6,
                        hi=100.0, log=True, group="optimisation",
                        stops=(1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02,
                               0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0))
    momentum: float = setting(0.9, "Momentum for momentum/nesterov.", lo=0.0, hi=0.999,
                              group="optimisation")
    beta1: float = setting(0.9, "Adam/AdamW first-moment decay.", lo=0.0, hi=0.999,
                           group="optimisation")
    beta2: float = setting(0.999, "Adam/AdamW second-moment decay; also RMSprop's smoothing α.",
                           lo=0.0, hi=0.9999, group="optimisation")
    eps: float = setting(1e-8, "ε of Adam, AdamW and RMSprop: added to √v̂ (the running RMS of "
                         "a weight's gradient) in the step's denominator, lr·m̂/(√v̂ + ε). A "
                         "weight whose gradients are well above ε gets a step of order lr, "
                         "whatever their size; one whose gradients are far below ε gets about "
                         "lr·g/ε, far smaller than lr.", lo=1e-12, hi=1.0, log=True,
                         group="optimisation")
    loss: str = setting("cross_entropy", "Training loss. cross_entropy: softmax cross-entropy "
                        "of the outputs. mse: squared error of the outputs against the one-hot "
                        "target, averaged over the classes, (1/C)·Σ_c (z_c − [c = y])². "
                        "Accuracy is the argmax of the outputs either way.", choices=LOSSES,
                        group="optimisation")
    schedule: str = setting("constant", "Learning-rate schedule: exponential decay per epoch, "
                            "cosine to zero, or cyclic (triangular between lr/10 and lr).",
                            choices=SCHEDULES, group="optimisation")
    lr_decay: float = setting(0.9, "Per-epoch factor of the exponential schedule.", lo=0.01, hi=1.0,
                              group="optimisation")
    batch_size: int = setting(64, "Examples per step.", lo=1, hi=4096, group="optimisation",
                              stops=(8, 16, 32, 64, 128, 256, 512, 1024, 2048))
    epochs: int = setting(10, "Passes over the training set.", lo=1, hi=MAX_EPOCHS,
                          group="optimisation")
    # clipping
    clip_norm: float | None = setting(None, "Clip the total gradient norm to this (empty = off).",
                                      lo=1e-4, hi=1e4, log=True, group="clipping")
    clip_value: float | None = setting(None, "Clip each gradient element to ±this (empty = off).",
                                       lo=1e-4, hi=1e4, log=True, group="clipping")
    # run
    seed: int = setting(0, "Random seed: same seed, same run.", lo=0, hi=2**31 - 1, group="run")
    device: str = setting("auto", "auto picks CUDA or MPS when present, else the CPU.",
                          choices=DEVICES, group="run")
    record_every: int | None = setting(None, "Record per-layer statistics every this many steps "
                                       "(empty = about 50 records per epoch, fewer where a "
                                       f"long, deep run would record over {MAX_LAYER_ROWS:,} "
                                       "rows).", lo=1, hi=10_000,
                                       group="run", none="auto",
                                       stops=(None, 1, 2, 5, 10, 20, 50, 100))
    sharpness_every: int | None = setting(None, "Every this many steps, the sharpness: the top "
                                          "eigenvalue of the loss's Hessian on a fixed batch "
                                          "(the first 1,024 training examples), by 20 "
                                          "Hessian-vector products, drawn against 2/lr, the "
                                          "edge of stability of gradient descent. Costly: an "
                                          "estimate takes about as long as 200 steps of the "
                                          "default MLP (empty = off).", lo=1, hi=10_000,
                                          group="run", none="off")

    percentile_traces: bool = setting(False, "Also record, at every record, the 15th, 50th and "
                                      "85th percentiles of a few fixed units' pre-activations "
                                      "and each hidden layer's 98th activation percentile (as "
                                      "Ioffe & Szegedy's and Glorot & Bengio's figures show). "
                                      "Costs a few ms a recorded step.", group="run")
    eval_every: int | None = setting(None, "Also measure loss and accuracy on a fixed validation "
                                     f"subset (its first {VAL_TRACE_EXAMPLES:,} examples) "
                                     "every this many steps, not only per epoch (empty = off).",
                                     lo=1, hi=100_000, group="run")
    target_loss: float | None = setting(None, "Loss criterion: the run reports the first step at "
                                        "which its training loss, averaged over the last "
                                        f"{CRITERION_WINDOW} steps, is at or below this, and "
                                        "stops at the end of that epoch (empty = off).",
                                        lo=1e-8, hi=100.0, log=True, group="run")

    def inert(self) -> dict[str, str]:
        """Settings the trainer never reads with these options (each checked in
        tests/lab/test_config.py: two values of it train identically)."""
        out = {}
        if self.dataset in IMAGE_DATASETS:
            out["noise"] = f"noise is used only by the 2-D toy sets, not by {self.dataset}"
        if self.init != "mean_field":
            out["sigma_w2"] = f"σ_w² is used only by init=mean_field, not by {self.init}"
        if not self.bias:
            out["bias_init"] = "the layers have no biases (bias is off)"
            out["bias_value"] = "the layers have no biases (bias is off)"
        elif self.bias_init not in ("constant", "normal"):
            out["bias_value"] = ("the bias value is used only by bias_init=constant or normal, "
                                 f"not by {self.bias_init}")
        if self.optimizer not in ("momentum", "nesterov"):
            out["momentum"] = (f"momentum is used only by the momentum and nesterov "
                               f"optimizers, not by {self.optimizer}")
        if self.optimizer not in ("adam", "adamw"):
            out["beta1"] = f"β₁ is used only by adam and adamw, not by {self.optimizer}"
        if self.optimizer not in ("adam", "adamw", "rmsprop"):
            out["beta2"] = f"β₂/α is used only by adam, adamw and rmsprop, not by {self.optimizer}"
            # Adagrad keeps torch's own ε (core.training.make_optimizer).
            out["eps"] = f"ε is used only by adam, adamw and rmsprop, not by {self.optimizer}"
        if self.schedule != "exponential":
            out["lr_decay"] = ("the decay factor is used only by schedule=exponential, "
                               f"not by {self.schedule}")
        return out

    def check_rules(self) -> None:
        if self.clip_norm is not None and self.clip_value is not None:
            raise ConfigError("clip_value", "set clip_norm or clip_value, not both")
        if self.batch_norm and self.batch_size < 2:
            raise ConfigError("batch_size", "batch norm needs at least 2 examples per batch")
        if self.model == "cnn":
            if self.dataset not in IMAGE_DATASETS:
                raise ConfigError("model", f"cnn needs an image dataset "
                                  f"({', '.join(sorted(IMAGE_DATASETS))}), not {self.dataset!r}")
            if self.depth > MAX_CNN_DEPTH:
                raise ConfigError("depth", f"a cnn has at most {MAX_CNN_DEPTH} conv layers, "
                                  f"got {self.depth}")


# The Lab's settings table: the CLI, the pages and the exports iterate it.
FIELDS = RunConfig.fields()
