"""The report's headline when the rungs reject the hyperbola's bend (issue [answer]).

The answer's B_crit is then the free bend's (``batchlab.analysis.fit_knee``); the
report's headline shows it with α and the hyperbola's value, and labels the regimes
and the noise-scale comparison, which stay the hyperbola's, as such.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from batchlab.analysis import summarize_ladder
from batchlab.report._summary import StudySummary
from batchlab.report._view import headline_facts, regime_text

LADDER = [16, 32, 64, 128, 256, 512, 1024, 2048]


def summary_of(alpha: float) -> StudySummary:
    """A ladder on S_min (1 + (96 / B)^α)^(1/α) with three tight seeds per rung."""
    b = np.array(LADDER, dtype=float)
    steps = [float(s) for s in 220 * (1 + (96 / b) ** alpha) ** (1 / alpha)]
    seeds = [[[int(s), int(s * 1.01), int(s * 0.99)]] for s in steps]
    ladder = summarize_ladder(LADDER, steps, candidates=seeds)
    return StudySummary(fit=ladder.fit, regimes=ladder.regimes, answer=ladder.answer)


def test_a_sharp_bend_heads_the_report_with_the_free_bends_b_crit():
    summary = summary_of(4.0)
    assert summary.answer is not None and summary.fit is not None
    assert summary.answer.b_crit_model == "free bend"
    fact = headline_facts(SimpleNamespace(noise_scale=None), summary)[0]
    assert fact.label == "Critical batch size B_crit"
    assert (fact.value, fact.interval) == (summary.answer.b_crit, summary.answer.b_crit_ci)
    assert fact.value != summary.fit.b_crit
    assert "α = 4" in fact.hint and f"the hyperbola's B_crit: {summary.fit.b_crit:.3g}" in fact.hint
    assert regime_text(None, summary)[0].startswith("Regimes of the hyperbola")


def test_the_hyperbola_heads_the_report_with_its_own_b_crit():
    summary = summary_of(1.0)
    assert summary.answer is not None and summary.fit is not None
    assert summary.answer.b_crit_model == "hyperbola"
    fact = headline_facts(SimpleNamespace(noise_scale=None), summary)[0]
    assert (fact.value, fact.interval) == (summary.fit.b_crit, summary.fit.b_crit_ci)
    assert fact.hint == "S(B) = S_min (1 + B_crit / B)"
    assert not any(line.startswith("Regimes of") for line in regime_text(None, summary))
