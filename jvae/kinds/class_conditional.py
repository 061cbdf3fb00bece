"""The class-conditional VAE (Kondamudi & Balasubramanian 2019): class-generic units z and class-specific
units w, each with its capacity, the decoder reading the one-hot label, and a classifier whose loss on z the
VAE maximises so that the label stays out of the generic units.

loss = recon + beta |KL_z - C_z| + gamma |KL_w - C_w| - weight * L_class(z)
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from jvae.base.sections import CapacitySchedule, LossBase, ModelConfig
from jvae.kinds import Kind
from jvae.modeling.critics import CriticBase, CriticInputs, mlp
from jvae.modeling.losses import LossInputs, LossTerms

CLASSIFIER_WIDTH = 256


class ClassConditionalLoss(LossBase):
    kind: Literal["class-conditional"] = Field(
        title="class-conditional (Kondamudi & Balasubramanian 2019): class-generic z and class-specific w"
    )
    continuous_capacity: CapacitySchedule = Field(
        title="C_z: capacity of the generic units z (its gamma is the paper's beta)"
    )
    specific_capacity: CapacitySchedule = Field(
        title="C_w: capacity of the class-specific units w (its gamma is the paper's)"
    )
    adversary_lr: float = Field(1e-4, gt=0, title="Adam learning rate of the classifier")
    adversary_weight: float = Field(1.0, ge=0, title="Weight of the classifier's loss the VAE step maximises")
    classifier_reads: Literal["z", "w"] = Field(
        "w",
        title="The units the classifier trains on in its own step; the paper found w better than z",
    )


class LabelClassifier(CriticBase):
    """The classifier h(.): per-class sigmoid outputs, the paper's equation 5."""

    def __init__(
        self, units: int, classes: int, lr: float, device: torch.device | str = "cpu", reads: str = "w"
    ) -> None:
        self.classes = classes
        self.reads = reads  # the units its own step trains on: w or z
        self.network = mlp(units, CLASSIFIER_WIDTH, 2, classes, 0.0).to(device)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=lr)

    def bce(self, codes: Tensor, labels: Tensor) -> Tensor:
        """Binary cross-entropy of every class's sigmoid against the one-hot label, summed over classes."""
        target = F.one_hot(labels.to(codes.device).long(), self.classes).float()
        logits = self.network(codes.float())
        return F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / codes.shape[0]

    def penalty(self, codes: Tensor, labels: Tensor | None = None) -> Tensor:
        if labels is None:
            raise ValueError("the class-conditional classifier needs the batch's labels")
        with self.frozen():
            return self.bce(codes, labels)

    def train_step(self, inputs: CriticInputs) -> Tensor:
        """Learn the label from the units `loss.classifier_reads` names (detached)."""
        if inputs.labels is None:
            raise ValueError("the class-conditional classifier needs the batch's labels")
        g = inputs.model.generic
        codes = inputs.latent[:, g : 2 * g] if self.reads == "w" else inputs.latent[:, :g]
        return self.update(self.bce(codes.detach(), inputs.labels))


def class_conditional_loss(config: ClassConditionalLoss, batch: LossInputs) -> LossTerms:
    """The VAE step maximises the classifier's binary cross-entropy on the generic units z, pushing the label
    out of them; the classifier's own step minimises it."""
    if batch.critic is None or batch.labels is None:
        raise ValueError("the class-conditional loss needs its classifier and the batch's labels")
    recon, kl_cont, kl_disc = batch.terms(config)
    step, generic = batch.step, batch.generic
    c_z = config.continuous_capacity.capacity(step)
    c_w = config.specific_capacity.capacity(step)
    kl_z, kl_w = kl_cont[:generic].sum(), kl_cont[generic:].sum()
    class_bce = batch.critic.penalty(batch.latent[:, :generic], batch.labels)
    loss = (
        recon
        + config.continuous_capacity.weight(step) * (kl_z - c_z).abs()
        + config.specific_capacity.weight(step) * (kl_w - c_w).abs()
        - config.adversary_weight * class_bce
    )
    extra = {"kl_z": kl_z, "kl_w": kl_w, "classifier_on_z": class_bce, "capacity_w": kl_z.new_tensor(c_w)}
    return LossTerms(loss, recon, kl_cont, kl_disc, c_z, 0.0, extra)


def build_classifier(
    loss: ClassConditionalLoss, model: ModelConfig, device: torch.device | str
) -> LabelClassifier:
    return LabelClassifier(model.generic, model.classes, loss.adversary_lr, device, loss.classifier_reads)


def check(loss: ClassConditionalLoss, model: ModelConfig) -> None:
    if model.classes < 2:
        raise ValueError("class-conditional needs model.classes >= 2 (the number of labels)")
    if not 1 <= model.generic < model.continuous:
        raise ValueError(
            f"class-conditional needs 1 <= model.generic < model.continuous ({model.continuous}): "
            "the first model.generic units are z, the rest w"
        )
    if model.discrete:
        raise ValueError("class-conditional uses continuous units only; set model.discrete = []")
    if loss.classifier_reads == "w" and 2 * model.generic != model.continuous:
        raise ValueError(
            "a classifier that trains on w and is applied to z needs as many w units as z units: "
            f"model.continuous = 2 * model.generic (got {model.continuous} and {model.generic})"
        )


KIND = Kind(
    "class-conditional",
    ClassConditionalLoss,
    class_conditional_loss,
    critic=build_classifier,
    labelled=True,
    multiprocess=False,
    check=check,
)
