"""The DD network family: shapes on every supported input size, parameter counts from the papers,
functional_call, channels_last, seeded init, and a short real training run on Fashion-MNIST."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from habacli.errors import ConfigError, UnknownNameError
from habacli.networks import NETWORKS, default_network, get_network, list_networks

REQUIRED = [
    "convnet",
    "convnet_bn",
    "convnet_ln",
    "convnet_nn",
    "convnet_gn",
    *[f"convnetd{d}" for d in range(1, 6)],
    *[f"convnetw{w}" for w in (32, 64, 128, 256)],
    "resnet18",
    "resnet18_bn",
    "resnet18_ap",
    "resnet18_bn_ap",
    "vgg11",
    "vgg11_bn",
    "alexnet",
]
BIG = {"resnet18", "resnet18_bn", "resnet18_ap", "resnet18_bn_ap", "vgg11", "vgg11_bn", "alexnet"}
# (channels, height, width): Fashion-MNIST/MNIST, CIFAR, Tiny, small and odd imagefolder sizes
SHAPES = [(1, 28, 28), (3, 32, 32), (3, 64, 64), (3, 8, 8), (1, 16, 16), (3, 24, 20)]


def _n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_registry_has_every_required_name():
    assert set(REQUIRED) <= set(list_networks())
    assert list_networks("resnet18*") == ["resnet18", "resnet18_ap", "resnet18_bn", "resnet18_bn_ap"]


def _cases() -> list:
    """Every ConvNet on the small shapes; the big evaluation nets on the shapes that exercise their heads.

    The heavier combinations (big nets at 64 px, odd and tiny sizes) are marked slow.
    """
    slow = pytest.mark.slow
    cases: list = [(n, s) for n in list_networks("convnet*") for s in SHAPES if s[1] != 64]
    cases += [(n, (3, 64, 64)) for n in ("convnet", "convnet_ln", "convnetd4", "convnetd5")]
    for n in sorted(BIG):
        if "_bn" in n:  # the BN variants share the IN variants' shape logic: one reference shape by default
            fast = [(1, 28, 28)] if n.endswith("_ap") else [(3, 32, 32)]
        else:
            fast = [(1, 28, 28), (3, 32, 32), (3, 16, 16)]
        shapes = ((1, 28, 28), (3, 32, 32), (3, 16, 16), (3, 64, 64), (3, 24, 20), (3, 8, 8))
        rest = [s for s in shapes if s not in fast]
        cases += [(n, s) for s in fast] + [pytest.param(n, s, marks=slow) for s in rest]
    return cases


def _id(v: object) -> str:
    return "x".join(map(str, v)) if isinstance(v, tuple) else str(v)


@pytest.mark.parametrize("name,shape", _cases(), ids=_id)
def test_logits_shape_and_backward(name, shape):
    c, h, w = shape
    torch.manual_seed(0)
    net = get_network(name, channels=c, num_classes=7, height=h, width=w)
    x = torch.randn(2, c, h, w, requires_grad=True)
    out = net(x)
    assert out.shape == (2, 7)
    emb = net.embed(x)
    assert emb.shape == (2, net.feature_dim)
    F.cross_entropy(out, torch.tensor([1, 3])).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize(
    "name",
    ["convnetd5", pytest.param("resnet18", marks=pytest.mark.slow), pytest.param("alexnet", marks=pytest.mark.slow)],
)
def test_128px(name):
    net = get_network(name, channels=3, num_classes=10, height=128, width=128)
    x = torch.randn(2, 3, 128, 128)
    out = net(x)
    assert out.shape == (2, 10)
    out.sum().backward()


@pytest.mark.parametrize(
    "name,shape,classes,expected",
    [
        ("convnet", (3, 32, 32), 10, 320_010),  # CIFAR-10, baselines.md 1.1
        ("convnet", (1, 28, 28), 10, 317_706),  # MNIST / Fashion-MNIST
        ("convnet", (3, 32, 32), 100, 504_420),  # CIFAR-100
        ("convnetd4", (3, 64, 64), 200, 857_160),  # Tiny-ImageNet
        ("convnetd5", (3, 128, 128), 10, 615_690),  # ImageNet subsets
    ],
)
def test_parameter_counts_match_the_papers(name, shape, classes, expected):
    c, h, w = shape
    net = get_network(name, channels=c, num_classes=classes, height=h, width=w)
    assert _n_params(net) == expected


@pytest.mark.parametrize(
    "name,shape",
    [("convnet", (3, 32, 32)), ("convnet", (1, 28, 28)), ("convnetd4", (3, 64, 64)), ("convnetd5", (3, 128, 128))],
)
def test_embedding_is_2048d_on_reference_backbones(name, shape):
    net = get_network(name, channels=shape[0], num_classes=10, height=shape[1], width=shape[2])
    assert net.embed(torch.randn(1, *shape)).shape == (1, 2048)


def test_28px_single_channel_is_padded_to_32():
    net = get_network("convnet_ln", channels=1, num_classes=10, height=28, width=28)
    first = net.features[0]
    x = torch.randn(2, 1, 28, 28)
    assert first(x).shape[-2:] == (32, 32)  # padding 3: treated as 32x32, like CIFAR
    torch.testing.assert_close(first(x), F.conv2d(x, first.weight, first.bias, padding=3))
    ln = net.features[1]
    assert tuple(ln.normalized_shape) == (128, 32, 32)
    rgb = get_network("convnet", channels=3, num_classes=10, height=32, width=32)
    assert type(rgb.features[0]) is torch.nn.Conv2d and rgb.features[0].padding == (1, 1)
    alex = get_network("alexnet", channels=1, num_classes=10, height=28, width=28).features[0]
    torch.testing.assert_close(alex(x), F.conv2d(x, alex.weight, alex.bias, padding=4))  # AlexNet: padding 4


def test_norm_layers_match_the_reference_definitions():
    def norms(name):
        net = get_network(name, channels=3, num_classes=10, height=32, width=32)
        return [m for m in net.features if not isinstance(m, (torch.nn.Conv2d, torch.nn.ReLU, torch.nn.AvgPool2d))]

    gn = norms("convnet")[0]
    assert isinstance(gn, torch.nn.GroupNorm) and gn.num_groups == 128 and gn.affine
    assert isinstance(norms("convnet_bn")[0], torch.nn.BatchNorm2d)
    assert norms("convnet_gn")[0].num_groups == 4
    assert norms("convnet_nn") == []
    ap = get_network("resnet18_ap", channels=1, num_classes=10, height=28, width=28)
    assert ap.classifier.in_features == 512 * 3 * 3  # MTT's ResNet18_AP head for 1-channel input


@pytest.mark.parametrize("name", ["convnet", "convnet_bn", "convnet_ln", "alexnet"])
def test_functional_call_matches_module_and_carries_gradients(name):
    torch.manual_seed(1)
    net = get_network(name, channels=3, num_classes=10, height=32, width=32)
    x = torch.randn(3, 3, 32, 32)
    net.train()
    params = {k: v.detach().clone().requires_grad_(True) for k, v in net.named_parameters()}
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    ref = net(x)
    out = functional_call(net, {**params, **buffers}, (x,))
    torch.testing.assert_close(out, ref)
    # a second-order path, as MTT's unrolled student uses
    loss = F.cross_entropy(out, torch.tensor([0, 1, 2]))
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    stepped = {k: p - 0.01 * g for (k, p), g in zip(params.items(), grads)}
    out2 = functional_call(net, {**stepped, **buffers}, (x,))
    out2.sum().backward()
    assert all(p.grad is not None for p in params.values())
    # different parameters really change the output
    shifted = {k: v + 0.1 for k, v in params.items()}
    assert not torch.allclose(functional_call(net, {**shifted, **buffers}, (x,)), ref)


@pytest.mark.parametrize("name", ["convnet", "convnet_ln", "convnet_bn", "resnet18", "vgg11", "alexnet"])
def test_channels_last_gives_the_same_outputs(name):
    torch.manual_seed(2)
    net = get_network(name, channels=3, num_classes=10, height=32, width=32)
    x = torch.randn(2, 3, 32, 32)
    ref = net(x)
    net_cl = net.to(memory_format=torch.channels_last)
    out = net_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_generator_seeds_init_without_touching_the_global_rng():
    state = torch.random.get_rng_state()

    def seeded(seed: int) -> torch.nn.Module:
        g = torch.Generator().manual_seed(seed)
        return get_network("convnet", channels=3, num_classes=10, height=32, width=32, generator=g)

    a, b, c = seeded(5), seeded(5), seeded(6)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (ka, pa), (_, pb), (_, pc) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters()):
        assert torch.equal(pa, pb), ka
        if pa.numel() > 128 and "weight" in ka and pa.dim() > 1:
            assert not torch.equal(pa, pc), ka
    # without a generator, the global RNG drives init (torch.manual_seed reproduces it)
    torch.manual_seed(9)
    d = get_network("convnet", channels=3, num_classes=10, height=32, width=32)
    torch.manual_seed(9)
    e = get_network("convnet", channels=3, num_classes=10, height=32, width=32)
    assert all(torch.equal(p, q) for p, q in zip(d.parameters(), e.parameters()))


def test_bad_names_and_shapes_raise_typed_errors():
    with pytest.raises(UnknownNameError, match="convnet"):
        get_network("convnte", channels=3, num_classes=10, height=32, width=32)
    with pytest.raises(ConfigError):
        get_network("convnet", channels=0, num_classes=10, height=32, width=32)
    with pytest.raises(ConfigError):
        get_network("alexnet", channels=3, num_classes=0, height=32, width=32)
    assert "convnet" in NETWORKS


def test_default_network_follows_the_reference_backbones():
    class Spec:
        height = width = 64

    assert default_network(28) == "convnet"
    assert default_network((32, 32)) == "convnet"
    assert default_network(Spec()) == "convnetd4"
    assert default_network(128) == "convnetd5"
    assert default_network(8) == "convnet"


def _read_idx_head(path: Path, n: int) -> torch.Tensor:
    """First ``n`` items of a gzipped IDX file (images -> uint8 [n, 28, 28], labels -> [n])."""
    with gzip.open(path, "rb") as f:
        magic = int.from_bytes(f.read(4), "big")
        ndim = magic & 0xFF
        dims = [int.from_bytes(f.read(4), "big") for _ in range(ndim)]
        item = 1
        for d in dims[1:]:
            item *= d
        data = bytearray(f.read(n * item))
    return torch.frombuffer(data, dtype=torch.uint8).view(n, *dims[1:]).clone()


def test_convnet_learns_real_fashion_mnist(fashion_mnist_dir):
    """12 SGD steps of ConvNet-3 on 600 real images reach far above chance (10 %) on 400 others."""
    imgs = _read_idx_head(fashion_mnist_dir / "t10k-images-idx3-ubyte.gz", 1000)
    labels = _read_idx_head(fashion_mnist_dir / "t10k-labels-idx1-ubyte.gz", 1000).long()
    x = ((imgs.float() / 255 - 0.2861) / 0.3530).unsqueeze(1)
    g = torch.Generator().manual_seed(0)
    net = get_network("convnet", channels=1, num_classes=10, height=28, width=28, generator=g)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    for idx in torch.randperm(600, generator=g).split(50):
        opt.zero_grad()
        F.cross_entropy(net(x[idx]), labels[idx]).backward()
        opt.step()
    with torch.no_grad():
        acc = (net(x[600:]).argmax(1) == labels[600:]).float().mean().item()
    assert acc > 0.5, acc


def test_fast_avg_pool_matches_the_stock_kernel_to_second_order():
    from habacli.networks.layers import AvgPool2x2

    pool = AvgPool2x2()
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(pool(x), F.avg_pool2d(x, 2), rtol=0, atol=1e-14)
    g = torch.randn(2, 3, 3, 4, dtype=torch.float64)
    (ours,) = torch.autograd.grad(pool(x), x, g)
    (stock,) = torch.autograd.grad(F.avg_pool2d(x, 2), x, g)
    assert torch.allclose(ours, stock)
    assert torch.autograd.gradcheck(pool, (x,))
    assert torch.autograd.gradgradcheck(pool, (x,))
    # odd sizes and channels_last take the stock kernel, with the same result
    odd = torch.randn(2, 3, 7, 5)
    assert torch.equal(pool(odd), F.avg_pool2d(odd, 2))
    cl = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    assert torch.allclose(pool(cl), F.avg_pool2d(cl, 2))


def test_instance_norm_is_group_norm_with_a_closed_form_double_backward():
    from habacli.networks.instancenorm import InstanceNorm

    torch.manual_seed(0)
    norm = InstanceNorm(4).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    stock = torch.nn.GroupNorm(4, 4).double()
    stock.load_state_dict(norm.state_dict())
    assert list(norm.state_dict()) == ["weight", "bias"] and isinstance(norm, torch.nn.GroupNorm)
    x = torch.randn(3, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.equal(norm(x), stock(x))
    assert torch.autograd.gradcheck(norm, (x,))
    assert torch.autograd.gradgradcheck(norm, (x,))
    # second-order values against PyTorch's composite, upstream gradients on every output of the backward
    dy = torch.randn_like(x, requires_grad=True)
    outs = []
    for m in (norm, stock):
        first = torch.autograd.grad(m(x), (x, m.weight, m.bias), dy, create_graph=True)
        up = [torch.randn_like(t, generator=torch.Generator().manual_seed(i)) for i, t in enumerate(first)]
        outs.append(torch.autograd.grad(first, (x, dy, m.weight), up))
    for ours, theirs in zip(*outs):
        assert torch.allclose(ours, theirs, rtol=1e-9, atol=1e-10)


def test_instance_norm_falls_back_to_the_stock_op_off_its_fast_path():
    from habacli.networks.instancenorm import InstanceNorm

    norm = InstanceNorm(8)
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        assert torch.equal(norm(x), F.group_norm(x, 8, norm.weight, norm.bias))
    cl = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    assert norm(cl).grad_fn.name() == "_InstanceNormBackward"  # NHWC has its own kernels
    assert norm(cl[:, :, ::2]).grad_fn.name() == "NativeGroupNormBackward0"  # other strides: stock
    half = x.half().requires_grad_()
    assert norm.half()(half).grad_fn.name() != "_InstanceNormBackward"
    norm.float()
    assert norm(x.requires_grad_()).grad_fn.name() == "_InstanceNormBackward"
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a bf16 convolution output takes the fast path
        y = norm(F.conv2d(x, torch.randn(8, 8, 1, 1)))
    assert y.dtype == torch.bfloat16 and y.grad_fn.name() == "_InstanceNormBackward"


@pytest.mark.parametrize("hw", [(5, 6), (32, 32)])  # below and at ATen's NHWC threshold (1024 pixels)
def test_instance_norm_on_channels_last_maps_matches_nchw_to_second_order(hw):
    """NHWC maps take haba's own [N, HW, C] kernels (ATen's NHWC GroupNorm is slow below 1024 pixels):
    forward, backward and double backward equal the NCHW path's, the output stays NHWC, and the
    statistics survive a mean 1000x the spread."""
    from habacli.networks.instancenorm import InstanceNorm

    gen = torch.Generator().manual_seed(0)
    norm = InstanceNorm(4).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5, generator=gen)
        norm.bias.normal_(generator=gen)
    base = torch.randn(3, 4, *hw, generator=gen, dtype=torch.float64) + 1000 * torch.randn(3, 4, 1, 1, generator=gen)
    outs = {}
    for name, fmt in (("nchw", torch.contiguous_format), ("nhwc", torch.channels_last)):
        x = base.contiguous(memory_format=fmt).requires_grad_()
        y = norm(x)
        assert y.grad_fn.name() == "_InstanceNorm" + "Backward"
        dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        first = torch.autograd.grad(y, (x, norm.weight, norm.bias), dy, create_graph=True)
        up = [
            torch.randn(t.shape, generator=torch.Generator().manual_seed(2 + i), dtype=torch.float64)
            for i, t in enumerate(first)
        ]
        second = torch.autograd.grad(first, (x, norm.weight), up)
        outs[name] = (y, *first, *second)
        if name == "nhwc":
            assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
            with torch.no_grad():
                assert torch.allclose(norm(x), y)
    for ours, theirs in zip(outs["nhwc"], outs["nchw"]):
        assert torch.allclose(ours, theirs, rtol=1e-7, atol=1e-8)
    if hw == (5, 6):
        x = base.contiguous(memory_format=torch.channels_last).requires_grad_()
        small = (x - base.mean(dim=(2, 3), keepdim=True)).detach().requires_grad_()  # gradcheck at a sane scale
        assert torch.autograd.gradcheck(norm, (small,)) and torch.autograd.gradgradcheck(norm, (small,))
    # float32 and bf16 NHWC maps: statistics in float32, one rounding of the output
    x32 = base.float().contiguous(memory_format=torch.channels_last)
    ref = F.group_norm(base, 4, norm.weight, norm.bias)
    n32 = InstanceNorm(4)
    n32.load_state_dict(norm.float().state_dict())
    norm.double()
    with torch.no_grad():
        err32 = (n32(x32).double() - ref).abs().max().item()
        stock32 = (F.group_norm(x32.contiguous(), 4, n32.weight, n32.bias).double() - ref).abs().max().item()
        assert err32 <= 2 * stock32 + 1e-6
        xb = (base - base.mean(dim=(2, 3), keepdim=True)).bfloat16().contiguous(memory_format=torch.channels_last)
        yb = n32(xb)
        assert yb.dtype == torch.bfloat16 and yb.is_contiguous(memory_format=torch.channels_last)
        refb = F.group_norm(xb.double(), 4, norm.weight, norm.bias)
        assert (yb.double() - refb).abs().max().item() <= 2**-7 * refb.abs().max().item()


def test_instance_norm_bf16_double_backward_is_closer_to_float64_than_the_stock_bf16_op():
    """Under --amp bf16 the closed form keeps its statistics and temporaries in float32: its
    second-order gradient is at least as accurate as the stock op's composite run in bf16."""
    from habacli.networks.instancenorm import InstanceNorm

    gen = torch.Generator().manual_seed(0)
    x64 = torch.randn(4, 16, 12, 12, generator=gen, dtype=torch.float64) * 2 + 0.5
    w64 = torch.randn(16, generator=gen, dtype=torch.float64)
    up = torch.randn(4, 16, 12, 12, generator=gen, dtype=torch.float64)

    def second_order(norm_fn, dtype):
        x = x64.to(dtype).requires_grad_()
        y = norm_fn(x)
        (gx,) = torch.autograd.grad((y.float() * up.to(y.dtype).float()).sum(), x, create_graph=True)
        (hx,) = torch.autograd.grad((gx.float() ** 2).sum(), x)
        return hx.double()

    norm = InstanceNorm(16).double()
    with torch.no_grad():
        norm.weight.copy_(w64)
    exact = second_order(norm, torch.float64)
    stock = second_order(lambda x: F.group_norm(x, 16, w64.to(x.dtype), None), torch.bfloat16)
    ours = second_order(norm.float(), torch.bfloat16)
    err = lambda h: ((h - exact).norm() / exact.norm()).item()
    assert err(ours) < 0.01
    assert err(ours) < err(stock)


