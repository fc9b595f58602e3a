"""2-D test surfaces for the Optimizers page: functions f(x, y) with known minima, plain
arithmetic, so the same function takes torch tensors (the race's autograd) and numpy grids.

Every surface has its global minimum value at 0, so the loss itself is the gap to the optimum
and fits a log axis. Each comes with a plotting window, a start point that shows something, and
one learning rate per optimizer that works there (the defaults of `core.optimizers.race`).

    s = SURFACES["beale"]
    s.f(3.0, 0.5)                                 # 0.0 (a tensor for tensors)
    grid(s)                                       # the table the contour chart draws

Run `python -m core.optimizers.surfaces` to print each surface's value at its minima (all ~0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

# Himmelblau's three minima besides (3, 2) have no closed form: the published roots
# (-2.805118, 3.131312) … refined by Newton's method on the gradient to float64 precision.
_HIMMELBLAU_MINIMA = ((3.0, 2.0), (-2.805118086952745, 3.131312518250573),
                      (-3.779310253377747, -3.2831859912861696),
                      (3.5844283403304917, -1.8481265269644034))
GRID_CELLS = 60          # per side: 3,600 cells, about 8 px each in a 480 px chart
LEVELS_PER_DECADE = 3    # filled-contour bands: 1, 2.15, 4.64, 10, … (log-spaced)


@dataclass(frozen=True)
class Surface:
    name: str
    title: str
    formula: str
    f: Callable   # f(x, y), elementwise arithmetic: torch tensors (the race), numpy grids
    window: tuple[float, float, float, float]                 # x_lo, x_hi, y_lo, y_hi
    minima: tuple[tuple[float, float], ...]
    start: tuple[float, float]
    lrs: dict                                                 # optimizer id -> learning rate
    note: str = ""
    floor: float = 1e-3       # lowest contour level drawn: below it the colour is flat

    def contains(self, x: float, y: float) -> bool:
        x_lo, x_hi, y_lo, y_hi = self.window
        return x_lo <= x <= x_hi and y_lo <= y <= y_hi

    def nearest_minimum(self, x: float, y: float) -> tuple[tuple[float, float], float]:
        """The closest of the minima to (x, y), and the distance to it."""
        best = min(self.minima, key=lambda m: math.hypot(x - m[0], y - m[1]))
        return best, math.hypot(x - best[0], y - best[1])


def beale(x, y):
    return ((1.5 - x + x * y) ** 2 + (2.25 - x + x * y ** 2) ** 2
            + (2.625 - x + x * y ** 3) ** 2)


def rosenbrock(x, y):
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2


def himmelblau(x, y):
    return (x ** 2 + y - 11) ** 2 + (x + y ** 2 - 7) ** 2


def saddle(x, y):
    # Two valleys at y = ±√2 with a saddle between them at the origin (f = 1 there): along y = 0
    # the gradient has no y component, so a start near that line shows how long each
    # optimizer takes to notice the way down.
    return x ** 2 + (y ** 2 - 2) ** 2 / 4


QUAD_Y = 25.0   # curvature along y; along x it is 1: condition number 25


def quadratic(x, y):
    # SGD is stable for lr < 2/25 = 0.08 (the steep y direction) but crawls along x at rate
    # (1 − lr): the zig-zag of an ill-conditioned valley.
    return (x ** 2 + QUAD_Y * y ** 2) / 2


def _lrs(sgd, momentum, nesterov, adagrad, rmsprop, adam, sgd_exp, sgd_cyclic) -> dict:
    return dict(sgd=sgd, momentum=momentum, nesterov=nesterov, adagrad=adagrad, rmsprop=rmsprop,
                adam=adam, sgd_exp=sgd_exp, sgd_cyclic=sgd_cyclic)


# Default learning rates, from a sweep of each optimizer over the slider's grid: near the best
# for 500 steps from the default start but clear of divergence, so the race shows each method
# working, with its own character (all on `core.optimizers.race.LR_GRID`).
SURFACES: dict[str, Surface] = {s.name: s for s in (
    Surface("beale", "Beale", "(1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²",
            # Zoomed in from Beale's usual ±4.5 box, where f reaches 1e5 and the paths are
            # a speck in the middle.
            beale, (-1.5, 4.5, -2.5, 3.5), ((3.0, 0.5),), (1.0, 1.5),
            _lrs(0.01, 0.001, 0.001, 0.5, 0.01, 0.05, 0.02, 0.02),
            note="A flat valley curving towards the minimum at (3, 0.5), with walls that rise "
                 "as y³: plain SGD needs a small step not to be thrown off the walls, and then "
                 "crawls along the flat floor."),
    Surface("rosenbrock", "Rosenbrock", "(1 − x)² + 100 (y − x²)²", rosenbrock,
            (-2.0, 2.0, -1.0, 3.0), ((1.0, 1.0),), (-1.5, 2.5),
            _lrs(0.001, 0.0005, 0.0005, 0.5, 0.01, 0.1, 0.002, 0.002),
            note="A narrow curved valley: reaching it is easy, following it to (1, 1) is slow."),
    Surface("himmelblau", "Himmelblau", "(x² + y − 11)² + (x + y² − 7)²", himmelblau,
            (-5.0, 5.0, -5.0, 5.0), _HIMMELBLAU_MINIMA, (-0.5, -0.5),
            _lrs(0.01, 0.002, 0.002, 0.5, 0.02, 0.1, 0.01, 0.01),
            note="Four minima of equal depth: which one an optimizer reaches depends on its "
                 "path."),
    Surface("saddle", "Saddle", "x² + (y² − 2)²/4", saddle, (-2.5, 2.5, -2.5, 2.5),
            ((0.0, math.sqrt(2)), (0.0, -math.sqrt(2))), (-2.0, 0.05),
            _lrs(0.02, 0.002, 0.002, 0.2, 0.01, 0.05, 0.05, 0.05),
            note="A saddle at the origin between two valleys: starting close to y = 0, the "
                 "gradient barely points off the ridge, and the way down is found slowly — "
                 "except by optimizers that rescale small gradients."),
    Surface("quadratic", "Ill-conditioned quadratic", "(x² + 25 y²)/2", quadratic,
            (-3.0, 3.0, -3.0, 3.0), ((0.0, 0.0),), (-2.5, 1.5),
            _lrs(0.05, 0.005, 0.005, 0.5, 0.01, 0.05, 0.05, 0.05),
            note="Twenty-five times steeper along y than along x: a step size safe for y is tiny "
                 "for x.", floor=1e-2),
)}


def grid(surface: Surface, cells: int = GRID_CELLS) -> pd.DataFrame:
    """The surface on a cells × cells grid over its window: one row per cell.

    Columns: x, y (cell centre), x0, x1, y0, y1 (cell edges), f (the value at the centre) and
    level, the largest log-spaced contour level ≤ f (floored at the surface's `floor`), which
    the chart colours on a log scale: filled contour bands, since f spans orders of magnitude.
    """
    x_lo, x_hi, y_lo, y_hi = surface.window
    xe = np.linspace(x_lo, x_hi, cells + 1)
    ye = np.linspace(y_lo, y_hi, cells + 1)
    xc, yc = (xe[:-1] + xe[1:]) / 2, (ye[:-1] + ye[1:]) / 2
    gx, gy = np.meshgrid(xc, yc, indexing="xy")
    f = surface.f(gx, gy)   # the surfaces are arithmetic: numpy arrays in, float64 out
    i = np.tile(np.arange(cells), cells)       # x index, fastest
    j = np.repeat(np.arange(cells), cells)     # y index
    level = 10.0 ** (np.floor(np.log10(np.maximum(f.ravel(), surface.floor)) * LEVELS_PER_DECADE)
                     / LEVELS_PER_DECADE)
    return pd.DataFrame({"x": gx.ravel(), "y": gy.ravel(), "x0": xe[i], "x1": xe[i + 1],
                         "y0": ye[j], "y1": ye[j + 1], "f": f.ravel(), "level": level})


if __name__ == "__main__":  # pragma: no cover - a quick look from the shell
    for s in SURFACES.values():
        values = [float(s.f(a, b)) for a, b in s.minima]
        print(f"{s.name:12s} f at minima: {', '.join(f'{v:.1e}' for v in values)}")
