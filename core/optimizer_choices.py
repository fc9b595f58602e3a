"""The optimizers a setting may name, and their defaults: names only, no torch.

Every family's settings (core/lab/config.py, core/recurrent/config.py, core/attention/config.py)
offer these names, and every settings form imports them; core.training turns a name into a
torch.optim optimizer. Keeping the names apart from torch lets Home and the forms load without
importing torch (~1.1 s on a cold server's first page).
"""

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
MOMENTUM = 0.9              # the usual momentum, where a lesson does not set its own
BETAS = (0.9, 0.999)        # torch's Adam defaults
EPS = 1e-8                  # torch's Adam/AdamW/RMSprop default ε
# Tensors the size of the parameters each optimizer keeps (its state), for the memory budget.
OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "nesterov": 1, "adagrad": 1, "rmsprop": 1,
                   "adam": 2, "adamw": 2}
