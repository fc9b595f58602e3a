"""`core.watch` on a Hugging Face `transformers` GPT-2 (random weights, 2 blocks of width 32): a
network no one here wrote, with its own Conv1D projections, LayerNorm, fused attention and a
GELU called as a function (`nn.functional.gelu` inside transformers' GELUActivation module).
Every statistic checked is computed a second time by the test's own hooks and torch: the GELU's
inactive share from autograd's derivative, the gradients and updates from the parameters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core.activations import FLAT_FRACTION
from core.watch import watch

transformers = pytest.importorskip("transformers")

STEPS, EVERY, BATCH, LENGTH, VOCAB = 6, 2, 8, 16, 64
PROJECTIONS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def gpt2() -> torch.nn.Module:
    # initializer_range 0.3 (GPT-2's is 0.02): pre-activations wide enough that some fall in
    # GELU's flat regions, so the inactive and dead shares are not trivially 0.
    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=LENGTH,
        activation_function="gelu", initializer_range=0.3, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, tie_word_embeddings=False, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():   # 8 of block 0's 128 GELU units dead by hand (GELU′(−20) ≈ 0)
        model.transformer.h[0].mlp.c_fc.bias[:8] = -20.0
    return model


def gelu_slope(z: torch.Tensor) -> torch.Tensor:
    """|GELU′(z)| by autograd, over its largest value on a fine grid (≈1.129 at z = √2)."""
    def slope(x):
        x = x.detach().double().requires_grad_()
        return torch.autograd.grad(F.gelu(x).sum(), x)[0].abs()
    return slope(z) / slope(torch.linspace(-10, 10, 200_001)).max()


@pytest.fixture(scope="module")
def watched():
    """The watched run and what the test's own hooks saw on each recorded step."""
    model = gpt2()
    tokens = torch.randint(0, VOCAB, (BATCH * STEPS, LENGTH), generator=torch.Generator().manual_seed(1))
    seen: dict = {"order": [], "z": {}, "out_grad": {}, "grad": {}, "update": {}, "loss": []}
    blocks = model.transformer.h
    step = [0]

    def first_call(name):
        def hook(module, args):
            if name not in seen["order"] and model.training:
                seen["order"].append(name)
        return hook

    def keep_z(i):
        def hook(module, args):
            if model.training and step[0] % EVERY == 0:
                seen["z"][(step[0], i)] = args[0].detach().clone()
        return hook

    def keep_out_grad(i):
        def hook(module, args, out):
            if model.training and step[0] % EVERY == 0:
                at = step[0]
                out.register_hook(lambda g: seen["out_grad"].__setitem__(
                    (at, i), torch.linalg.vector_norm(g).item()))
        return hook

    hooks = [m.register_forward_pre_hook(first_call(n)) for n, m in model.named_modules() if n]
    for i, block in enumerate(blocks):
        hooks.append(block.mlp.act.register_forward_pre_hook(keep_z(i)))
        hooks.append(block.mlp.c_fc.register_forward_hook(keep_out_grad(i)))
    weights = {f"transformer.h.{i}.{p}": getattr(getattr(block, p.split(".")[0]),
                                                   p.split(".")[1]).weight
               for i, block in enumerate(blocks) for p in PROJECTIONS}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with watch(model, opt, every=EVERY, probe=tokens[:BATCH]) as w:
        for s in range(STEPS):
            step[0] = s
            x = tokens[s * BATCH:(s + 1) * BATCH]
            opt.zero_grad()
            loss = model(input_ids=x, labels=x).loss
            loss.backward()
            w.after_backward(loss)
            seen["loss"].append(loss.item())
            before = {n: wt.detach().clone() for n, wt in weights.items()}
            if s % EVERY == 0:
                seen["grad"].update({(s, n): wt.grad.norm().item() for n, wt in weights.items()})
            opt.step()
            if s % EVERY == 0:
                seen["update"].update({(s, n): ((wt.detach() - before[n]).norm()
                                                / before[n].norm()).item()
                                       for n, wt in weights.items()})
    for h in hooks:
        h.remove()
    model.eval()
    with torch.no_grad():   # the probe as the watch ran it at the end: eval mode, after training
        z_probe = {}
        probes = [b.mlp.act.register_forward_pre_hook(
            lambda m, a, i=i: z_probe.__setitem__(i, a[0].clone())) for i, b in enumerate(blocks)]
        model(input_ids=tokens[:BATCH])
        for h in probes:
            h.remove()
    return w.result(), seen, z_probe, model


def value(run, step: int, layer: str, metric: str) -> float:
    rows = run.layers.query("step == @step and layer == @layer and metric == @metric")
    assert len(rows) == 1, (step, layer, metric)
    return float(rows.value.iloc[0])


def test_layers_are_module_paths_in_forward_order(watched):
    run, seen, _, model = watched
    owners = {n for n, m in model.named_modules() if list(m.parameters(recurse=False))}
    acts = {f"transformer.h.{i}.mlp.act" for i in range(2)}
    assert run.layer_names == [n for n in seen["order"] if n in owners | acts]
    assert run.layer_names[:3] == ["transformer.wte", "transformer.wpe", "transformer.h.0.ln_1"]
    assert run.layer_names[-2:] == ["transformer.ln_f", "lm_head"]
    assert run.config.model == "GPT2LMHeadModel" and run.config.activation == "gelu"
    assert run.status == "completed" and run.config.probe == BATCH


def test_the_loss_the_gradients_and_the_updates_match_torch(watched):
    run, seen, _, _ = watched
    assert run.steps.loss.tolist() == pytest.approx(seen["loss"], rel=1e-6)
    for (step, layer), norm in seen["grad"].items():
        assert value(run, step, layer, "weight_grad_norm") == pytest.approx(norm, rel=1e-4)
    for (step, layer), ratio in seen["update"].items():
        assert value(run, step, layer, "update_data_ratio") == pytest.approx(ratio, rel=1e-3)
    for (step, i), norm in seen["out_grad"].items():
        assert value(run, step, f"transformer.h.{i}.mlp.c_fc", "out_grad_norm") == \
            pytest.approx(norm, rel=1e-4)
    assert len(seen["grad"]) == 3 * 8 and len(seen["out_grad"]) == 3 * 2   # steps 0, 2, 4


def test_the_functional_gelus_statistics_match_autograd(watched):
    run, seen, z_probe, _ = watched
    shares = []
    for (step, i), z in seen["z"].items():
        layer = f"transformer.h.{i}.mlp.act"
        flat = gelu_slope(z) < FLAT_FRACTION
        shares.append(flat.double().mean().item())
        assert value(run, step, layer, "inactive") == pytest.approx(shares[-1], abs=1e-4)
        assert value(run, step, layer, "preact_mean") == pytest.approx(z.mean().item(), abs=1e-5)
        assert value(run, step, layer, "preact_std") == pytest.approx(z.std().item(), rel=1e-3)
        assert value(run, step, layer, "act_mean") == pytest.approx(F.gelu(z).mean().item(),
                                                                    abs=1e-5)
    assert min(shares) > 0.01   # the check is not 0 == 0
    last = run.layers.query("metric == 'dead'").step.max()
    for i, z in z_probe.items():   # dead: a unit (last dimension) flat at every position
        dead = (gelu_slope(z) < FLAT_FRACTION).flatten(0, -2).all(dim=0).double().mean().item()
        assert value(run, last, f"transformer.h.{i}.mlp.act", "dead") == pytest.approx(dead)
    assert value(run, last, "transformer.h.0.mlp.act", "dead") >= 8 / 128
