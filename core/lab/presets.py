"""Lesson presets: a configuration, what to look at, and claims checked against the real run.

Every claim a preset makes is a function of the run it produces, so the app can show ✓ or ✗ next
to it, and the tests assert that each preset's claims hold:

    p = PRESETS["vanishing"]
    result = get_run(p.config)
    [claim.check(result) for claim in p.claims]
"""

from __future__ import annotations

from core.lab.config import RunConfig
from core.lab.metrics import power
from core.lab.result import RunResult
from core.lessons import Claim, Preset


def _ratio(r: RunResult) -> float:
    return r.depth_ratio(0)


def _spread(r: RunResult, metric: str = "weight_grad_norm", step: int = 0) -> float:
    """Largest over smallest per-layer value at a step: 1 means every layer alike."""
    v = r.at_step(metric, step)
    return float(v.max() / v.min())


def _median_update(r: RunResult):
    """Each layer's typical update:data ratio: its median over the recorded steps."""
    return r.layer_metric("update_data_ratio").median()


def _median_update_spread(r: RunResult) -> float:
    u = _median_update(r)
    return float(u.max() / u.min())


def _first_grad_entry(r: RunResult) -> float:
    """The first layer's typical gradient entry: the median over the run of its mean |∇W|, the
    size Adam's √v̂ tracks and compares with ε."""
    return float(r.layer_metric("weight_grad_mean_abs").median().iloc[0])


def _level() -> Claim:
    return Claim(lambda r: f"At initialisation the layers' gradient norms are within a factor of "
                           f"{_spread(r):.1f} of each other.",
                 lambda r: _spread(r) < 10)


def _reaches(accuracy: float) -> Claim:
    return Claim(lambda r: f"Validation accuracy reaches {_acc(r):.0%}.",
                 lambda r: _acc(r) > accuracy)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _acc(r: RunResult) -> float:
    return r.final("val", "accuracy")


# lr 0.05, not 0.1: at 0.1 the ReLU fix oscillates between epochs (0.94 → 0.47), so its
# outcome would hang on float summation order (thread count); at 0.05 it is stable.
_VANISHING = RunConfig(depth=10, activation="sigmoid", init="xavier_normal", optimizer="sgd",
                       lr=0.05, epochs=10)
_EXPLODING = RunConfig(depth=20, activation="linear", init="mean_field", sigma_w2=4.0,
                       optimizer="sgd", lr=0.1, epochs=5)

# 300 training images and a wide 3-layer net, at a learning rate and batch size (2e-3, 16) that
# memorise them within a few epochs: then the validation loss climbs steadily. At Adam's usual 1e-3
# with batches of 32 it only plateaus on some seeds (ends 3%, 3% above its best on seeds 1, 4).
# Measured on seeds 0-4 (one thread): lowest at epochs 6, 9, 4, 6, 7, ends 16%, 13%, 37%, 15%, 15%
# above it; training accuracy 100% against validation 93.6-96.4%, a gap of 6.4, 4.7, 6.7, 5.6,
# 3.6 points.
_OVERFITTING = RunConfig(max_train=300, depth=3, width=256, optimizer="adam", lr=2e-3,
                         batch_size=16, epochs=30)
# Without regularisation the validation loss is lowest by epoch 9 on every seed (above); with
# dropout 0.5 at epochs 23, 25, 18, 27, 25, with L2 weight decay 1e-3 at epochs 23, 26, 27, 24,
# 27. An epoch past the run's middle separates them on every seed.
_LATE_BEST = _OVERFITTING.epochs // 2


def _gap(r: RunResult) -> float:
    return r.final("train", "accuracy") - _acc(r)


def _val_losses(r: RunResult):
    e = r.epochs
    return e[(e.split == "val") & (e.metric == "loss")].set_index("epoch")["value"]


def _rise(r: RunResult) -> float:
    """How far the final validation loss sits above its best (0.15 = 15% higher)."""
    v = _val_losses(r)
    return float(v.iloc[-1] / v.min() - 1)


def _best_epoch(r: RunResult) -> int:
    return int(_val_losses(r).idxmin())


