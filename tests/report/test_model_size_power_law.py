"""The multi-study report's B_crit against model size N: fitted, drawn, explained.

Synthetic studies (:func:`tests.report.conftest.make_results`) whose best steps follow
S(B) = S_min (1 + B_crit / B) with B_crit = C · N^K, each recording its parameter
count N as ``workload.parameters``. The report refits every study's S(B) from its
rungs, then B_crit against N with :func:`batchlab.analysis.fit_power_law`.

The per-study figures (S(B), trials, hyperparameters) are replaced by a stub: they
are tested in test_report.py, and drawing them takes tens of seconds on a shared
CPU; the power-law figure itself is drawn for real and decoded.
"""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import pytest
from markupsafe import escape
from PIL import Image

from batchlab.report import ResultsError, _plots, _trial_plots, build_report, load_study
from batchlab.report._report import model_size_power_law
from batchlab.report._summary import summarize

from .conftest import make_results

K = 0.3
C = 2.0
SIZES = (10_000, 100_000, 1_000_000, 10_000_000)  # B_crit from 32 to 253
LADDER = (8, 32, 128, 512, 2048)
STUB = "data:image/png;base64,c3R1Yg=="  # not a PNG: never decoded below
SECTION = '<div id="model-size">'
POWER_LAW_IMAGE = re.compile(
    r'<figure class="power-law">\s*<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"'
)


def study(name: str, parameters: int | None, b_crit: float, s_min: float = 200.0) -> dict:
    """A finished study with S(B) = S_min (1 + B_crit / B) (steps rounded to the eval
    interval of 10) and, unless ``None``, its parameter count."""
    results = make_results(
        name, s_min=s_min, b_crit=b_crit, batch_sizes=LADDER, trials=3,
        in_progress=False, noise=False,
    )  # fmt: skip
    if parameters is not None:
        results["workload"]["parameters"] = parameters
    return results


def law_studies(sizes: tuple[int, ...] = SIZES, k: float = K) -> list[dict]:
    return [study(f"model-{n}", n, C * n**k) for n in sizes]


def fitted(results: list[dict[str, Any]]):
    studies = [load_study(r) for r in results]
    return model_size_power_law(studies, [summarize(s) for s in studies])


@pytest.fixture
def stub_study_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-study figures as a stub (see the module docstring)."""
    monkeypatch.setattr(_trial_plots, "trials_figure", lambda *a, **k: STUB)
    monkeypatch.setattr(_plots, "scaling_figure", lambda *a, **k: STUB)
    monkeypatch.setattr(_plots, "overlay_figure", lambda *a, **k: STUB)
    for name in ("hyperparameter_figure", "hparam_rules_figure", "noise_figure"):
        monkeypatch.setattr(_plots, name, lambda *a, **k: None)


def test_fitted_exponent_recovers_the_model_size_exponent():
    law = fitted(law_studies())
    assert law is not None
    assert law.fit.x == tuple(float(n) for n in SIZES)
    assert law.studies == tuple(f"model-{n}" for n in SIZES)
    # Tolerance: the fit's own 95% interval. The only error in these studies is the
    # rounding of steps to the evaluation interval (10 steps), which moves each
    # study's B_crit by a few percent; the interval joins the residual t-interval of
    # the log-log slope with a bootstrap over each study's B_crit interval, so it
    # must cover K. It must also be narrow enough to tell K from 0 (model size does
    # matter in these studies), or a wrong exponent could pass inside a wide interval.
    low, high = law.fit.exponent_ci
    assert low <= K <= high
    assert low > 0
    assert high - low < K / 2
    assert "the interval excludes 0, so B_crit grows with model size here" in law.sentence


def test_exponent_zero_is_read_as_the_expected_outcome_at_fixed_data():
    law = fitted(law_studies(k=0.0))
    assert law is not None
    low, high = law.fit.exponent_ci
    assert low <= 0 <= high
    assert "the interval contains 0" in law.sentence
    assert "Zhang et al. 2024" in law.sentence


def test_section_with_three_studies_shows_the_figure_and_the_sentence(stub_study_figures):
    results = law_studies(SIZES[:3])
    law = fitted(results)
    assert law is not None and len(law.fit.x) == 3
    html = build_report(results).html
    assert SECTION in html
    assert str(escape(law.sentence)) in html
    assert law.text.startswith("B_crit ∝ N^k, k = ")
    (payload,) = POWER_LAW_IMAGE.findall(html)
    image = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
    image.load()  # a real, decodable PNG
    assert "Left out" not in html.split(SECTION)[1].split("</div>")[0]


def test_no_section_with_two_studies(stub_study_figures):
    results = law_studies(SIZES[:2])
    assert fitted(results) is None
    assert SECTION not in build_report(results).html


def test_studies_without_a_parameter_count_are_left_out_by_name(stub_study_figures):
    results = law_studies()
    del results[1]["workload"]["parameters"]  # as in results.json files from before
    law = fitted(results)
    assert law is not None
    assert law.left_out == ("model-100000",)
    assert law.fit.x == tuple(float(n) for i, n in enumerate(SIZES) if i != 1)
    html = build_report(results).html
    assert SECTION in html
    assert "Left out (no recorded parameter count): model-100000." in html
    # With two of three counts missing, too few studies are left: no section, no error.
    del results[2]["workload"]["parameters"]
    del results[3]["workload"]["parameters"]
    assert fitted(results) is None
    assert SECTION not in build_report(results).html


def test_one_model_size_has_no_law():
    results = [study(f"seed-{i}", 1000, 64.0 * (1 + 0.1 * i)) for i in range(3)]
    assert fitted(results) is None


def test_a_study_without_a_bend_is_left_out_as_unbounded():
    # S ∝ 1/B over the whole ladder: B_crit runs to the edge of its range and its
    # interval is (low, inf), which the measurement bootstrap cannot use.
    results = [*law_studies(), study("no-bend", 50_000_000, b_crit=1e9, s_min=1.0)]
    law = fitted(results)
    assert law is not None
    assert law.unbounded == ("no-bend",)
    assert law.studies == tuple(f"model-{n}" for n in SIZES)


def test_results_without_parameters_load_and_a_bad_count_is_refused():
    old = study("old", None, 64.0)
    assert "parameters" not in load_study(old).workload
    bad = study("bad", 0, 64.0)
    with pytest.raises(ResultsError, match="workload.parameters"):
        load_study(bad)
