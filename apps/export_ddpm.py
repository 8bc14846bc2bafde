"""Export a DDPM checkpoint as a diffusers pipeline folder.

    python -m apps.export_ddpm --ckpt runs/ddpm_silhouettes/checkpoints/last.ckpt --out exported/ [--raw]

The folder loads without Paradis:

    from diffusers import DDPMPipeline
    pipe = DDPMPipeline.from_pretrained("exported/")
    images = pipe(batch_size=4, num_inference_steps=1000).images   # PIL images

By default the checkpoint's `state_dict` is exported: the EMA weights when training used the EMA
callback. `--raw` exports the raw (non-averaged) training weights instead (`current_model_state`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from apps.cli import USER_ERRORS
from lightning_modules.ddpm import DDPM
from lightning_modules.unet import export_pipeline
from paradis.checkpoint import check_class, module_from_checkpoint, qualified_name, read_checkpoint


def load_ddpm(ckpt: str | Path, raw: bool = False) -> DDPM:
    """A `DDPM` from a checkpoint written by `paradis fit`, with its EMA weights (or raw ones with `raw`)."""
    checkpoint = read_checkpoint(ckpt, mmap=True)
    check_class(checkpoint, ckpt, [qualified_name(DDPM)], hint="pass a DDPM checkpoint.")
    if raw and "current_model_state" not in checkpoint:
        raise ValueError(f"Checkpoint {ckpt} holds no separate raw weights (it was not trained with EMA); drop --raw.")
    return module_from_checkpoint(DDPM, checkpoint, "current_model_state" if raw else "state_dict").eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m apps.export_ddpm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="a .ckpt written by `paradis fit` with a DDPM config")
    parser.add_argument("--out", required=True, help="output folder for the diffusers pipeline")
    parser.add_argument("--raw", action="store_true", help="export the raw training weights instead of the EMA")
    args = parser.parse_args(argv)
    try:
        path = export_pipeline(load_ddpm(args.ckpt, raw=args.raw), args.out)
    except USER_ERRORS as err:
        if os.environ.get("PARADIS_DEBUG"):
            raise
        print(f"export_ddpm: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(
        f"{'Raw' if args.raw else 'EMA'} pipeline written to {path}; load it with DDPMPipeline.from_pretrained({str(path)!r})"
    )


if __name__ == "__main__":
    main()
