"""Small building blocks of CoCosNet (Zhang et al., CVPR 2020): spectral-norm convolution,
positional normalisation (eq. 5), SPADE, SPADE residual blocks, SAGAN attention and the
residual blocks of the shared correspondence layer.

State-dict key names follow the authors' release (`conv_0.weight_orig`, `norm_0.mlp_shared.1`,
...) so their checkpoints load name by name (see convert_official.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .correspondence import attention_chunked


def _cached(module: nn.Module, name: str, tensors: tuple, compute):
    """compute(), kept on `module` while every tensor of `tensors` is the same object at the same
    version (an optimizer step, load_state_dict or .to() invalidates it). For inference only."""
    stamp = tuple((t.data_ptr(), _version(t), t.dtype, t.device) for t in tensors)
    entry = module.__dict__.get(name)
    if entry is None or entry[0] != stamp:
        entry = (stamp, compute())
        module.__dict__[name] = entry
    return entry[1]


def _version(t: torch.Tensor) -> int | None:
    """The tensor's in-place version counter (inference tensors have none: weights made under
    torch.inference_mode are only told apart by their storage)."""
    return None if t.is_inference() else t._version


class SNConv2d(nn.Conv2d):
    """Conv2d with spectral normalisation (Miyato et al., 2018) in the layout of
    `torch.nn.utils.spectral_norm`: parameter `weight_orig`, buffers `weight_u` / `weight_v`.

    Training: one power iteration per forward updates u and v. Eval: no iteration,
    sigma = u^T W v with the stored vectors, weight = W / sigma (as the authors' inference does).
    Written as a plain module (not a hook) so that meta-device loading, deepcopy (EMA) and
    DDP need no special care.
    """

    def __init__(self, *args, eps: float = 1e-12, **kwargs):
        super().__init__(*args, **kwargs)
        weight = self.weight
        del self.weight
        self.weight_orig = nn.Parameter(weight.detach())
        out_features, in_features = weight.shape[0], weight[0].numel()
        self.eps = eps
        self.register_buffer("weight_u", F.normalize(torch.randn(out_features), dim=0, eps=eps))
        self.register_buffer("weight_v", F.normalize(torch.randn(in_features), dim=0, eps=eps))

    def normalized_weight(self) -> torch.Tensor:
        if not torch.is_grad_enabled() and not self.training:  # inference: W / sigma once, until a tensor changes
            return _cached(self, "_inference_weight", (self.weight_orig, self.weight_u, self.weight_v),
                           self._normalized_weight)
        return self._normalized_weight()

    def _normalized_weight(self) -> torch.Tensor:
        w = self.weight_orig
        w_mat = w.reshape(w.shape[0], -1)
        u, v = self.weight_u, self.weight_v
        if self.training and torch.is_grad_enabled():
            with torch.no_grad():
                v = F.normalize(torch.mv(w_mat.t().to(u.dtype), u), dim=0, eps=self.eps)
                u = F.normalize(torch.mv(w_mat.to(v.dtype), v), dim=0, eps=self.eps)
                self.weight_u.copy_(u)
                self.weight_v.copy_(v)
            u, v = u.clone(), v.clone()
        sigma = torch.dot(u.to(w_mat.dtype), torch.mv(w_mat, v.to(w_mat.dtype)))
        return w / sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.normalized_weight(), self.bias)


def conv(cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int | None = None, bias: bool = True,
         spectral: bool = False, padding_mode: str = "zeros") -> nn.Conv2d:
    padding = (kernel - 1) // 2 if padding is None else padding
    cls = SNConv2d if spectral else nn.Conv2d
    return cls(cin, cout, kernel, stride=stride, padding=padding, bias=bias, padding_mode=padding_mode)


def positional_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """PONO (Li et al., 2019), the normalisation of eq. (5): (F - mu_hw) / sigma_hw with the mean
    and the (unbiased) standard deviation over channels at each position."""
    # Two passes over the centred values (not torch.var): the same unbiased variance, ~2.5x faster on
    # a CPU for NCHW tensors, where a reduction over channels is strided (bench/README.md).
    centred = x - x.mean(dim=1, keepdim=True)
    var = centred.square().sum(dim=1, keepdim=True) / (x.shape[1] - 1)
    return centred / (var + eps).sqrt()


class SPADE(nn.Module):
    """Eq. (5): PONO(F) * (1 + gamma(c)) + beta(c), gamma/beta predicted from the condition map c
    (here the warped exemplar + the input-domain map) resized (nearest) to F's size."""

    def __init__(self, channels: int, condition_channels: int, hidden: int = 128):
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(condition_channels, hidden, 3), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3, padding=1, padding_mode="reflect")
        self.mlp_beta = nn.Conv2d(hidden, channels, 3, padding=1, padding_mode="reflect")

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        condition = F.interpolate(condition, size=x.shape[-2:], mode="nearest")
        return self.modulate(positional_norm(x), self.mlp_shared(condition))

    def modulate(self, normalized: torch.Tensor, actv: torch.Tensor) -> torch.Tensor:
        """normalized * (1 + gamma(actv)) + beta(actv), gamma and beta from one convolution (their
        weights stacked: the same sums, one pass over actv)."""
        weight, bias = _stacked(self, "_gamma_beta", [self.mlp_gamma, self.mlp_beta])
        gamma, beta = F.conv2d(F.pad(actv, [1, 1, 1, 1], mode="reflect"), weight, bias).chunk(2, 1)  # (B, C, H, W) each
        return torch.addcmul(beta, normalized, 1 + gamma)


