"""The text classifier's network: a transformers sequence classifier (base model + new head) wrapped by peft.

- `load_base`: tokenizer + `AutoModelForSequenceClassification` with a `len(class_names)`-way head.
- `lora_targets`: the modules LoRA adapts, from peft's own table (by `config.model_type`).
- `peft_config`: the LoRA / prompt tuning / P-tuning config (the new head is trained and saved with it).
"""

from __future__ import annotations

import json
from typing import Literal

import torch

from paradis.bundled import resolve_model_path

PeftMethod = Literal["lora", "prompt_tuning", "p_tuning", "full"]


def lora_targets(model: torch.nn.Module) -> list[str]:
    """The attention projections LoRA adapts in `model`: peft's own table, looked up by `config.model_type`."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_TARGETS

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    # peft 0.21's table has no DistilBERT entry (the main config's model): its attention projections.
    targets = {**PEFT_TARGETS, "distilbert": ["q_lin", "v_lin"]}.get(model_type)
    if targets is None:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ValueError(
            f"peft has no LoRA target modules for model type '{model_type}' ({type(model).__name__}); set "
            f"model.target_modules to the names of its attention projections (Linear layers: {', '.join(linear[:20])})."
        )
    return list(targets)


def module_leaves(model: torch.nn.Module) -> set[str]:
    return {name.rsplit(".", 1)[-1] for name, _ in model.named_modules() if name}


def load_base(name_or_path: str, class_names: list[str]):
    """(tokenizer, model, loading info) for `name_or_path` (Hub id, folder or bundled:minilm) with a new head."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = resolve_model_path(name_or_path)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized head" is expected here
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        base, info = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=len(class_names),
            id2label=dict(enumerate(class_names)),
            label2id={n: i for i, n in enumerate(class_names)},
            output_loading_info=True,
        )
    except OSError as err:
        raise FileNotFoundError(
            f"Cannot load the model '{name_or_path}' ({str(err).splitlines()[0][:200]}); pass a local "
            "model folder, a Hub id (online), or bundled:minilm (offline)."
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    if base.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        base.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, base, info


def peft_config(base: torch.nn.Module, info: dict, hp) -> object:
    """The PEFT config of `hp.peft_method` (not "full") for `base`; `info` is `from_pretrained`'s loading info."""
    from peft import LoraConfig, PromptEncoderConfig, PromptTuningConfig, TaskType

    # Modules the checkpoint did not provide (the new head; DistilBERT's pre_classifier too) are
    # trained and saved with the adapter: left frozen they would stay random.
    head = sorted({key.rsplit(".", 1)[0] for key in info.get("missing_keys", []) if "." in key}) or ["classifier"]
    leaves = module_leaves(base)
    extra = [m for m in (hp.modules_to_save or []) if m not in leaves]
    if extra:
        raise ValueError(f"model.modules_to_save {extra} are not modules of {type(base).__name__}; check the names.")
    head = sorted(set(head) | set(hp.modules_to_save or []))
    if hp.peft_method == "lora":
        targets = list(hp.target_modules) if hp.target_modules else lora_targets(base)
        names = [name for name, _ in base.named_modules() if name]
        unknown = [
            t for t in targets if not any(n == t or n.endswith("." + t) for n in names)
        ]  # peft: names or suffixes
        if unknown:
            raise ValueError(
                f"model.target_modules {unknown} are not modules of {type(base).__name__}; pick from its Linear layers, e.g. {lora_targets(base)}."
            )
        layers, depth = list(hp.get("lora_layers") or []), base.config.num_hidden_layers
        if any(not 0 <= i < depth for i in layers):
            raise ValueError(
                f"model.lora_layers {layers} must be block indices from 0 to {depth - 1} ({type(base).__name__} has {depth})."
            )
        return LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=hp.lora_r,
            lora_alpha=hp.lora_alpha,
            lora_dropout=hp.lora_dropout,
            target_modules=targets,
            modules_to_save=head,
            layers_to_transform=layers or None,
        )
    # Sizes given explicitly: peft reads them from config.to_dict(), where DistilBERT names them differently.
    config = base.config
    sizes = {
        "token_dim": config.hidden_size,
        "num_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
    }
    common = {
        "task_type": TaskType.SEQ_CLS,
        "num_virtual_tokens": hp.num_virtual_tokens,
        "modules_to_save": head,
        **sizes,
    }
    if hp.peft_method == "prompt_tuning":
        return PromptTuningConfig(**common)
    return PromptEncoderConfig(encoder_hidden_size=128, **common)


def wrap(base: torch.nn.Module, info: dict, hp, saved_config: str | None = None) -> tuple[torch.nn.Module, str | None]:
    """(the model to train, its PEFT config as JSON); `saved_config` (from a checkpoint) rebuilds the adapter exactly."""
    if hp.peft_method == "full":
        return base, None
    from peft import PeftConfig, get_peft_model

    config = (
        peft_config(base, info, hp) if saved_config is None else PeftConfig.from_peft_type(**json.loads(saved_config))
    )
    model = get_peft_model(base, config)
    return model, json.dumps(config.to_dict(), default=lambda v: sorted(v) if isinstance(v, set) else str(v))