def test_convnet_second_order_gradients_match_stock_group_norm(fashion_mnist_dir):
    """DC/MTT differentiate through a gradient: on real images, the image gradient of a
    gradient-norm loss is the same with the closed-form instance norm as with nn.GroupNorm."""
    imgs = _read_idx_head(fashion_mnist_dir / "t10k-images-idx3-ubyte.gz", 20)
    labels = _read_idx_head(fashion_mnist_dir / "t10k-labels-idx1-ubyte.gz", 20).long()
    x = ((imgs.float() / 255 - 0.2861) / 0.3530).unsqueeze(1).double()
    net = get_network(
        "convnet", channels=1, num_classes=10, height=28, width=28, generator=torch.Generator().manual_seed(0)
    ).double()
    params = dict(net.named_parameters())

    def image_grad() -> torch.Tensor:
        xs = x.clone().requires_grad_()
        loss = F.cross_entropy(functional_call(net, params, (xs,)), labels)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        return torch.autograd.grad(sum((g * g).sum() for g in grads), xs)[0]

    ours = image_grad()
    for i, m in enumerate(net.features):
        if isinstance(m, torch.nn.GroupNorm):
            stock = torch.nn.GroupNorm(m.num_groups, m.num_channels).double()
            net.features[i] = stock
            params[f"features.{i}.weight"], params[f"features.{i}.bias"] = m.weight, m.bias
    assert not any(type(m).__name__ == "InstanceNorm" for m in net.modules())
    theirs = image_grad()
    assert ours.abs().max() > 0
    assert torch.allclose(ours, theirs, rtol=1e-8, atol=1e-12 * theirs.abs().max().item())