_PRESETS = (
    Preset(
        "vanishing", "Vanishing gradients", ":material/trending_down:",
        "A 10-layer sigmoid network: the first layers barely get any gradient.",
        "Look at the gradient-norm heatmap and the gradient-flow bars: each sigmoid layer "
        "multiplies the back-propagated gradient by its slope σ′(z), at most 0.25, and by its "
        "weights, which at Xavier scale do not make up for it, so the first layer's gradient "
        "is orders of magnitude below the last layer's, and the first layers hardly learn.",
        _VANISHING,
        (Claim(lambda r: f"At initialisation the gradient back-propagated to the first layer's "
                         f"output, ‖∂L/∂z‖, is {_ratio(r):.1e} of the gradient at the output.",
               lambda r: _ratio(r) < 1e-4),
         Claim(lambda r: f"Validation accuracy stays near chance: {_acc(r):.0%} after "
                         f"{r.config.epochs} epochs.",
               lambda r: _acc(r) < 0.2)),
        tab="Gradients",
        # hidden1/hidden10's ‖∇W‖: 6e-6 to 9e-6 (median over steps), at most 2e-5, seeds 0-4.
        notice=("The heatmap's top row (hidden1) sits about five orders of magnitude below the "
                "last hidden layer's, at every step of the run."),
    ),
    Preset(
        "exploding", "Exploding gradients", ":material/trending_up:",
        "A 20-layer linear network with large weights and a high learning rate blows up.",
        "Each layer doubles the signal (σ_w² = 4), so the output and the gradients are about a "
        "million times too large; the first SGD step overshoots and the loss becomes NaN. The "
        "run stops there and keeps everything recorded up to that step: the bars of step 0 show "
        "each layer's forward and backward norms.",
        _EXPLODING,
        (Claim(lambda r: _sentence((r.divergence or {}).get("message", "the run did not diverge")),
               lambda r: r.diverged and r.divergence["epoch"] == 1),),
        tab="Gradients",
        notice=("In the last chart (step 0) each layer's forward size and its ‖∂L/∂z‖ are about "
                "twice the previous one's: 20 doublings, a factor of about a million."),
    ),
    Preset(
        "relu_he", "Fix: ReLU + He init", ":material/bolt:",
        "Same depth, ReLU units and He initialisation: gradients reach every layer.",
        "ReLU passes the gradient unchanged where a unit is active, and He initialisation "
        "(variance 2/fan_in) keeps the signal's scale from layer to layer. Compare the heatmap "
        "with the vanishing preset's.",
        _VANISHING.replace(activation="relu", init="he_normal"),
        (_level(), _reaches(0.85)),
        tab="Gradients",
        notice=("At the first step every layer's gradient is within a factor of 3 of every "
                "other's: nothing fades towards the input, unlike the vanishing lesson's heatmap."),
    ),
    Preset(
        "batch_norm", "Fix: batch norm", ":material/tune:",
        "The vanishing network with batch normalisation before each sigmoid.",
        "Batch norm re-centres and re-scales every layer's pre-activations, so the sigmoids "
        "work in their steep middle part. Look at the batch-norm chart (before vs after), then "
        "at the gradient heatmap on the Gradients tab.",
        _VANISHING.replace(batch_norm=True),
        (_level(), _reaches(0.9)),
        tab="Batch norm",
        notice=("After batch norm each layer's values sit centred near zero with a spread of "
                "about 1 or less: the sigmoid's steep middle."),
    ),
    Preset(
        "clipping", "Fix: gradient clipping", ":material/content_cut:",
        "The exploding network with its gradient norm clipped to 1.",
        "Clipping caps every step's length, so the huge first gradients can no longer throw "
        "the weights to infinity. Look at the clipping chart: the norm before clipping, the "
        "threshold, and how often it triggers.",
        _EXPLODING.replace(clip_norm=1.0),
        (Claim(lambda r: f"The run {'diverges' if r.diverged else 'completes'}, and clipping "
                         f"triggers on {r.steps.clipped.mean():.0%} of the steps.",
               lambda r: not r.diverged and r.steps.clipped.mean() > 0.5),
         _reaches(0.7)),
        tab="Clipping",
        notice=("The gradient norm before clipping stays above 100,000 at every step, against a "
                "threshold of 1: every step is cut to length 1, and the run completes."),
    ),
    Preset(
        "residual", "Fix: residual connections", ":material/alt_route:",
        "The vanishing network with skip connections (x + f(x)) around each layer.",
        "A skip connection adds an identity path, so the gradient reaches the first layer "
        "without passing through every sigmoid.",
        _VANISHING.replace(model="residual_mlp"),
        (Claim(lambda r: f"At initialisation the gradient back-propagated to the first layer's "
                         f"output, ‖∂L/∂z‖, is {_ratio(r):.1e} of the gradient at the output "
                         f"(below 1e-4 without the skips).",
               lambda r: _ratio(r) > 1e-3),
         _reaches(0.3)),  # 45-76% on seeds 0-4, against 10% for the same net without skips
        tab="Gradients",
        notice=("At the first step the first layer's gradient is within a factor of 4 of the last "
                "hidden layer's: without the skips it was about 10⁻⁵ of it."),
    ),
    Preset(
        "adam", "Adam evens out the steps", ":material/speed:",
        "The vanishing network trained with Adam instead of SGD.",
        "Adam steps each weight by lr·m̂/(√v̂ + ε): its gradient's running mean over its "
        "running RMS plus ε = 1e-8. While a weight's gradients are well above ε that step is of "
        "order lr whatever their size, so a layer with tiny gradients moves about as fast as "
        "one with large ones; once they fall far below ε it shrinks to about lr·g/ε (next "
        "lesson). Here the first layer's gradient entries are about ε or above: look at the "
        "update:data ratios, level across layers to within a factor of ten. Even steps are "
        "not enough in this budget: after 10 epochs accuracy is still low.",
        _VANISHING.replace(optimizer="adam", lr=1e-3),
        (Claim(lambda r: f"Gradient norms still span a factor of {_spread(r):.0e} across layers "
                         f"at initialisation…",
               lambda r: _spread(r) > 1e4),
         Claim(lambda r: f"…but the first layer's typical gradient entry, "
                         f"{_first_grad_entry(r):.1e}, is not below ε = {power(r.config.eps)}, "
                         f"so the typical update:data ratios differ by only a factor of "
                         f"{_median_update_spread(r):.1f} between layers.",
               lambda r: _first_grad_entry(r) >= r.config.eps
               and _median_update_spread(r) < 10),
         Claim(lambda r: f"Validation accuracy after {r.config.epochs} epochs: {_acc(r):.0%}.",
               lambda r: _acc(r) < 0.3)),
        tab="Weights & ratios",
        notice=("The layers' typical update:data ratios lie within a factor of ten of each "
                "other, though their gradient norms span over four orders of magnitude."),
    ),
    Preset(
        "adam_eps", "Adam below its ε", ":material/hourglass_empty:",
        "Five more sigmoid layers: the first layer's gradients fall below Adam's ε.",
        "Each sigmoid layer shrinks the back-propagated gradient, so 15 layers take the first "
        "layer's gradient entries far below Adam's ε = 1e-8. There ε, not √v̂, dominates the "
        "step's denominator: the step is about lr·g/ε, far below lr, and Adam no longer evens "
        "out the steps. Look at the update:data ratios by layer. Set ε to 1e-12 "
        "(Optimisation) and compare.",
        _VANISHING.replace(optimizer="adam", lr=1e-3, depth=15),
        (Claim(lambda r: f"The first layer's typical gradient entry is "
                         f"{_first_grad_entry(r):.1e}, {r.config.eps / _first_grad_entry(r):,.0f}"
                         f"× below ε = {power(r.config.eps)}…",
               lambda r: _first_grad_entry(r) < r.config.eps / 100),
         Claim(lambda r: f"…so its typical update:data ratio is "
                         f"{_median_update(r).iloc[0]:.1e}, against "
                         f"{_median_update(r).iloc[-1]:.1e} for the output layer; across layers "
                         f"they span a factor of {_median_update_spread(r):.0f}.",
               lambda r: _median_update_spread(r) > 50
               and _median_update(r).iloc[0] < _median_update(r).iloc[-1] / 50)),
        tab="Weights & ratios",
        notice=("The typical update:data ratios now spread over more than a factor of 50 "
                "across layers, the first layer's over 50 times below the output layer's."),
    ),
)

