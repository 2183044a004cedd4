"""nnU-Net v2 trainers for the quality-guided methods (docs/integrations.md, "nnU-Net v2").

Each class keeps everything of ``nnUNetTrainer`` (planning, preprocessing, the labelled
stream with its augmentation and deep supervision, poly LR, SGD, validation, checkpoints,
``--c`` resume) and adds, per training iteration:

- a batch from an **unlabelled stream**: nnU-Net's own data loader and training
  augmentation over unlabelled cases preprocessed with the same plans, drawn without
  foreground oversampling and with its targets dropped (they never reach a loss);
- an **EMA teacher** of the network (qgfast.ssl.ema), updated after every optimiser step
  and saved in nnU-Net's checkpoints;
- the **unsupervised term**, ramped in over nnU-Net epochs (qgfast.ssl.ramps, the paper's
  schedule): mean-teacher softmax MSE to the teacher's prediction on a noisy input (MT),
  weighted per sample by the quality guide's score of the teacher's hard pseudolabel
  (MT-QW); or Dice+CE to the teacher's hard pseudolabels, kept above a confidence
  threshold (PL) or weighted by the guide (PL-QW), the paper's PL-QW.

Configuration comes from environment variables, as nnU-Net's own paths do, because
``nnUNetv2_train`` builds trainers with fixed arguments:

- ``QGFAST_NNUNET_UNLABELED`` (required): a text file of case identifiers (one per line)
  of the preprocessed dataset to use as unlabelled (they are removed from the labelled
  training split; their labels are never read), or a folder of images named as nnU-Net
  names them (``CASE_0000.nii.gz``, ...), preprocessed with the plans on first use into the
  output folder.
- ``QGFAST_NNUNET_GUIDE`` (the -QW variants): a ``qgfast train-quality`` checkpoint whose
  predictor takes the configuration's input channels and classes.
- ``QGFAST_NNUNET_EPOCHS`` / ``QGFAST_NNUNET_ITERATIONS`` / ``QGFAST_NNUNET_VAL_ITERATIONS``
  (optional): override nnU-Net's 1000 epochs of 250 training and 50 validation
  iterations (smoke tests, short budgets).
- ``QGFAST_NNUNET_RAMP`` (optional): ``W,R``, the unsupervised weight's warm-up and ramp
  length in epochs (default the paper's 15,30).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from qgfast.losses import quality_weighted_dice_ce, softmax_mse
from qgfast.ssl.base import hard_labels
from qgfast.ssl.ema import MEAN_TEACHER_DECAY, PAPER_PL_DECAY, ema_update, make_teacher
from qgfast.ssl.ramps import LinearRamp, paper_unsupervised_ramp

UNLABELED_ENV, GUIDE_ENV = "QGFAST_NNUNET_UNLABELED", "QGFAST_NNUNET_GUIDE"
EPOCHS_ENV, ITERATIONS_ENV = "QGFAST_NNUNET_EPOCHS", "QGFAST_NNUNET_ITERATIONS"
RAMP_ENV, VAL_ITERATIONS_ENV = "QGFAST_NNUNET_RAMP", "QGFAST_NNUNET_VAL_ITERATIONS"
_CUDA = torch.device("cuda")  # nnU-Net's default device
PL_CONFIDENCE = 0.9  # PL's fixed threshold on the teacher's mean max-probability
TEACHER_NOISE = (0.1, 0.2)  # MT: Gaussian noise std and clip on the teacher's input


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} must be a positive integer") from None
    if number < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return number


def _ramp(final: float):
    value = os.environ.get(RAMP_ENV)
    if value is None:
        return paper_unsupervised_ramp(final)
    try:
        warmup, length = (float(v) for v in value.split(","))
        return LinearRamp(final, warmup, length)
    except ValueError as err:
        raise ValueError(
            f"{RAMP_ENV}={value!r} must be 'W,R' (epochs, W >= 0, R >= 0): {err}"
        ) from None


def _first(output: Any) -> torch.Tensor:
    """The full-resolution output (deep supervision returns one per scale)."""
    return output[0] if isinstance(output, list | tuple) else output


class nnUNetTrainerQGBase(nnUNetTrainer):
    """The shared machinery; subclasses set ``method``."""

    method = "mt"  # mt | mt-qw | pl | pl-qw
    unsupervised_weight = 0.1  # the ramp's final weight (MT: SSL4MIS's; PL: the paper's 0.25)

    def __init__(self, plans, configuration, fold, dataset_json, device=_CUDA):
        super().__init__(plans, configuration, fold, dataset_json, device)
        if os.environ.get(UNLABELED_ENV) is None:
            raise ValueError(
                f"{type(self).__name__} needs unlabelled cases: set {UNLABELED_ENV} to a file "
                "of case identifiers or a folder of images (docs/integrations.md)"
            )
        self.num_epochs = _env_int(EPOCHS_ENV) or self.num_epochs
        self.num_iterations_per_epoch = _env_int(ITERATIONS_ENV) or self.num_iterations_per_epoch
        self.num_val_iterations_per_epoch = (
            _env_int(VAL_ITERATIONS_ENV) or self.num_val_iterations_per_epoch
        )
        self.teacher: torch.nn.Module | None = None
        self.guide = None
        self.ssl_updates = 0
        self.ramp = _ramp(self.unsupervised_weight)
        self.dataloader_unlabeled = None
        self._ssl_log: list[dict[str, float]] = []

    # -- the unlabelled cases ----------------------------------------------------------
    def _unlabeled_source(self) -> Path:
        return Path(os.environ[UNLABELED_ENV]).expanduser()

    def _unlabeled_ids_from_file(self) -> list[str] | None:
        source = self._unlabeled_source()
        if source.is_dir():
            return None
        if not source.is_file():
            raise FileNotFoundError(f"{UNLABELED_ENV}={source}: no such file or folder")
        ids = [line.strip() for line in source.read_text().splitlines() if line.strip()]
        if not ids:
            raise ValueError(f"{UNLABELED_ENV}={source} lists no case")
        return ids

    def do_split(self):
        tr_keys, val_keys = super().do_split()
        ids = self._unlabeled_ids_from_file()
        if ids is None:
            return tr_keys, val_keys
        unknown = sorted(set(ids) - set(tr_keys) - set(val_keys))
        if unknown:
            raise ValueError(f"{UNLABELED_ENV}: cases not in this dataset: {unknown[:5]}")
        leaked = sorted(set(ids) & set(val_keys))
        if leaked and self.fold != "all":  # fold "all" validates on its training cases
            raise ValueError(
                f"{UNLABELED_ENV}: cases of fold {self.fold}'s validation split cannot be "
                f"unlabelled training cases: {leaked[:5]}"
            )
        labelled = [k for k in tr_keys if k not in set(ids)]
        if not labelled:
            raise ValueError(f"{UNLABELED_ENV} leaves no labelled training case")
        self.print_to_log_file(
            f"qgfast: {len(labelled)} labelled and {len(ids)} unlabelled training cases "
            f"({UNLABELED_ENV}); their labels are never read"
        )
        return labelled, val_keys

    def _preprocess_folder(self, folder: Path) -> tuple[str, list[str]]:
        """Images of ``folder`` preprocessed with this configuration's plans into the
        output folder (once), in the dataset class's format, with an all-background
        placeholder segmentation that no loss reads."""
        ending = self.dataset_json["file_ending"]
        channels = len(self.dataset_json["channel_names"])
        cases: dict[str, list[str]] = {}
        for path in sorted(folder.glob(f"*{ending}")):
            stem = path.name[: -len(ending)]
            case, sep, channel = stem.rpartition("_")
            if not sep or not channel.isdigit():
                raise ValueError(
                    f"{path}: name it CASE_0000{ending} (case, _, 4-digit channel) as nnU-Net does"
                )
            cases.setdefault(case, []).append(str(path))
        if not cases:
            raise ValueError(f"{UNLABELED_ENV}={folder}: no {ending} image")
        bad = [c for c, files in cases.items() if len(files) != channels]
        if bad:
            raise ValueError(
                f"{UNLABELED_ENV}: cases without {channels} channel file(s): {bad[:5]}"
            )
        out = Path(self.output_folder) / "unlabeled_preprocessed"
        out.mkdir(parents=True, exist_ok=True)
        preprocessor = DefaultPreprocessor(verbose=False)
        patch = tuple(self.configuration_manager.patch_size)
        for case, files in cases.items():
            if (out / f"{case}.pkl").is_file():
                continue
            data, _, properties = preprocessor.run_case(
                sorted(files),
                None,
                self.plans_manager,
                self.configuration_manager,
                self.dataset_json,
            )
            data = data.astype(np.float32, copy=False)
            seg = np.zeros((1, *data.shape[1:]), dtype=np.int16)
            properties["class_locations"] = {k: [] for k in self.label_manager.foreground_labels}
            blocks, chunks = comp_blosc2_params(data.shape, patch, data.itemsize)
            blocks_seg, chunks_seg = comp_blosc2_params(seg.shape, patch, seg.itemsize)
            nnUNetDatasetBlosc2.save_case(
                data,
                seg,
                properties,
                str(out / case),
                chunks=chunks,
                blocks=blocks,
                chunks_seg=chunks_seg,
                blocks_seg=blocks_seg,
            )
        return str(out), sorted(cases)

    def _unlabeled_loader(self):
        folder = self.preprocessed_dataset_folder
        keys = self._unlabeled_ids_from_file()  # checked against the split by do_split
        dataset_class = self.dataset_class
        if keys is None:
            folder, keys = self._preprocess_folder(self._unlabeled_source())
            dataset_class = nnUNetDatasetBlosc2
        dataset = dataset_class(folder, keys)
        patch = self.configuration_manager.patch_size
        rotation, dummy_2d, initial_patch, mirror_axes = (
            self.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        )
        transforms = self.get_training_transforms(
            patch,
            rotation,
            None,  # no deep supervision targets: the unlabelled targets are dropped
            mirror_axes,
            dummy_2d,
            use_mask_for_norm=self.configuration_manager.use_mask_for_norm,
            is_cascaded=self.is_cascaded,
            foreground_labels=self.label_manager.foreground_labels,
            regions=None,
            ignore_label=self.label_manager.ignore_label,
        )
        return nnUNetDataLoader(
            dataset,
            self.batch_size,
            initial_patch,
            patch,
            self.label_manager,
            oversample_foreground_percent=0.0,  # random crops: an unlabelled case has no labels
            transforms=transforms,
        )

    # -- training ----------------------------------------------------------------------
    def on_train_start(self):
        super().on_train_start()
        if self.label_manager.has_regions:
            raise NotImplementedError("qgfast's nnU-Net trainers support label maps, not regions")
        self.dataloader_unlabeled = self._unlabeled_loader()
        if self.teacher is None:
            self.teacher = make_teacher(self.network).to(self.device)
        if self.method.endswith("-qw"):
            self.guide = self._load_guide()

    def _load_guide(self):
        from qgfast.quality import QualityGuide, load_predictor

        path = os.environ.get(GUIDE_ENV)
        if path is None:
            raise ValueError(
                f"{type(self).__name__} is quality-guided: set {GUIDE_ENV} to a "
                "`qgfast train-quality` checkpoint"
            )
        predictor, _ = load_predictor(path, self.device)
        want = (self.num_input_channels, self.label_manager.num_segmentation_heads)
        got = (predictor.image_channels, predictor.num_classes)
        if got != want:
            raise ValueError(
                f"{GUIDE_ENV}={path}: the predictor takes {got[0]} image channel(s) and "
                f"{got[1]} classes, this configuration has {want[0]} and {want[1]}"
            )
        return QualityGuide(predictor)

    def _unsupervised(self, images: torch.Tensor, student_logits: torch.Tensor):
        """(term, log values) of the method on one unlabelled batch."""
        teacher = self.teacher
        teacher.eval()
        with torch.no_grad():
            if self.method.startswith("mt"):
                std, clip = TEACHER_NOISE
                noisy = images + (torch.randn_like(images) * std).clamp(-clip, clip)
                probs = torch.softmax(_first(teacher(noisy)).float(), 1)
            else:
                probs = torch.softmax(_first(teacher(images)).float(), 1)
            pseudo = hard_labels(probs)
        log: dict[str, float] = {}
        if self.guide is not None:
            weights = self.guide.weights(images.float(), pseudo)
            log["quality_weight_mean"] = float(weights.mean())
        elif self.method == "pl":
            confidence = probs.amax(1).flatten(1).mean(1)
            weights = (confidence >= PL_CONFIDENCE).float()
        else:
            weights = None
        if self.method.startswith("mt"):
            term = softmax_mse(student_logits.float(), probs, weights)
        else:
            term = quality_weighted_dice_ce(student_logits.float(), pseudo, weights)
        return term, log

    def train_step(self, batch: dict) -> dict:
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        target = (
            [t.to(self.device, non_blocking=True) for t in target]
            if isinstance(target, list)
            else target.to(self.device, non_blocking=True)
        )
        unlabeled = next(self.dataloader_unlabeled)["data"].to(self.device, non_blocking=True)
        weight = self.ramp(step=self.ssl_updates, epoch=self.current_epoch)
        self.optimizer.zero_grad(set_to_none=True)
        autocast = self.device.type == "cuda"
        with torch.autocast(self.device.type, enabled=autocast):
            supervised = self.loss(self.network(data), target)
            if weight > 0:
                term, log = self._unsupervised(unlabeled, _first(self.network(unlabeled)))
            else:  # the ramp has not started: no unlabelled forward pass
                term, log = supervised.new_zeros(()), {}
            loss = supervised + weight * term
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.optimizer.step()
        decay = MEAN_TEACHER_DECAY if self.method.startswith("mt") else PAPER_PL_DECAY
        ema_update(self.teacher, self.network, decay(self.ssl_updates))
        self.ssl_updates += 1
        self._ssl_log.append(
            {
                "supervised": float(supervised.detach()),
                "unsupervised": float(term.detach()),
                "weight": weight,
                **log,
            }
        )
        return {"loss": loss.detach().cpu().numpy()}

    def on_train_epoch_end(self, train_outputs):
        super().on_train_epoch_end(train_outputs)
        if self._ssl_log:
            keys = sorted({k for row in self._ssl_log for k in row})
            means = {
                k: round(float(np.mean([row[k] for row in self._ssl_log if k in row])), 4)
                for k in keys
            }
            self.print_to_log_file(f"qgfast {self.method}: {means}")
            self._ssl_log = []

    # -- checkpoints: nnU-Net's, plus the teacher and the SSL step --------------------
    def save_checkpoint(self, filename: str) -> None:
        super().save_checkpoint(filename)
        if self.local_rank != 0 or self.disable_checkpointing or self.teacher is None:
            return
        from qgfast._atomic import atomic_torch_save

        checkpoint = torch.load(filename, map_location="cpu", weights_only=False)
        checkpoint["qgfast"] = {
            "method": self.method,
            "teacher": self.teacher.state_dict(),
            "ssl_updates": self.ssl_updates,
        }
        atomic_torch_save(checkpoint, filename)

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        super().load_checkpoint(filename_or_checkpoint)
        checkpoint = filename_or_checkpoint
        if isinstance(checkpoint, str):
            checkpoint = torch.load(checkpoint, map_location=self.device, weights_only=False)
        extra = checkpoint.get("qgfast")
        if extra is None:
            return  # a plain nnU-Net checkpoint (e.g. pretrained weights): fresh teacher
        self.teacher = make_teacher(self.network).to(self.device)
        self.teacher.load_state_dict(extra["teacher"])
        self.ssl_updates = int(extra["ssl_updates"])


class nnUNetTrainerMeanTeacher(nnUNetTrainerQGBase):
    """MT: softmax MSE to the EMA teacher's prediction on a noisy input."""

    method = "mt"


class nnUNetTrainerMeanTeacherQW(nnUNetTrainerQGBase):
    """MT-QW: MT's consistency weighted per sample by the guide's quality score."""

    method = "mt-qw"


class nnUNetTrainerPL(nnUNetTrainerQGBase):
    """PL: Dice+CE to the teacher's hard pseudolabels of confident samples."""

    method = "pl"
    unsupervised_weight = 0.25


class nnUNetTrainerPLQW(nnUNetTrainerQGBase):
    """PL-QW (the paper's): Dice+CE to the teacher's pseudolabels, weighted by the guide."""

    method = "pl-qw"
    unsupervised_weight = 0.25


TRAINERS = (
    nnUNetTrainerMeanTeacher,
    nnUNetTrainerMeanTeacherQW,
    nnUNetTrainerPL,
    nnUNetTrainerPLQW,
)
