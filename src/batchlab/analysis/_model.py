"""The model S(B) = S_min (1 + B_crit / B) in log space, and the robust loss of its fit.

With θ = (a, c) = (log S_min, log B_crit): log S(B) = a + log(1 + e^(c − log B))
(McCandlish et al. 2018, eq. 2.11), fitted under the soft-L1 loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def log_model(log_b: np.ndarray, a: Any, c: Any) -> np.ndarray:
    """log S(B) = a + log(1 + e^(c − log B)), stable for any c."""
    return a + np.logaddexp(0.0, c - log_b)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """∂ log S / ∂c = B_crit / (B + B_crit) = σ(c − log B)."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def soft_l1(r: np.ndarray, scale: float) -> np.ndarray:
    return 2.0 * scale**2 * (np.sqrt(1.0 + (r / scale) ** 2) - 1.0)
