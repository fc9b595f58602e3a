"""`RecurrentConfig`: the frozen, validated description of one recurrent-network run.

Images are read as sequences: row by row (8 steps of 8 pixels for digits, 28 steps of 28 for
MNIST and Fashion-MNIST) or in chunks of `chunk` pixels in reading order (MNIST in chunks of 16:
49 steps). As with `core.lab.config.RunConfig`, the field metadata drives validation, the URL
parameters and the page's widgets through `core.settings`, as for every config:

    cfg = RecurrentConfig(cell="lstm", hidden=128)
    cfg.key()                                        # the run store's key (after "rnn-")
    RecurrentConfig.from_params(cfg.to_params())     # round-trips through a flat dict of strings
"""

from __future__ import annotations

from dataclasses import dataclass

from core.data.datasets import IMAGE_SHAPES
from core.settings import ConfigError, Settings, setting
from core.optimizer_choices import OPTIMIZERS

KEY_PREFIX = "rnn-"   # of its runs in the run store
SIDES = {name: shape[-1] for name, shape in IMAGE_SHAPES.items()}  # side × side images
DATASETS = tuple(SIDES)
SEQUENCES = ("rows", "chunks")
CELLS = ("rnn", "lstm", "gru")
RECURRENT_INITS = (
    "default",        # PyTorch's own: U(-1/√hidden, 1/√hidden), spectral radius ≈ 0.58
    "orthogonal",     # each gate's hidden-to-hidden block orthogonal: every singular value 1
    "xavier_normal",  # each block N(0, 1/hidden): spectral radius ≈ 1, the edge of chaos
    "normal_small",   # N(0, 0.01²), as in the Training Lab: memory fades within a step or two
    "normal_large",   # N(0, 1), as in the Training Lab: chaotic, gradients explode through time
)
DEVICES = ("auto", "cpu", "cuda", "mps")
MAX_SEQ_LEN = 196   # MNIST in chunks of 4 pixels; longer sequences take too long to train here
MAX_HIDDEN = 512
MAX_EPOCHS = 50


@dataclass(frozen=True)
class RecurrentConfig(Settings):
    SCHEMA_VERSION = 1  # bump when the meaning of a field or the content of a result changes

    # data
    dataset: str = setting("fashion-mnist", "Real images read as sequences: digits 8×8, MNIST "
                           "or Fashion-MNIST 28×28.", choices=DATASETS, group="data")
    sequence: str = setting("rows", "rows: one image row per time step (8 steps for digits, 28 "
                            "for MNIST); chunks: `chunk` pixels per step in reading order "
                            "(longer sequences).", choices=SEQUENCES, group="data")
    chunk: int = setting(16, "Pixels per time step when reading in chunks; must divide the "
                         f"image's pixels into at most {MAX_SEQ_LEN} steps (MNIST: 16 → 49 "
                         "steps; digits: 4 → 16 steps).", lo=1, hi=784, group="data")
    max_train: int | None = setting(1000, "Cap on training images (empty = the whole training "
                                    "split, slow). Smaller is faster.", lo=1, hi=60_000,
                                    group="data", none="all",
                                    stops=(100, 200, 500, 1000, 2000, 5000, 10000, 20000, None))
    # architecture
    cell: str = setting("rnn", "rnn: the vanilla tanh RNN (nn.RNN); lstm: nn.LSTM with its "
                        "additive cell state; gru: nn.GRU with its update gate.", choices=CELLS,
                        group="architecture")
    hidden: int = setting(64, "Hidden units per layer.", lo=1, hi=MAX_HIDDEN,
                          group="architecture", stops=(4, 8, 16, 32, 64, 128, 256, 512))
    layers: int = setting(1, "Stacked recurrent layers; the classifier reads the top layer's "
                          "last hidden state.", lo=1, hi=2, group="architecture",
                          stops=(1, 2))
    # initialisation
    recurrent_init: str = setting(
        "default", "How the hidden-to-hidden weights start (the input weights keep PyTorch's "
        "default). default: U(±1/√hidden); orthogonal: every singular value 1; xavier_normal: "
        "N(0, 1/hidden); normal_small: N(0, 0.01²) forgets at once; normal_large: N(0, 1) "
        "explodes.", choices=RECURRENT_INITS, group="initialisation")
    forget_bias: float | None = setting(
        1.0, "Initial bias of the gate that keeps the old state: the LSTM's forget gate, the "
        "GRU's update gate (empty = PyTorch's default, about 0). 1 is the usual choice "
        "(Jozefowicz et al., 2015); ignored by the vanilla RNN.", lo=-5.0, hi=5.0,
        group="initialisation", none="none")
    # optimisation
    optimizer: str = setting("adam", "Update rule (torch.optim); momentum/nesterov are SGD with "
                             "momentum 0.9.", choices=OPTIMIZERS, group="optimisation")
    lr: float = setting(1e-3, "Learning rate.", lo=1e-5, hi=10.0, log=True, group="optimisation")
    batch_size: int = setting(64, "Sequences per step.", lo=1, hi=1024, group="optimisation",
                              stops=(8, 16, 32, 64, 128, 256, 512, 1024))
    epochs: int = setting(3, "Passes over the training images.", lo=1, hi=MAX_EPOCHS,
                          group="optimisation")
    # clipping
    clip_norm: float | None = setting(None, "Clip the total gradient norm to this with "
                                      "clip_grad_norm_ (empty = off).", lo=1e-4, hi=1e4,
                                      log=True, group="clipping")
    # run
    seed: int = setting(0, "Random seed: same seed, same run.", lo=0, hi=2**31 - 1, group="run")
    device: str = setting("auto", "auto picks CUDA or MPS when present, else the CPU.",
                          choices=DEVICES, group="run")
    record_every: int | None = setting(None, "Measure ‖∂L/∂h_t‖ every this many steps (and at "
                                       "each epoch's first step; empty = about 20 times an "
                                       "epoch).", lo=1, hi=10_000, group="run", none="auto")

    def inert(self) -> dict[str, str]:
        """Settings these options never read (each checked in tests/recurrent: two values of
        it train identically)."""
        out = {}
        if self.sequence == "rows":
            out["chunk"] = "pixels per step are used only when reading the image in chunks"
        if self.cell == "rnn":
            out["forget_bias"] = "the vanilla RNN has no forget or update gate"
        return out

    def check_rules(self) -> None:
        if self.sequence == "chunks":
            pixels = SIDES[self.dataset] ** 2
            ok = chunk_sizes(self.dataset)
            if self.chunk not in ok:
                raise ConfigError("chunk", f"{self.chunk} pixels per step must divide the "
                                  f"{pixels} pixels of a {self.dataset} image into at most "
                                  f"{MAX_SEQ_LEN} steps: one of {', '.join(map(str, ok))}")

    # --- shape of the sequences -------------------------------------------------------------
    @property
    def step_size(self) -> int:
        """Inputs per time step (pixels)."""
        return SIDES[self.dataset] if self.sequence == "rows" else self.chunk

    @property
    def seq_len(self) -> int:
        """Time steps T per image."""
        return SIDES[self.dataset] ** 2 // self.step_size

    def store_key(self) -> str:
        return KEY_PREFIX + self.key()


DEFAULTS = RecurrentConfig()


def chunk_sizes(dataset: str) -> list[int]:
    """The chunk sizes (pixels per step) that fit an image of `dataset`."""
    pixels = SIDES[dataset] ** 2
    return [k for k in range(1, pixels + 1) if pixels % k == 0 and pixels // k <= MAX_SEQ_LEN]
