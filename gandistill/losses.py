"""Every distillation and adversarial term as a plain function, registered by name.

Conventions: ``s_*`` come from the student (gradients flow), ``t_*`` from the teacher (no gradients);
every function returns a scalar tensor averaged over the batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Registry

LOSSES: Registry = Registry("loss term")
ADVERSARIAL: Registry = Registry("adversarial loss")


@LOSSES.register("pixel")
def pixel_loss(s_img: torch.Tensor, t_img: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """L1, MSE or their sum between student and teacher images."""
    if kind == "l1":
        return F.l1_loss(s_img, t_img)
    if kind == "mse":
        return F.mse_loss(s_img, t_img)
    if kind == "l1+mse":
        return F.l1_loss(s_img, t_img) + F.mse_loss(s_img, t_img)
    raise ValueError(f"pixel loss kind must be l1, mse or l1+mse, got {kind!r}")


@LOSSES.register("feature")
def feature_loss(s_feats: dict[str, torch.Tensor], t_feats: dict[str, torch.Tensor],
                 adapters: nn.ModuleDict, kind: str = "mse") -> torch.Tensor:
    """Mean over taps of MSE(adapter(student tap), teacher tap); adapters are learned 1x1 convs.

    ``kind="relative"`` divides each tap's MSE by the teacher tap's mean square, so that taps of different
    magnitude weigh alike and the term does not grow as a teacher's activations do.
    """
    if kind not in ("mse", "relative"):
        raise ValueError(f"feature loss kind must be mse or relative, got {kind!r}")
    terms = []
    for name in adapters:
        mse = F.mse_loss(adapters[name](s_feats[name]), t_feats[name])
        if kind == "relative":
            mse = mse / (t_feats[name].detach().float().square().mean() + 1e-8)
        terms.append(mse)
    return torch.stack(terms).mean()


def make_adapters(s_feats: dict[str, torch.Tensor], t_feats: dict[str, torch.Tensor],
                  taps: list[str] | None = None,
                  kept: dict[str, list[int]] | None = None) -> nn.ModuleDict:
    """One 1x1 conv per shared tap mapping student channels to teacher channels.

    ``kept[tap]`` lists, for each student channel of that tap, the teacher channel it was inherited from
    (``make_student``'s record). Such an adapter starts as that selection (weight[kept[j], j] = 1, else 0),
    so a student that inherited its channels starts with the feature loss of its own surgery: 0 at width 1.
    Taps without a record (a randomly initialised student) keep PyTorch's default random init.
    """
    adapters = nn.ModuleDict()
    for name in taps or [n for n in t_feats if n in s_feats]:
        s_ch, t_ch = s_feats[name].shape[1], t_feats[name].shape[1]
        conv = nn.Conv2d(s_ch, t_ch, 1, bias=False)
        if kept and name in kept:
            index = torch.as_tensor(kept[name], dtype=torch.long)
            if index.shape != (s_ch,) or index.min() < 0 or index.max() >= t_ch:
                raise ValueError(f"kept channels of tap {name!r} do not fit its {s_ch} student and {t_ch} teacher "
                                 f"channels")
            with torch.no_grad():
                conv.weight.zero_()
                conv.weight[index, torch.arange(s_ch), 0, 0] = 1.0
        adapters[name] = conv
    return adapters


@LOSSES.register("disc_feature")
def disc_feature_loss(s_feats: dict[str, torch.Tensor], t_feats: dict[str, torch.Tensor],
                      tap_weights: dict[str, float] | None = None) -> torch.Tensor:
    """Weighted mean over taps of L1 between discriminator features of student and teacher images.

    tap_weights: tap -> weight (default 1 each); taps it leaves out weigh 0. Only taps present in ``t_feats``
    count towards the denominator, and the weights of those must not all be 0."""
    names = list(t_feats)
    weights = {n: 1.0 for n in names} if tap_weights is None else {n: float(tap_weights.get(n, 0.0)) for n in names}
    unknown = sorted(set(tap_weights or ()) - set(names))
    if unknown or any(w < 0 for w in weights.values()) or not any(weights.values()):
        raise ValueError(f"tap_weights must be non-negative weights of taps in {names}, not all 0; got {tap_weights}")
    used = [n for n in names if weights[n]]
    total = torch.stack([weights[n] * F.l1_loss(s_feats[n], t_feats[n]) for n in used]).sum()
    return total / sum(weights[n] for n in used)


@LOSSES.register("perceptual")
def perceptual_loss(s_feats: dict[str, torch.Tensor], t_feats: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over a perceptual network's taps of MSE between channel-normalised features."""
    def norm(x: torch.Tensor) -> torch.Tensor:
        return x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-8)

    return torch.stack([F.mse_loss(norm(s_feats[n]), norm(t_feats[n])) for n in t_feats]).mean()


@LOSSES.register("disc_kl")
def disc_kl_loss(s_logits: torch.Tensor, t_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(Bernoulli(sigmoid(d_t/T)) || Bernoulli(sigmoid(d_s/T))) * T^2, averaged over the batch."""
    t, s = t_logits / temperature, s_logits / temperature
    p_t = torch.sigmoid(t)
    kl = p_t * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p_t) * (F.logsigmoid(-t) - F.logsigmoid(-s))
    return kl.mean() * temperature**2


@LOSSES.register("class_kl")
def class_kl_loss(s_logits: torch.Tensor, t_logits: torch.Tensor, alpha: float = 0.5,
                  temperature: float = 4.0) -> torch.Tensor:
    """Hinton: alpha * CE(argmax teacher class, student) + (1 - alpha) * KL(p_t^T || p_s^T) * T^2."""
    ce = F.cross_entropy(s_logits, t_logits.argmax(dim=1))
    kl = F.kl_div(F.log_softmax(s_logits / temperature, dim=1), F.log_softmax(t_logits / temperature, dim=1),
                  log_target=True, reduction="batchmean")
    return alpha * ce + (1 - alpha) * kl * temperature**2


# --- adversarial: (generator loss, discriminator loss) per kind ----------------------------------------

@ADVERSARIAL.register("hinge")
def hinge(fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    """Generator loss when ``real`` is None, else discriminator loss."""
    if real is None:
        return -fake.mean()
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


@ADVERSARIAL.register("nonsat")
def nonsaturating(fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    if real is None:
        return F.softplus(-fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()


@ADVERSARIAL.register("lsgan")
def lsgan(fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    if real is None:
        return 0.5 * (fake - 1).square().mean()
    return 0.5 * ((real - 1).square().mean() + fake.square().mean())


@LOSSES.register("adversarial")
def adversarial_loss(s_logits: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    """The generator's adversarial term for the student's images."""
    return ADVERSARIAL.get(kind)(s_logits)


def r1_penalty(real_logits: torch.Tensor, real_img: torch.Tensor) -> torch.Tensor:
    """Mean squared gradient norm of D at real images (Mescheder et al. 2018); real_img must require grad."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_img, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)).mean()
