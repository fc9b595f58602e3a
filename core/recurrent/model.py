"""The recurrent lesson's network: torch's nn.RNN (tanh), nn.LSTM or nn.GRU reads an image a row
(or a chunk of pixels) per time step, and a linear layer classifies the top layer's last hidden
state; the hidden-to-hidden weights start as the config says."""

from __future__ import annotations

import torch
from torch import nn

from core.recurrent.config import RecurrentConfig
from core.training import init_weights_

CELL_MODULES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}  # hidden-to-hidden blocks stacked in weight_hh


class SequenceClassifier(nn.Module):
    """Images [B, 1, H, W] → sequences [B, T, pixels per step] → nn.RNN/LSTM/GRU → linear."""

    def __init__(self, cfg: RecurrentConfig, n_classes: int):
        super().__init__()
        self.seq_len, self.step_size = cfg.seq_len, cfg.step_size
        # nn.RNN's default nonlinearity is tanh: the vanilla RNN of the vanishing-gradient story.
        self.rnn = CELL_MODULES[cfg.cell](cfg.step_size, cfg.hidden, num_layers=cfg.layers,
                                          batch_first=True)
        self.head = nn.Linear(cfg.hidden, n_classes)

    def sequences(self, images: torch.Tensor) -> torch.Tensor:
        """Rows or chunks in reading order: a reshape of the row-major image."""
        return images.reshape(len(images), self.seq_len, self.step_size)

    def forward(self, images: torch.Tensor, states: list | None = None) -> torch.Tensor:
        """Logits. With a list `states`, run step by step and append each step's hidden state
        [layers, B, hidden] (gradient retained): the tensors whose .grad is ∂L/∂h_t."""
        x = self.sequences(images)
        if states is None:
            out, _ = self.rnn(x)
            return self.head(out[:, -1])
        state = None
        for t in range(self.seq_len):
            _, state = self.rnn(x[:, t:t + 1], state)
            h = state[0] if isinstance(state, tuple) else state   # LSTM: (h, c)
            h.retain_grad()
            states.append(h)
        return self.head(h[-1])


def build_recurrent(cfg: RecurrentConfig, n_classes: int) -> SequenceClassifier:
    """The seeded model with its recurrent weights and gate biases initialised as configured."""
    torch.manual_seed(cfg.seed)
    model = SequenceClassifier(cfg, n_classes)
    rnn, hidden = model.rnn, cfg.hidden
    with torch.no_grad():
        for layer in range(cfg.layers):
            # One [hidden, hidden] block per gate, so "orthogonal" means orthogonal per gate.
            if cfg.recurrent_init != "default":   # "default": PyTorch's own, as built
                for block in getattr(rnn, f"weight_hh_l{layer}").chunk(GATES[cfg.cell]):
                    init_weights_(block, cfg.recurrent_init)
            if cfg.cell != "rnn" and cfg.forget_bias is not None:
                # Gate order: LSTM (input, forget, cell, output), GRU (reset, update, new); the
                # gate that keeps the old state is the second in both. Two biases add up.
                keep = slice(hidden, 2 * hidden)
                nn.init.constant_(getattr(rnn, f"bias_ih_l{layer}")[keep], cfg.forget_bias)
                nn.init.zeros_(getattr(rnn, f"bias_hh_l{layer}")[keep])
    return model
