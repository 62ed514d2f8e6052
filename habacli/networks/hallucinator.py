"""HaBa's hallucinators: K tiny affine networks, stacked and applied without a loop over K.

One hallucinator (official ``StyleTranslator``, haba.md section 1.2) is

    enc  = Conv2d(c_in -> c_m, k x k, stride 1, padding 0, bias)      [N, c_m, H-k+1, W-k+1]
    h    = enc(b) * scale + shift       (scale, shift: [c_m, H-k+1, W-k+1], init 1 and 0)
    out  = ConvTranspose2d(c_m -> c_out, k x k, stride 1, bias)(h)     [N, c_out, H, W]

with no activation and no normalisation; c_m = c_out = the dataset's channels. The bank keeps
the K hallucinators' parameters stacked along a leading K axis:

    enc_weight [K, c_m, c_in, k, k]   enc_bias [K, c_m]
    scale      [K, c_m, H-k+1, W-k+1] shift    [K, c_m, H-k+1, W-k+1]
    dec_weight [K, c_m, c_out, k, k]  dec_bias [K, c_out]     (ConvTranspose2d layout: in, out)

Every hallucinator sees the same input, so the K encoders are one convolution with K*c_m output
channels; the K decoders are one grouped transposed convolution (groups=K), computed as a dense one
with a block-diagonal weight when K * c_m is small, and every transposed convolution runs as the equivalent
full-padded convolution with flipped kernels (:func:`conv_transpose`): same maths, faster on CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from habacli._shapes import MODULATIONS, PADDINGS, PARAM_NAMES, padding_size
from habacli._shapes import hallucinator_shapes as param_shapes
from habacli.errors import ConfigError

#: Parameter names, in the order of :meth:`HallucinatorBank.state_dict` and of the artifact.

#: The architecture's name as written in artifacts (formats/haba-artifact-v1.md).
ARCHITECTURE = "haba-style-translator"

#: Up to this many stacked mid channels (K * c_m) the K decoders run as one dense transposed
#: convolution with a block-diagonal weight instead of a grouped one (same result, faster).
BLOCK_DIAGONAL_MAX_CHANNELS = 48


#: Hallucinator initialisations: the official one, and an opt-in contrast-preserving one.
INITS: tuple[str, ...] = ("official", "identity")

#: How much of the default draw the near-identity init keeps around its centre delta.
IDENTITY_NOISE = 0.1


#: How the FiLM-like ``scale`` and ``shift`` act (``habacli._shapes.MODULATIONS``): per mid channel and
#: position (the paper's), or per mid channel only (format 1.1: a compact hallucinator).


def upsample_bases(bases: Tensor, height: int, width: int) -> Tensor:
    """Low-resolution bases ``[N, c, h, w]`` resized to ``height x width`` by bilinear interpolation with
    half-pixel centres (format 1.1, spec section 4 step 0); bases already of that size are returned as is.
    Differentiable, so bases can be learned at low resolution."""
    if tuple(bases.shape[-2:]) == (height, width):
        return bases
    return F.interpolate(bases, size=(height, width), mode="bilinear", align_corners=False, antialias=False)


def near_identity_(bank: HallucinatorBank, noise: float = IDENTITY_NOISE) -> HallucinatorBank:
    """Make every hallucinator of ``bank`` a near-identity map, in place.

    Each encoder and decoder kernel becomes a centre delta plus ``noise`` x its current weight, and
    the biases are scaled by ``noise``; ``scale`` and ``shift`` stay 1 and 0. The encoder's delta maps
    mid channel i to input channel ``i % c_in`` (so 1-channel bases are copied to every channel),
    the decoder's maps mid channel i to output channel i. With ``noise = 0`` a decoded image equals
    its basis, except, with ``padding="valid"`` (the paper's network), for a 1-pixel border, which the valid
    encoder crops and the decoder fills with its bias; with ``padding="same"`` everywhere. With the official
    init instead, decoded images keep only ~0.2-0.3 of the basis's
    contrast (docs/benchmarks.md).
    """
    k = bank.kernel_size
    with torch.no_grad():
        for name, source in (("enc_weight", lambda i: i % bank.in_channels), ("dec_weight", lambda i: i)):
            w = getattr(bank, name)
            delta = torch.zeros_like(w)
            for i in range(bank.out_channels):  # mid channels: c_m = c_out
                delta[:, i, source(i), k // 2, k // 2] = 1.0
            w.mul_(noise).add_(delta)
        bank.enc_bias.mul_(noise)
        bank.dec_bias.mul_(noise)
    return bank


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator | None) -> Tensor:
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


def _default_conv_init(
    weight_shape: tuple[int, ...], fan_in: int, bias_len: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """PyTorch's default conv init: kaiming_uniform(a=sqrt(5)) weight, uniform(1/sqrt(fan_in)) bias."""
    gain = math.sqrt(2.0 / (1 + 5))  # calculate_gain("leaky_relu", sqrt(5))
    bound_w = math.sqrt(3.0) * (gain / math.sqrt(fan_in))
    w = _uniform(weight_shape, bound_w, generator)
    b = _uniform((bias_len,), 1 / math.sqrt(fan_in), generator)
    return w, b


class HallucinatorBank(nn.Module):
    """K hallucinators sharing one input shape; ``bank.all(x)`` runs them all in two convolutions.

    Initialisation draws, for k = 0..K-1 in turn, enc weight, enc bias, dec weight, dec bias
    exactly as ``nn.Conv2d`` and ``nn.ConvTranspose2d`` would (from ``generator`` or the global
    RNG), so ``torch.manual_seed`` makes it reproducible and equal to the official per-module init.

    ``init="identity"`` (opt-in, not the paper's) then turns every hallucinator into a near-identity
    map (:func:`near_identity_`): the same draws, so the RNG stream and everything drawn after the
    bank are unchanged.
    """

    def __init__(
        self,
        num: int,
        in_channels: int,
        out_channels: int,
        height: int,
        width: int,
        kernel_size: int = 3,
        *,
        generator: torch.Generator | None = None,
        init: str = "official",
        modulation: str = "pixel",
        padding: str = "valid",
    ):
        super().__init__()
        if padding not in PADDINGS:
            raise ConfigError(f"hallucinator padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        if padding == "same" and kernel_size % 2 == 0:
            raise ConfigError(f"'same' hallucinator padding needs an odd kernel size, got {kernel_size}")
        #: "valid" (the paper's network) or "same" (format 1.3); ``pad`` is its zero padding in pixels
        self.padding, self.pad = padding, padding_size(padding, kernel_size)
        if num < 0:
            raise ConfigError(f"the number of hallucinators must be >= 0, got {num}")
        if min(in_channels, out_channels) < 1:
            raise ConfigError(f"hallucinator channels must be >= 1, got {in_channels} -> {out_channels}")
        if init not in INITS:
            raise ConfigError(f"hallucinator init must be one of {', '.join(INITS)}, got {init!r}")
        if kernel_size < 1 or min(height, width) < kernel_size:
            raise ConfigError(
                f"images of {height}x{width} are too small for a {kernel_size}x{kernel_size} hallucinator"
            )
        self.num, self.in_channels, self.out_channels = num, in_channels, out_channels
        self.height, self.width, self.kernel_size = height, width, kernel_size
        if modulation not in MODULATIONS:
            raise ConfigError(f"hallucinator modulation must be one of {', '.join(MODULATIONS)}, got {modulation!r}")
        self.modulation = modulation
        shapes = param_shapes(num, in_channels, out_channels, height, width, kernel_size, modulation, padding=padding)
        k = kernel_size
        enc_w, enc_b, dec_w, dec_b = [], [], [], []
        for _ in range(num):  # init only; the forward pass never loops over K
            w, b = _default_conv_init(shapes["enc_weight"][1:], in_channels * k * k, out_channels, generator)
            enc_w.append(w)
            enc_b.append(b)
            # ConvTranspose2d's weight is [in, out, k, k]; torch's fan_in is dim 1 * k * k = c_out*k*k.
            w, b = _default_conv_init(shapes["dec_weight"][1:], out_channels * k * k, out_channels, generator)
            dec_w.append(w)
            dec_b.append(b)

        def stack(xs: list[Tensor], name: str) -> Tensor:
            return torch.stack(xs) if xs else torch.empty(shapes[name])

        self.enc_weight = nn.Parameter(stack(enc_w, "enc_weight"))
        self.enc_bias = nn.Parameter(stack(enc_b, "enc_bias"))
        self.scale = nn.Parameter(torch.ones(shapes["scale"]))
        self.shift = nn.Parameter(torch.zeros(shapes["shift"]))
        self.dec_weight = nn.Parameter(stack(dec_w, "dec_weight"))
        self.dec_bias = nn.Parameter(stack(dec_b, "dec_bias"))
        if init == "identity":
            near_identity_(self)

    @classmethod
    def from_params(
        cls,
        params: dict[str, Tensor],
        *,
        height: int | None = None,
        width: int | None = None,
        padding: str = "valid",
    ) -> HallucinatorBank:
        """Rebuild a bank from stacked parameters (e.g. an artifact's hallucinators). The image size
        follows from per-pixel ``scale``; per-channel modulation needs ``height`` and ``width``."""
        num, cm, cin, k, _ = params["enc_weight"].shape
        h, w = params["scale"].shape[-2:]
        grow = 2 * padding_size(padding, int(k)) - int(k) + 1  # map size - image size
        height = int(h) - grow if height is None else height
        width = int(w) - grow if width is None else width
        pixel = (int(h), int(w)) == (height + grow, width + grow)
        bank = cls(
            0, int(cin), int(cm), height, width, int(k), modulation="pixel" if pixel else "channel", padding=padding
        )
        bank.num = int(num)
        for name in PARAM_NAMES:
            setattr(bank, name, nn.Parameter(params[name].detach().clone()))
        return bank

    def params(self) -> dict[str, Tensor]:
        """The stacked parameters by name (live tensors, gradients flow)."""
        return {name: getattr(self, name) for name in PARAM_NAMES}

    def num_parameters(self) -> int:
        """Stored values of all K hallucinators."""
        return sum(p.numel() for p in self.params().values())

    def forward(self, x: Tensor, k: int) -> Tensor:
        """Hallucinator ``k`` applied to a batch ``x [N, c_in, H, W]`` -> ``[N, c_out, H, W]``."""
        if not 0 <= int(k) < self.num:
            raise IndexError(f"hallucinator index {k} out of range for a bank of {self.num}")
        return apply_one(x, self.params(), int(k), pad=self.pad)

    def all(self, x: Tensor) -> Tensor:
        """Every hallucinator on every sample: ``[K, N, c_out, H, W]``."""
        return apply_all(x, self.params(), pad=self.pad)

    def pairs(self, x: Tensor, k: Tensor) -> Tensor:
        """Sample ``i`` under hallucinator ``k[i]`` (``k``: LongTensor ``[N]``) -> ``[N, c_out, H, W]``."""
        return apply_pairs(x, self.params(), k, pad=self.pad)


def conv_transpose(h: Tensor, weight: Tensor, bias: Tensor | None, groups: int = 1, pad: int = 0) -> Tensor:
    """``F.conv_transpose2d(h, weight, bias, groups=groups, padding=pad)`` (stride 1; ``weight`` in the
    transposed layout ``[in, out/groups, s, s]``), computed as the equivalent full-padded convolution with
    flipped, transposed kernels: the same maths, but it takes the fast convolution path (about 2-3x
    faster than PyTorch's transposed convolution on CPU)."""
    cin, cog, s, _ = weight.shape
    w = weight.reshape(groups, cin // groups, cog, s, s).transpose(1, 2).reshape(groups * cog, cin // groups, s, s)
    return F.conv2d(h, w.flip(-1, -2), bias, padding=s - 1 - pad, groups=groups)


def apply_one(x: Tensor, params: dict[str, Tensor], k: int, pad: int = 0) -> Tensor:
    """Functional form of ``bank(x, k)`` (``pad``: the bank's zero padding, ``bank.pad``)."""
    h = F.conv2d(x, params["enc_weight"][k], params["enc_bias"][k], padding=pad)
    h = torch.addcmul(params["shift"][k], h, params["scale"][k])  # h * scale + shift in one pass
    return conv_transpose(h, params["dec_weight"][k], params["dec_bias"][k], pad=pad)


def apply_all(x: Tensor, params: dict[str, Tensor], pad: int = 0) -> Tensor:
    """Functional form of ``bank.all(x)``: ``[K, N, c_out, H, W]``, no loop over K."""
    enc_w = params["enc_weight"]
    num, cm, cin, ks, _ = enc_w.shape
    n = x.shape[0]
    cout = params["dec_weight"].shape[2]
    if num == 0:
        return x.new_empty((0, n, cout, *x.shape[2:]))
    # All K encoders read the same input: one conv with K*c_m output channels.
    h = F.conv2d(x, enc_w.reshape(num * cm, cin, ks, ks), params["enc_bias"].reshape(num * cm), padding=pad)
    mod = params["scale"].shape[-2:]  # (hh, ww), or (1, 1) for per-channel modulation (broadcast)
    h = torch.addcmul(params["shift"].reshape(1, num * cm, *mod), h, params["scale"].reshape(1, num * cm, *mod))
    dec_w, dec_b = params["dec_weight"], params["dec_bias"].reshape(num * cout)
    if num * cm <= BLOCK_DIAGONAL_MAX_CHANNELS:
        # Same maths as groups=K, written as one dense transposed conv with a block-diagonal
        # weight: 2-4x faster forward+backward on CPU for the small K*c of HaBa.
        eye = torch.eye(num, dtype=dec_w.dtype, device=dec_w.device)
        w = dec_w.reshape(num, cm, 1, cout, ks, ks) * eye[:, None, :, None, None, None]
        out = conv_transpose(h, w.reshape(num * cm, num * cout, ks, ks), dec_b, pad=pad)
    else:
        out = conv_transpose(h, dec_w.reshape(num * cm, cout, ks, ks), dec_b, groups=num, pad=pad)
    return out.reshape(n, num, cout, *out.shape[-2:]).transpose(0, 1)


def apply_pairs(x: Tensor, params: dict[str, Tensor], k: Tensor, pad: int = 0) -> Tensor:
    """Sample ``i`` under hallucinator ``k[i]``; one grouped convolution per stage (groups=N)."""
    n = x.shape[0]
    if k.shape != (n,):
        raise ValueError(f"expected one hallucinator index per sample ({n}), got shape {tuple(k.shape)}")
    if n == 0:
        cout = params["dec_weight"].shape[2]
        return x.new_empty((0, cout, *x.shape[2:]))
    k = k.to(device=params["enc_weight"].device, dtype=torch.long)
    enc_w = params["enc_weight"][k]  # [N, c_m, c_in, ks, ks]
    _, cm, cin, ks, _ = enc_w.shape
    cout = params["dec_weight"].shape[2]
    h = F.conv2d(
        x.reshape(1, n * cin, *x.shape[2:]),
        enc_w.reshape(n * cm, cin, ks, ks),
        params["enc_bias"][k].reshape(n * cm),
        groups=n,
        padding=pad,
    )
    h = torch.addcmul(params["shift"][k], h.reshape(n, cm, *h.shape[-2:]), params["scale"][k])
    out = conv_transpose(
        h.reshape(1, n * cm, *h.shape[-2:]),
        params["dec_weight"][k].reshape(n * cm, cout, ks, ks),
        params["dec_bias"][k].reshape(n * cout),
        groups=n,
        pad=pad,
    )
    return out.reshape(n, cout, *out.shape[-2:])


def decode_all(bases: Tensor, params: dict[str, Tensor], pad: int = 0) -> Tensor:
    """Every basis under every hallucinator, basis-major: image ``i*K + k`` is basis ``i`` under
    hallucinator ``k`` -> ``[N*K, c_out, H, W]``. With no hallucinators (K = 0 or empty params)
    the bases themselves are returned."""
    if not params or params["enc_weight"].shape[0] == 0:
        return bases
    out = apply_all(bases, params, pad=pad)  # [K, N, c, H, W]
    return out.transpose(0, 1).reshape(-1, *out.shape[2:])
