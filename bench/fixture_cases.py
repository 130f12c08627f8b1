"""The authors' recorded calls of the three imported models, for precision measurements (issue #26).

Each case rebuilds the fixture weights (../shared/fixtures/<package>-official: a weight bank and fill
plans, as the packages' official-import tests do), imports them with the package's converter and
returns the call on the recorded inputs, its modules and the authors' recorded fp32 output:

    cocosnet-<config>  translation of recorded samples 0 and 1 (celebahq, ade20k, celebahqedge, deepfashion)
    gangealing-cat     congealing of the 2 recorded 256 px images, K = 1 transformer, 3 similarity iterations
    coordgan-128       G(z_s, z_t) of the 4 recorded latents with the recorded noise, 128 px (through the
                       mapping networks, as the app's generate)

`output()` runs under whatever autocast (and policy) the caller enters; weights stay fp32.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import torch  # noqa: E402

COCOSNET_CONFIGS = ("celebahq", "ade20k", "celebahqedge", "deepfashion")
CASES = (*(f"cocosnet-{c}" for c in COCOSNET_CONFIGS), "gangealing-cat", "coordgan-128")


@dataclass
class FixtureCase:
    output: object  # () -> (B, 3, H, W) float32 image in [-1, 1]
    modules: dict = field(default_factory=dict)  # name -> nn.Module (eval mode)
    authors: torch.Tensor | None = None  # the authors' recorded fp32 output of the same call


def _safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path)


def cocosnet_case(config: str, samples: tuple = (0, 1)) -> FixtureCase:
    import numpy as np
    from test_cocosnet_official import convert, rebuild_state_dicts, recorded_inputs

    from cocosnet import CoCosNetPipeline

    states = rebuild_state_dicts(config)
    corr, gen = convert(config, states["G"], states["Corr"])
    pipe = CoCosNetPipeline(correspondence_network=corr, generator=gen)
    x, ref, ref_map = recorded_inputs(config, list(samples))
    authors = np.load(FIXTURES / "cocosnet-official" / f"outputs_{config}.npz")["fake_image"][list(samples)]

    def output():
        with torch.inference_mode():
            return pipe.run(x, ref, ref_map)[0].float()

    return FixtureCase(output, {"corr": corr, "G": gen}, torch.from_numpy(authors))


def gangealing_case() -> FixtureCase:
    from official_fixtures import rebuild

    from gangealing.convert_official import from_official_checkpoint

    folder = FIXTURES / "gangealing-official"
    bank = _safetensors(folder / "weight_bank.safetensors")["bank"]
    plans = {name: json.loads((folder / f"fixture_{name}.json").read_text()) for name in ("stn_k1", "gen256")}
    ckpt = {"g_ema": rebuild(plans["gen256"]["weight_fill_plan"], bank),
            "t_ema": rebuild(plans["stn_k1"]["weight_fill_plan"], bank),
            "ll": rebuild(plans["gen256"]["ll1_weight_fill_plan"], bank),
            "args": argparse.Namespace(inject=5, num_heads=1)}
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(ckpt, Path(tmp) / "cat.pt")
        pipe = from_official_checkpoint(Path(tmp) / "cat.pt", category="cat")
    x = _safetensors(folder / "stn_inputs.safetensors")["x"]
    authors = _safetensors(folder / "stn_k1_outputs.safetensors")["C2_image_256"]

    def output():
        with torch.inference_mode():
            return pipe.run(x, output_resolution=256).congealed.float()

    return FixtureCase(output, {"T": pipe.transformer}, authors)


def coordgan_case(samples: int = 4) -> FixtureCase:
    from official_fixtures import rebuild

    from coordgan.convert_official import official_components

    folder = FIXTURES / "coordgan-official"
    bank = _safetensors(folder / "weight_bank.safetensors")["bank"]
    plan = json.loads((folder / "fixture_g128.json").read_text())["weight_fill_plan"]
    with tempfile.TemporaryDirectory() as tmp:
        torch.save({"g_ema": rebuild(plan, bank)}, Path(tmp) / "celebA_128.pt")
        g = official_components(Path(tmp) / "celebA_128.pt", code_means=False)["generator"]
    io = _safetensors(folder / "g128_io.safetensors")
    torch.manual_seed(1001)  # the fixture's noise recipe: 11 draws of (4, 1, 128, 128)
    noise = [torch.randn(4, 1, 128, 128)[:samples] for _ in range(g.num_styled_convs)]
    z_s, z_t = io["z_struc"][:samples], io["z_style"][:samples]

    def output():
        with torch.inference_mode():
            return g(z_s=z_s, z_t=z_t, noise=noise, randomize_noise=False).image.float()

    return FixtureCase(output, {"G": g}, io["G1_image"][:samples])


def build_fixture_case(name: str) -> FixtureCase:
    if name.startswith("cocosnet-"):
        return cocosnet_case(name.split("-", 1)[1])
    return {"gangealing-cat": gangealing_case, "coordgan-128": coordgan_case}[name]()


def available() -> bool:
    return all((FIXTURES / f"{p}-official").is_dir() for p in ("cocosnet", "gangealing", "coordgan"))
