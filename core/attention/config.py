"""`AttentionConfig`: the attention lesson's settings (tokens, d, scaling, logit scale, the
classifier's training), declared into the one settings machinery (core/settings.py).

    cfg = AttentionConfig(d=256)
    cfg.store_key()                                  # "attn-" + the key, `scaled` left out
    AttentionConfig.from_params(cfg.to_params())     # round-trips through a link
"""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import Settings, setting
from core.optimizer_choices import OPTIMIZERS

KEY_PREFIX = "attn-"
TOKENS = ("rows", "patch2", "patch4")          # 8 rows of 8 pixels; 16 2×2 patches; 4 4×4 ones
TOKEN_SHAPES = {"rows": (8, 8), "patch2": (16, 4), "patch4": (4, 16)}   # (tokens, pixels each)
D_GRID = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
SCALE_GRID = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


@dataclass(frozen=True)
class AttentionConfig(Settings):
    SCHEMA_VERSION = 1  # bump when the meaning of a field or the content of a result changes

    tokens: str = setting("rows", "How a digit becomes a sequence: its 8 pixel rows (8 tokens "
                          "of 8 pixels), 2×2 patches (16 tokens of 4) or 4×4 patches (4 tokens "
                          "of 16).", choices=TOKENS, group="attention")
    d: int = setting(64, "Query/key width d. The logit q·k sums d products, so its spread grows "
                     "like √d unless divided by √d.", lo=1, hi=512, group="attention",
                     stops=D_GRID)
    scaled: bool = setting(True, "Divide the logits by √d (as in Transformers). The page draws "
                           "both variants; this one is highlighted.", group="attention")
    logit_scale: float = setting(1.0, "Extra factor on every logit (an inverse softmax "
                                 "temperature): above 1 sharpens attention, below 1 softens it.",
                                 lo=0.01, hi=100.0, log=True, group="attention")
    seed: int = setting(0, "Random seed of the data split, the projections and the classifier.",
                        lo=0, hi=2**31 - 1, group="attention")
    epochs: int = setting(10, "Training passes of the classifier over the digits.", lo=1, hi=50,
                          group="classifier")
    lr: float = setting(3e-3, "Learning rate of the classifier.", lo=1e-5, hi=1.0, log=True,
                        group="classifier")
    optimizer: str = setting("adam", "Update rule (torch.optim); momentum is SGD with momentum "
                             "0.9.", choices=OPTIMIZERS, group="classifier")
    batch_size: int = setting(64, "Examples per step.", lo=1, hi=1024, group="classifier",
                              stops=(8, 16, 32, 64, 128, 256, 512, 1024))
    max_train: int | None = setting(None, "Cap on training digits (empty = all 1,079).", lo=10,
                                    hi=2000, group="classifier", none="all",
                                    stops=(None, 100, 200, 500, 1000))

    def store_key(self) -> str:
        """The classifier's run-store key. `scaled` only picks which variant the page
        highlights (both are trained), so it is left out: one training serves both."""
        return KEY_PREFIX + self.replace(scaled=True).key()
