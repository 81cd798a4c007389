"""Make the README's picture of a real report: the default study's headline and curve.

Runs the default study (examples/mnist1d-cnn.toml, resumed if its directory already
holds it), measures the noise scale beside it, writes the report, renders the page
in headless Chromium and saves a screenshot of its headline and scaling sections.
Nothing in the picture is drawn by hand.

Needs Debian's chromium and the dev extra (playwright).

Run:  python docs/readme_figure.py [--study runs/mnist1d-cnn] [--out docs/images/report.png]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def batchlab(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "batchlab", *args], check=True, cwd=ROOT)


def screenshot(report: Path, out: Path, width: int = 1200) -> None:
    """The report's headline and steps-to-target sections, as one PNG."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(report.resolve().as_uri())
        top = page.locator("#headline").bounding_box()
        bottom = page.locator("#scaling").bounding_box()
        assert top is not None and bottom is not None
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(
            path=str(out),
            full_page=True,
            clip={
                "x": 0,
                "y": top["y"],
                "width": width,
                "height": bottom["y"] + bottom["height"] - top["y"],
            },
        )
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=ROOT / "runs" / "mnist1d-cnn")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "report.png")
    args = parser.parse_args()
    study = args.study.resolve()
    batchlab("study", "run", "examples/mnist1d-cnn.toml", "--out", str(study), "--workers", "2")
    if not (study / "noise_scale.json").exists():
        batchlab(
            "noise-scale",
            "--workload",
            "mnist1d-cnn",
            "--batch-size",
            "256",
            "--train",
            "--steps",
            "300",
            "--ema-decay",
            "0.95",
            "--out",
            str(study / "noise_scale.json"),
        )
    batchlab("report", str(study))
    screenshot(study / "report.html", args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
