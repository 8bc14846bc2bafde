"""Export a trained text classifier checkpoint for use outside Paradis.

    python -m apps.export_text --ckpt runs/text_lora/checkpoints/best.ckpt --out export/ [--merged]

Writes `OUT/adapter/` (the PEFT adapter + head: `PeftModel.from_pretrained(base, OUT/adapter)`,
with the tokenizer) and, with `--merged`, `OUT/merged/`: the base model with the LoRA weights
folded in, which plain `transformers` loads:
`AutoModelForSequenceClassification.from_pretrained(OUT/merged)` (label names in its config).
A full fine-tuning checkpoint is written as `OUT/merged/` only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lightning_modules.text import TextClassifier
from paradis.checkpoint import check_class, qualified_name, read_checkpoint


def load_classifier(ckpt: str | Path) -> TextClassifier:
    """A trained classifier from a small .ckpt: the file and its class are checked first (one sentence if wrong),
    then Lightning's `load_from_checkpoint` rebuilds the base model and loads the trained tensors."""
    check_class(read_checkpoint(ckpt), ckpt, [qualified_name(TextClassifier)], hint="pass a .ckpt from a text run.")
    return TextClassifier.load_from_checkpoint(str(ckpt), map_location="cpu").eval()


def export(ckpt: str | Path, out: str | Path, merged: bool = False) -> dict[str, Path]:
    """Write the adapter (and the merged model); returns {"adapter": dir, "merged": dir} for what was written."""
    module = load_classifier(ckpt)
    out = Path(out)
    written: dict[str, Path] = {}
    if module.hparams.peft_method == "full":
        merged = True
    else:
        written["adapter"] = out / "adapter"
        module.model.save_pretrained(written["adapter"])
        module.tokenizer.save_pretrained(written["adapter"])
    if merged:
        if module.hparams.peft_method in ("prompt_tuning", "p_tuning"):
            raise ValueError(
                f"A {module.hparams.peft_method} adapter cannot be merged into the base model (its prompt is an extra "
                "input); export without --merged and load it with peft."
            )
        model = module.model if module.hparams.peft_method == "full" else module.model.merge_and_unload()
        written["merged"] = out / "merged"
        model.save_pretrained(written["merged"])
        module.tokenizer.save_pretrained(written["merged"])
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="a .ckpt written by `paradis fit` with a TextClassifier")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--merged", action="store_true", help="also write a merged model that plain transformers loads")
    args = parser.parse_args(argv)
    try:
        written = export(args.ckpt, args.out, args.merged)
    except (ValueError, FileNotFoundError) as err:
        print(f"export_text: error: {err}", file=sys.stderr)
        sys.exit(2)
    for kind, path in written.items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    main()