def _stacked(owner: nn.Module, name: str, convs: list) -> tuple[torch.Tensor, torch.Tensor]:
    """The weights and biases of `convs` (same input, same kernel) concatenated over output channels;
    kept on `owner` for inference, rebuilt on every call while training (so gradients flow)."""
    tensors = tuple(t for c in convs for t in (c.weight, c.bias))
    build = lambda: (torch.cat([c.weight for c in convs]), torch.cat([c.bias for c in convs]))  # noqa: E731
    if torch.is_grad_enabled():
        return build()
    return _cached(owner, name, tensors, build)


class SPADEResnetBlock(nn.Module):
    """SPADE residual block: x_s + conv_1(lrelu(norm_1(conv_0(lrelu(norm_0(x)))))), a learned
    1x1 shortcut when the width changes; 3x3 spectral-norm convs with reflect padding.

    The SPADE layers of a block read the same condition at the same size, so their first
    convolutions (`mlp_shared`) run as one, and norm_0 and norm_s share the normalised input."""

    def __init__(self, fin: int, fout: int, condition_channels: int, hidden: int = 128):
        super().__init__()
        fmiddle = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.conv_0 = conv(fin, fmiddle, 3, spectral=True, padding_mode="reflect")
        self.conv_1 = conv(fmiddle, fout, 3, spectral=True, padding_mode="reflect")
        if self.learned_shortcut:
            self.conv_s = conv(fin, fout, 1, bias=False, spectral=True)
        self.norm_0 = SPADE(fin, condition_channels, hidden)
        self.norm_1 = SPADE(fmiddle, condition_channels, hidden)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, condition_channels, hidden)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        norms = [self.norm_0, self.norm_1] + ([self.norm_s] if self.learned_shortcut else [])
        condition = F.interpolate(condition, size=x.shape[-2:], mode="nearest")
        weight, bias = _stacked(self, "_mlp_shared", [n.mlp_shared[1] for n in norms])
        actv = F.relu(F.conv2d(F.pad(condition, [1, 1, 1, 1], mode="reflect"), weight, bias)).chunk(len(norms), 1)
        normalized = positional_norm(x)  # (B, fin, H, W), for norm_0 and norm_s
        x_s = self.conv_s(self.norm_s.modulate(normalized, actv[2])) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0.modulate(normalized, actv[0]), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1.modulate(positional_norm(dx), actv[1]), 0.2))
        return x_s + dx


class SelfAttention(nn.Module):
    """SAGAN self-attention (Zhang et al., 2019): x + gamma * o(g softmax(theta^T phi)), phi and g
    max-pooled 2x2. Computed as attention in query chunks, never as an (HW x HW/4) tensor."""

    def __init__(self, channels: int):
        super().__init__()
        self.theta = conv(channels, channels // 8, 1, bias=False, spectral=True)
        self.phi = conv(channels, channels // 8, 1, bias=False, spectral=True)
        self.g = conv(channels, channels // 2, 1, bias=False, spectral=True)
        self.o = conv(channels // 2, channels, 1, bias=False, spectral=True)
        self.gamma = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (B, HW, C/8)
        phi = F.max_pool2d(self.phi(x), 2).flatten(2).transpose(1, 2)  # (B, HW/4, C/8)
        g = F.max_pool2d(self.g(x), 2).flatten(2).transpose(1, 2)  # (B, HW/4, C/2)
        attended = attention_chunked(theta, phi, g, scale=1.0)  # (B, HW, C/2)
        attended = attended.transpose(1, 2).reshape(b, c // 2, h, w)
        return x + self.gamma * self.o(attended)


class CorrespondenceResidualBlock(nn.Module):
    """A block of the shared correspondence layer T (section 3.1): two reflect-padded 3x3 convs with
    instance norm, one PReLU shared by both activations."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect")
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect")
        self.prelu = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.prelu(F.instance_norm(self.conv1(x), eps=1e-5))
        out = F.instance_norm(self.conv2(out), eps=1e-5)
        return self.prelu(out + x)