def test_fused_double_backward_equals_the_eager_closed_form():
    """Under fused_double_backward (what --compile turns on) the instance norm's second order comes
    from one compiled kernel, with the eager closed form's values (fp32 and bf16 activations)."""
    from habacli.networks import instancenorm
    from habacli.networks.instancenorm import InstanceNorm, fused_double_backward

    gen = torch.Generator().manual_seed(0)
    norm = InstanceNorm(4)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5, generator=gen)
    base = torch.randn(3, 4, 6, 6, generator=gen) * 2 + 1
    up = torch.randn(3, 4, 6, 6, generator=gen)

    def second_order(x):
        x = x.clone().requires_grad_()
        (gx,) = torch.autograd.grad((norm(x).float() * up).sum(), x, create_graph=True)
        return torch.autograd.grad((gx.float() ** 2).sum(), (x, norm.weight))

    instancenorm._fused_state["kernel"] = None
    for x in (base, base.bfloat16()):
        eager = second_order(x)
        with fused_double_backward():
            fused = second_order(x)
        assert instancenorm._fused_state["kernel"] not in (None, False)
        for a, b in zip(eager, fused):
            assert a.dtype == b.dtype and a.abs().max() > 0
            tol = 1e-5 if x.dtype == torch.float32 else 2e-2
            torch.testing.assert_close(b.float(), a.float(), rtol=tol, atol=tol * float(a.abs().max()))


def test_fused_double_backward_falls_back_to_eager_with_one_warning(monkeypatch):
    """If inductor cannot build the kernel, the eager closed form runs instead (same values) and the
    process warns once."""
    from habacli.networks import instancenorm
    from habacli.networks.instancenorm import InstanceNorm, fused_double_backward

    def broken(*a, **k):
        raise RuntimeError("no compiler here")

    monkeypatch.setitem(instancenorm._fused_state, "kernel", broken)
    norm = InstanceNorm(2)
    x = torch.randn(2, 2, 4, 4, requires_grad=True)

    def second_order():
        (gx,) = torch.autograd.grad(norm(x).pow(2).sum(), x, create_graph=True)
        return torch.autograd.grad(gx.pow(2).sum(), x)[0]

    want = second_order()
    with fused_double_backward(), pytest.warns(UserWarning, match="no compiler here"):
        got = second_order()
    assert torch.equal(got, want) and instancenorm._fused_state["kernel"] is False
    with fused_double_backward(), warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        second_order()