_REGULARISATION = (
    Preset(
        "cnn", "A small CNN", ":material/grid_view:",
        "Two conv–pool layers and a dense layer on the digits, recorded layer by layer.",
        "Convolutions share their weights across the image, so a conv layer has few weights "
        "and a large gradient per weight. The same records as for the MLPs, per conv layer: "
        "look at the gradient heatmap, and on the Activations tab each conv layer's inactive "
        "share (ReLU's zero region) and its dead channels: a channel counts as dead when it is "
        "inactive at every position of every probe image.",
        RunConfig(model="cnn", depth=2, width=16, epochs=10),
        # 83-91% on seeds 0-4 (one thread): the claim is what every seed reaches.
        (_level(), _reaches(0.8)),
        tab="Gradients",
        notice=("At the first step every conv layer's gradient is within a factor of 10 of the "
                "dense layer's: nothing fades towards the input."),
    ),
    Preset(
        "overfitting", "Overfitting", ":material/psychology_alt:",
        "300 training images and a wide network: it memorises them.",
        "Look at loss and accuracy: training accuracy climbs to 100% while validation stalls, "
        "and the validation loss turns upward after a few epochs, the network now fitting the "
        "training images' noise. The Train − val gap above says how far apart they are.",
        _OVERFITTING,
        (Claim(lambda r: f"Training accuracy reaches {r.final('train', 'accuracy'):.0%}, "
                         f"validation {_acc(r):.0%}: a gap of {_gap(r) * 100:.1f} points.",
               lambda r: r.final("train", "accuracy") > 0.99 and _gap(r) > 0.02),
         Claim(lambda r: f"The validation loss is lowest at epoch {_best_epoch(r)} and ends "
                         f"{_rise(r):.0%} higher.",
               lambda r: _best_epoch(r) < _LATE_BEST and _rise(r) > 0.08)),
        tab="Training",
        notice=("Training accuracy climbs to 100% while the validation loss bottoms out after a "
                "few epochs and then climbs."),
    ),
    Preset(
        "dropout", "Fix: dropout", ":material/grain:",
        "The overfitting network with half of its hidden units dropped at random each step.",
        "Dropout keeps any unit from relying on particular others, so the network fits the "
        "training images more slowly. What it fixes here is the validation loss: it keeps "
        "falling for most of the run instead of turning upward after a few epochs, though it "
        "jumps more from epoch to epoch. Compare the loss chart with the overfitting preset's.",
        _OVERFITTING.replace(dropout=0.5),
        (Claim(lambda r: f"The validation loss is lowest at epoch {_best_epoch(r)} of "
                         f"{r.config.epochs} (without dropout: by epoch 9 on seeds 0-4).",
               lambda r: _best_epoch(r) >= _LATE_BEST),
         Claim(lambda r: f"Training accuracy, measured on the training batches with dropout on, "
                         f"is {r.final('train', 'accuracy'):.0%}; validation accuracy "
                         f"{_acc(r):.0%}.",
               # 96.3, 95.7, 97.7, 96.7, 95.0% against 94.7, 94.7, 94.4, 93.0, 93.9% (seeds 0-4)
               lambda r: _acc(r) > 0.9)),
        tab="Training",
        notice=("The validation loss keeps falling for most of the run instead of turning upward "
                "after a few epochs (the overfitting lesson's)."),
    ),
    Preset(
        "weight_decay", "Fix: weight decay", ":material/compress:",
        "The overfitting network with L2 weight decay 1e-3 added to Adam's gradients.",
        "Weight decay adds 1e-3 × w to every parameter w's gradient: the loss minimised is "
        "now the training loss plus 0.0005 × ‖w‖², which has its minimum at finite weights, "
        "so once the training images are fitted the network cannot keep growing its weights "
        "to become ever more confident on them. The validation loss levels off instead of "
        "climbing, and its lowest epoch comes late in the run (the accuracy gap barely moves "
        "on this data). Compare the loss chart with the overfitting preset's.",
        _OVERFITTING.replace(weight_decay=1e-3),
        (Claim(lambda r: f"The validation loss is lowest at epoch {_best_epoch(r)} of "
                         f"{r.config.epochs} (without weight decay: by epoch 9 on seeds 0-4).",
               lambda r: _best_epoch(r) >= _LATE_BEST),
         _reaches(0.9)),  # 92.5, 95.3, 93.6, 93.0, 95.0% on seeds 0-4
        tab="Training",
        notice=("The validation loss levels off instead of climbing, and its lowest epoch comes "
                "late in the run."),
    ),
    Preset(
        "early_stopping", "Fix: early stopping", ":material/front_hand:",
        "The overfitting network, stopped once its validation loss stops improving.",
        "Early stopping watches the validation loss and stops after `patience` epochs without "
        "a new best: the run ends near the epoch where the network generalised best, and costs "
        "a fraction of the epochs.",
        _OVERFITTING.replace(epochs=60, patience=5),
        (Claim(lambda r: (f"Training stopped after epoch {r.early_stop['epoch']} of "
                          f"{r.config.epochs}: the validation loss was lowest at epoch "
                          f"{r.early_stop['best_epoch']}.") if r.early_stop
               else "Training used every epoch: the validation loss kept improving.",
               lambda r: bool(r.early_stop) and r.early_stop["epoch"] < 30
               and r.early_stop["epoch"] - r.early_stop["best_epoch"] == r.config.patience),
         _reaches(0.9)),
        tab="Training",
        notice=("The run stops 5 epochs (its patience) after the validation loss's lowest epoch, "
                "well short of its 60."),
    ),
)

PRESETS: dict[str, Preset[RunConfig, RunResult]] = {p.id: p for p in _PRESETS + _REGULARISATION}
