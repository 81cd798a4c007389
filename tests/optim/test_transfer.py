"""The transfer rules against the papers' formulas, worked by hand, and the CLI."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

import batchlab as bl
from batchlab.cli import app
from batchlab.optim import (
    LR_RULES,
    OPTIMIZERS,
    TransferResult,
    beta2_half_life,
    default_lr_rule,
    saturating_lr,
    scale_beta2,
    scale_lr,
    scale_weight_decay,
    seesaw_step,
    surge_lr,
    transfer_hparams,
)

# --- β2: half-life fixed in examples (Marek et al. 2025) ---------------------------


def test_beta2_from_64_to_512_is_beta2_to_the_eighth():
    # B'/B = 512/64 = 8, so β2' = 0.95^8 = 0.6634204312890625 (exactly, in decimals;
    # the nearest double of the float product is 0.6634204312890623).
    assert scale_beta2(0.95, 64, 512) == 0.95**8
    assert scale_beta2(0.95, 64, 512) == pytest.approx(0.6634204312890625, rel=1e-15)


def test_beta2_to_a_smaller_batch_moves_towards_one():
    # 512 → 64: β2' = 0.95^(1/8) = exp(ln(0.95)/8) ≈ 0.99361
    assert scale_beta2(0.95, 512, 64) == pytest.approx(math.exp(math.log(0.95) / 8))
    assert scale_beta2(0.95, 512, 64) == pytest.approx(0.993609, abs=1e-6)


def test_half_life_in_examples_is_the_same_before_and_after():
    # h = B·ln(½)/ln(β2): at B = 64, β2 = 0.95, ln(½)/ln(0.95) = 0.693147/0.0512933
    # = 13.5134 steps, so h = 64·13.5134 = 864.86 examples.
    assert beta2_half_life(0.95, 64) == pytest.approx(64 * math.log(2) / -math.log(0.95))
    assert beta2_half_life(0.95, 64) == pytest.approx(864.86, abs=0.01)
    for to in (1, 7, 64, 512, 8192):
        after = scale_beta2(0.95, 64, to)
        assert beta2_half_life(after, to) == pytest.approx(beta2_half_life(0.95, 64), rel=1e-9)


def test_half_life_is_what_halves_the_weight():
    # After t = h/B steps the weight β2^t of an old gradient is ½.
    h = beta2_half_life(0.999, 32)
    assert 0.999 ** (h / 32) == pytest.approx(0.5)


# --- weight decay: timescale 1/(ηλ) fixed in epochs (Wang & Aitchison 2024) -------


def test_weight_decay_at_fixed_lr_grows_with_the_batch():
    # λ' = λ·(B'/B)·(η/η') = 0.1·8·1 = 0.8
    assert scale_weight_decay(0.1, 64, 512) == pytest.approx(0.8)


def test_weight_decay_takes_the_new_lr_into_account():
    # η' = 2√2·η (sqrt rule, ×8): λ' = 0.1·8/(2√2) = 0.2828427...
    assert scale_weight_decay(0.1, 64, 512, lr_factor=math.sqrt(8)) == pytest.approx(
        0.1 * 8 / math.sqrt(8)
    )
    # linear rule: η' = 8η, λ unchanged (Goyal et al. 2017 keep it).
    assert scale_weight_decay(0.1, 64, 512, lr_factor=8.0) == pytest.approx(0.1)


@pytest.mark.parametrize("rule", ["linear", "sqrt", "none"])
def test_lr_times_wd_times_steps_per_epoch_is_invariant(rule):
    n, lr, wd = 50_000, 3e-3, 0.05
    for to in (16, 64, 1000, 4096):
        new_lr = scale_lr(lr, 128, to, rule)
        new_wd = scale_weight_decay(wd, 128, to, lr_factor=new_lr / lr)
        assert new_lr * new_wd * (n / to) == pytest.approx(lr * wd * (n / 128), rel=1e-12)


# --- learning rate: surge (Li et al. 2024) and saturating (McCandlish et al. 2018) --


def _surge(b, b_noise):
    return 1 / (0.5 * (math.sqrt(b_noise / b) + math.sqrt(b / b_noise)))


def test_surge_matches_the_formula():
    # ε(B') / ε(B) with ε ∝ 1/(½(√(Bn/B) + √(B/Bn))), Bn = 300, B = 64 → B' = 512:
    # B=64: √(300/64) = 2.16506, √(64/300) = 0.46188 → ε ∝ 0.761257
    # B=512: √(300/512) = 0.76547, √(512/300) = 1.30639 → ε ∝ 0.965223
    # ratio = 1.267916
    assert surge_lr(1e-3, 64, 512, 300) == pytest.approx(1e-3 * _surge(512, 300) / _surge(64, 300))
    assert surge_lr(1e-3, 64, 512, 300) == pytest.approx(1.267916e-3, rel=1e-6)


def test_surge_peaks_at_the_noise_scale():
    b_noise = 1000
    at_peak = surge_lr(1.0, 100, b_noise, b_noise)
    for b in (10, 100, 500, 999, 1001, 2000, 10_000, 10**6):
        assert surge_lr(1.0, 100, b, b_noise) < at_peak


def test_surge_is_symmetric_in_log_batch_around_the_noise_scale():
    b_noise = 256
    for k in (2, 4, 16, 64):
        assert surge_lr(1.0, 8, b_noise * k, b_noise) == pytest.approx(
            surge_lr(1.0, 8, b_noise // k, b_noise), rel=1e-12
        )


def test_surge_is_the_sqrt_rule_far_below_the_noise_scale():
    # For B, B' ≪ B_noise, ε ∝ 2√(B/Bn)/(1 + B/Bn), so the ratio is
    # √(B'/B)·(1 + B/Bn)/(1 + B'/Bn): with B'/Bn = 1e-4 it is within 1e-4 of √(B'/B).
    b_noise = 10**7
    ratio = surge_lr(1.0, 10, 1000, b_noise)
    assert ratio == pytest.approx(math.sqrt(1000 / 10), rel=1e-4)
    assert ratio == pytest.approx(scale_lr(1.0, 10, 1000, "sqrt"), rel=1e-4)


def test_surge_falls_as_one_over_sqrt_far_above_the_noise_scale():
    ratio = surge_lr(1.0, 10**6, 10**8, 10)
    assert ratio == pytest.approx(math.sqrt(10**6 / 10**8), rel=1e-4)


def test_saturating_lr_is_linear_below_and_flat_above_the_noise_scale():
    # g(B) = 1/(1 + Bn/B): 64 → 512 at Bn = 300: (1 + 300/64)/(1 + 300/512) = 3.59014
    assert saturating_lr(1.0, 64, 512, 300) == pytest.approx((1 + 300 / 64) / (1 + 300 / 512))
    assert saturating_lr(1.0, 10, 1000, 10**7) == pytest.approx(100, rel=1e-3)
    assert saturating_lr(1.0, 10**6, 10**8, 10) == pytest.approx(1.0, rel=1e-4)


# --- Seesaw (Meterez et al. 2025) -------------------------------------------------


def test_seesaw_halving_becomes_one_over_sqrt2_and_double_batch():
    step = seesaw_step(2.0)
    assert step.lr_factor == pytest.approx(1 / math.sqrt(2))
    assert step.batch_factor == 2.0
    lr_factor, batch_factor = seesaw_step(4.0)
    assert (lr_factor, batch_factor) == (0.5, 4.0)


def test_seesaw_keeps_lr_times_sqrt_batch_of_the_plain_cut():
    # Normalized SGD in the variance-dominated regime steps like SGD at a learning rate
    # ∝ η·√B, so two schedules match when (LR divisor)·√(batch factor) does (Meterez
    # et al. 2025): the plain cut has α·√1 = α, Seesaw √α·√α = α.
    for alpha in (1.0, 1.5, 2.0, 10.0):
        step = seesaw_step(alpha)
        assert step.lr_factor / math.sqrt(step.batch_factor) == pytest.approx(1 / alpha)


def test_seesaw_rejects_a_factor_below_one():
    with pytest.raises(ValueError, match="decay_factor must be >= 1"):
        seesaw_step(0.5)


# --- the entry point -------------------------------------------------------------


def test_adamw_transfer_moves_lr_beta2_and_weight_decay():
    result = transfer_hparams(
        {"lr": 3e-4, "beta2": 0.95, "weight_decay": 0.1, "beta1": 0.9},
        64,
        512,
        optimizer="adamw",
    )
    assert isinstance(result, TransferResult)
    assert result.lr_rule == "sqrt"
    # lr: 3e-4·√8 = 8.485281e-4; β2: 0.95^8; λ: 0.1·8/√8 = 0.1·√8 = 0.2828427
    assert result.hparams["lr"] == pytest.approx(3e-4 * math.sqrt(8))
    assert result.hparams["beta2"] == 0.95**8
    assert result.hparams["weight_decay"] == pytest.approx(0.1 * math.sqrt(8))
    assert result.hparams["beta1"] == 0.9
    assert result.transfers["beta1"].rule == "unchanged"
    assert result.transfers["weight_decay"].rule == "timescale"
    assert "2405.13698" in result.transfers["weight_decay"].explanation
    assert "2507.07101" in result.transfers["beta2"].explanation
    assert list(result.hparams) == ["lr", "beta2", "weight_decay", "beta1"]


def test_adamw_weight_decay_without_lr_assumes_a_fixed_lr():
    result = transfer_hparams({"weight_decay": 0.1}, 64, 512, optimizer="adamw")
    assert result.hparams["weight_decay"] == pytest.approx(0.8)


def test_sgd_defaults_to_linear_and_keeps_weight_decay():
    # Linear rule ×4 and the timescale rule: λ' = λ·4/4 = λ (Goyal et al. 2017).
    result = transfer_hparams(
        {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}, 256, 1024, optimizer="momentum"
    )
    assert result.lr_rule == "linear"
    assert result.hparams == {"lr": pytest.approx(0.4), "momentum": 0.9, "weight_decay": 5e-4}


def test_sgd_with_sqrt_rule_raises_weight_decay_to_keep_the_timescale():
    result = transfer_hparams(
        {"lr": 0.1, "weight_decay": 5e-4}, 256, 1024, optimizer="sgd", lr_rule="sqrt"
    )
    # η' = 2η, so λ' = 5e-4·4/2 = 1e-3
    assert result.hparams["weight_decay"] == pytest.approx(1e-3)


@pytest.mark.parametrize("optimizer", ["adam", "lars", "lamb"])
def test_weight_decay_without_a_timescale_is_left_unchanged(optimizer):
    result = transfer_hparams({"lr": 1e-3, "weight_decay": 0.01}, 64, 512, optimizer=optimizer)
    assert result.hparams["weight_decay"] == 0.01
    assert result.transfers["weight_decay"].rule == "unchanged"


def test_beta2_moves_only_for_the_adam_family():
    adam = transfer_hparams({"beta2": 0.99}, 32, 64, optimizer="lamb")
    assert adam.hparams["beta2"] == pytest.approx(0.99**2)
    sgd = transfer_hparams({"lr": 0.1, "beta2": 0.99}, 32, 64, optimizer="sgd")
    assert sgd.hparams["beta2"] == 0.99
    assert "not a hyperparameter of sgd" in sgd.transfers["beta2"].explanation


def test_noise_scale_selects_surge_for_adam_and_saturating_for_sgd():
    adam = transfer_hparams({"lr": 1e-3}, 64, 512, optimizer="adam", noise_scale=300)
    assert adam.lr_rule == "surge"
    assert adam.hparams["lr"] == pytest.approx(surge_lr(1e-3, 64, 512, 300))
    sgd = transfer_hparams({"lr": 0.1}, 64, 512, optimizer="nesterov", noise_scale=300)
    assert sgd.lr_rule == "saturating"
    assert sgd.hparams["lr"] == pytest.approx(saturating_lr(0.1, 64, 512, 300))


def test_surge_lr_factor_feeds_the_weight_decay_rule():
    result = transfer_hparams(
        {"lr": 1e-3, "weight_decay": 0.1}, 64, 512, optimizer="adamw", noise_scale=300
    )
    lr_factor = result.hparams["lr"] / 1e-3
    assert result.hparams["weight_decay"] == pytest.approx(0.1 * 8 / lr_factor)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("rule", LR_RULES)
def test_same_batch_size_is_the_identity(optimizer, rule):
    hparams = {"lr": 0.01, "beta1": 0.9, "beta2": 0.98, "weight_decay": 0.1, "eps": 1e-8}
    noise = 300.0 if rule in ("surge", "saturating") else None
    result = transfer_hparams(
        hparams, 128, 128, optimizer=optimizer, lr_rule=rule, noise_scale=noise
    )
    assert result.hparams == hparams


def test_default_lr_rule_by_family():
    assert default_lr_rule("adamw") == "sqrt"
    assert default_lr_rule("sgd") == "linear"
    assert default_lr_rule("lamb", noise_scale=1.0) == "surge"
    assert default_lr_rule("lars", noise_scale=1.0) == "saturating"


def test_the_root_package_exports_the_entry_point():
    assert bl.transfer_hparams is transfer_hparams
    assert "transfer_hparams" in bl.__all__ and "TransferResult" in bl.__all__


# --- bad input, named in the message ---------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: scale_beta2(0.95, -64, 512), "from_batch_size must be >= 1"),
        (lambda: scale_beta2(0.95, 64, 0), "to_batch_size must be >= 1"),
        (lambda: scale_beta2(0.95, 64.0, 512), "from_batch_size must be an integer"),
        (lambda: scale_beta2(1.0, 64, 512), r"beta2 must be in \(0, 1\), got 1.0"),
        (lambda: scale_beta2(0.0, 64, 512), r"beta2 must be in \(0, 1\)"),
        (lambda: scale_beta2(-0.5, 64, 512), r"beta2 must be in \(0, 1\)"),
        (lambda: beta2_half_life(1.5, 64), r"beta2 must be in \(0, 1\)"),
        (lambda: beta2_half_life(0.9, 0), "batch_size must be >= 1"),
        (lambda: scale_weight_decay(-0.1, 64, 512), "weight_decay must be >= 0"),
        (lambda: scale_weight_decay(0.1, 64, 512, lr_factor=0.0), "lr_factor must be > 0"),
        (lambda: surge_lr(1e-3, 64, 512, 0), "noise_scale must be > 0"),
        (lambda: surge_lr(-1e-3, 64, 512, 300), "lr must be >= 0"),
        (lambda: saturating_lr(1e-3, 64, 512, float("nan")), "noise_scale must be a finite"),
    ],
)
def test_rules_reject_bad_input_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"optimizer": "adagrad"}, "optimizer must be one of 'sgd', 'momentum'.*got 'adagrad'"),
        ({"optimizer": "adam", "lr_rule": "cube"}, "lr_rule must be one of 'linear'.*'surge'"),
        ({"optimizer": "adam", "lr_rule": "surge"}, "lr_rule 'surge' needs noise_scale"),
        (
            {"optimizer": "adam", "lr_rule": "sqrt", "noise_scale": 300},
            "noise_scale is used only by lr_rule 'surge' or 'saturating'",
        ),
        ({"optimizer": "adam", "noise_scale": -3}, "noise_scale must be > 0"),
    ],
)
def test_transfer_rejects_bad_names_and_combinations(kwargs, message):
    with pytest.raises(ValueError, match=message):
        transfer_hparams({"lr": 1e-3}, 64, 512, **kwargs)


def test_transfer_rejects_bad_values_naming_them():
    with pytest.raises(ValueError, match=r"beta2 must be in \(0, 1\)"):
        transfer_hparams({"beta2": 1.2}, 64, 512, optimizer="adamw")
    with pytest.raises(ValueError, match="lr must be a finite number"):
        transfer_hparams({"lr": "fast"}, 64, 512, optimizer="adamw")
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        transfer_hparams({"weight_decay": -1}, 64, 512, optimizer="adam")
    with pytest.raises(ValueError, match="from_batch_size must be >= 1"):
        transfer_hparams({"lr": 1e-3}, -64, 512, optimizer="adamw")


# --- the command line ------------------------------------------------------------

runner = CliRunner()


def test_cli_json_gives_the_transferred_values():
    args = ["transfer", "--from", "64", "--to", "512", "--optimizer", "adamw"]
    args += ["--param", "lr=3e-4", "--param", "beta2=0.95", "--param", "weight_decay=0.1"]
    result = runner.invoke(app, [*args, "--json"], env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["lr_rule"] == "sqrt"
    assert data["hparams"]["lr"] == pytest.approx(3e-4 * math.sqrt(8))
    assert data["hparams"]["beta2"] == pytest.approx(0.6634204312890625, rel=1e-15)
    assert data["hparams"]["weight_decay"] == pytest.approx(0.1 * math.sqrt(8))
    assert data["transfers"]["beta2"]["rule"] == "half-life"
    assert data["transfers"]["lr"]["factor"] == pytest.approx(math.sqrt(8))


def test_cli_json_with_noise_scale_uses_surge():
    args = ["transfer", "--from", "64", "--to", "512", "--optimizer", "adam", "-p", "lr=1e-3"]
    result = runner.invoke(app, [*args, "--noise-scale", "300", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["lr_rule"] == "surge" and data["noise_scale"] == 300
    assert data["hparams"]["lr"] == pytest.approx(1.267916e-3, rel=1e-6)


def test_cli_table_names_every_hyperparameter_and_its_rule():
    args = ["transfer", "--from", "64", "--to", "512", "--optimizer", "adamw"]
    args += ["-p", "lr=3e-4", "-p", "beta2=0.95", "-p", "weight_decay=0.1"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("lr", "beta2", "weight_decay", "sqrt", "half-life", "timescale", "2.828"):
        assert text in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--optimizer", "adagrad", "-p", "lr=1"], "optimizer must be one of"),
        (["--optimizer", "adam"], "give the tuned hyperparameters with --param"),
        (["--optimizer", "adam", "-p", "lr"], "--param expects KEY=VALUE"),
        (["--optimizer", "adam", "-p", "beta2=1.5"], "beta2 must be in (0, 1)"),
        (["--optimizer", "adam", "-p", "lr=1", "--lr-rule", "cube"], "lr_rule must be one of"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_code_2(extra, message):
    result = runner.invoke(app, ["transfer", "--from", "64", "--to", "512", *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_rejects_a_non_positive_batch_size():
    args = ["transfer", "--from", "0", "--to", "512", "--optimizer", "adam", "-p", "lr=1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "--from must be a positive batch size" in result.output
