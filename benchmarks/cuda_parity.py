"""CPU against CUDA on the same weights and the same batch, for a GPU machine (issue 13): where does a CUDA run
part from the CPU one?

* inference (eval mode, fp32): raw outputs compared as query sets (``max_query_set_diff``) on a randomised
  model (``randomize_for_parity``) and an input whose top-k cut has no near-tie, with TF32 off and on;
* one training step (fp32, train mode, denoising on, the denoising groups drawn on the CPU for both): every
  loss term and every parameter's gradient (relative L2 error; the worst parameters named);
* the same step under fp16 / bf16 autocast on CUDA against the fp32 CUDA step (loss terms);
* the step's gradients with attention through the reference (math) kernel only, against the CPU: whether the
  fused attention kernels (used because ``need_weights=False``) account for a gradient difference;
* ``--loop-steps`` optimizer steps of the demo's Trainer (its model, data and recipe; a loader without workers,
  denoising drawn on the CPU) on the CPU and on CUDA from the same seed (TF32 off; again with math attention;
  again with TF32 convolutions): mean loss and the parameters furthest apart afterwards.

    PYTHONPATH=src python benchmarks/cuda_parity.py --out cuda_parity.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
from pathlib import Path
from typing import Any

import torch

from rtdetr.loss import RTDETRCriterion
from rtdetr.loss.criterion import to_float32
from rtdetr.models import create_model
from rtdetr.ops.compare import denoising_noise_on_cpu, max_query_set_diff, randomize_for_parity, untied_input

DEV = "cuda"  # the device compared with the CPU (--device)
TARGETS = [
    {"labels": torch.tensor([0, 2, 3]), "boxes": torch.tensor([[0.3, 0.3, 0.3, 0.4], [0.75, 0.7, 0.3, 0.3],
                                                               [0.5, 0.5, 0.8, 0.9]])},
    {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.45, 0.5, 0.3]])},
]  # fmt: skip


def _on(targets: list[dict[str, torch.Tensor]], device: str) -> list[dict[str, torch.Tensor]]:
    return [{k: v.to(device) for k, v in t.items()} for t in targets]


def _step(
    model: torch.nn.Module, x: torch.Tensor, device: str, dtype: torch.dtype | None, math_sdpa: bool = False
) -> dict[str, Any]:
    """Forward (train mode, autocast in ``dtype`` if given), criterion in fp32, backward: outputs, losses, grads.
    ``math_sdpa``: attention through PyTorch's reference (math) kernel only, not the fused ones."""
    if math_sdpa:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([SDPBackend.MATH]):
            return _step(model, x, device, dtype)
    model = model.to(device).train()
    model.zero_grad(set_to_none=True)
    targets = _on(TARGETS, device)
    torch.manual_seed(3)
    with denoising_noise_on_cpu(), torch.autocast(torch.device(device).type, dtype=dtype or torch.float32,
                                               enabled=dtype is not None):  # fmt: skip
        out = model(x.to(device), targets)
    losses = RTDETRCriterion(4)(to_float32(out), targets)
    sum(losses.values()).backward()
    grads = {n: p.grad.detach().double().cpu() for n, p in model.named_parameters() if p.grad is not None}
    return {"out": {k: v.detach().float().cpu() for k, v in out.items() if k in ("pred_logits", "pred_boxes")},
            "losses": {k: float(v) for k, v in losses.items()}, "grads": grads}  # fmt: skip


def _loss_diffs(a: dict[str, float], b: dict[str, float]) -> dict[str, Any]:
    rel = {k: abs(a[k] - b[k]) / max(abs(b[k]), 1e-3) for k in b}
    worst = sorted(rel, key=rel.get, reverse=True)[:6]  # type: ignore[arg-type]
    total_a, total_b = sum(a.values()), sum(b.values())
    return {"total": [round(total_a, 5), round(total_b, 5)], "worst_terms": {k: [a[k], b[k]] for k in worst}}


def _grad_errors(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per parameter ``|got - ref| / max(|ref|, 1e-3 * rms parameter gradient norm)``: parameters whose true
    gradient is zero (a bias before a train-mode BatchNorm) carry rounding noise only and are not counted as
    differences."""
    floor = 1e-3 * float(torch.stack([g.norm() for g in ref.values()]).pow(2).mean().sqrt())
    return {n: float((got[n] - g).norm() / max(float(g.norm()), floor)) for n, g in ref.items() if n in got}


def _worst(rel: dict[str, float], k: int) -> dict[str, float]:
    """The ``k`` largest errors by parameter name."""
    return {n: round(rel[n], 6) for n in sorted(rel, key=rel.__getitem__, reverse=True)[:k]}


def compare(name: str, size: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, eval_spatial_size=(size, size)).eval()
    randomize_for_parity(model)
    x = untied_input(model, (2, 3, size, size), gap=1e-3, tries=50)
    row: dict[str, Any] = {"variant": name, "size": size}
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        with torch.no_grad():
            ref = model(x)
            out = copy.deepcopy(model).to(DEV)(x.to(DEV))
        scale = max(1.0, float(ref["pred_logits"].abs().max()))
        out_cpu = {k: v.cpu() for k, v in out.items() if k in ("pred_logits", "pred_boxes")}
        row[f"eval_set_diff_tf32_{tf32}"] = max_query_set_diff(ref, out_cpu) / scale
        row[f"eval_elementwise_diff_tf32_{tf32}"] = (
            float((ref["pred_logits"] - out_cpu["pred_logits"]).abs().max()) / scale
        )
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    cpu = _step(copy.deepcopy(model), x, "cpu", None)
    gpu = _step(copy.deepcopy(model), x, DEV, None)
    row["train_losses_cuda_vs_cpu"] = _loss_diffs(gpu["losses"], cpu["losses"])
    row["train_out_set_diff"] = max_query_set_diff(cpu["out"], gpu["out"]) / scale
    rel = _grad_errors(gpu["grads"], cpu["grads"])
    missing = sorted(set(cpu["grads"]) ^ set(gpu["grads"]))
    row["grad_rel_err_max"] = max(rel.values())
    row["grad_rel_err_median"] = float(torch.tensor(list(rel.values())).median())
    row["grad_worst"] = _worst(rel, 8)
    row["grads_only_on_one_device"] = missing
    math = _step(copy.deepcopy(model), x, DEV, None, math_sdpa=True)  # the fused attention kernels' share
    rel = _grad_errors(math["grads"], cpu["grads"])
    row["math_sdpa_grad_rel_err_max"] = max(rel.values())
    row["math_sdpa_grad_worst"] = _worst(rel, 5)
    for dtype in (torch.float16, torch.bfloat16):
        amp = _step(copy.deepcopy(model), x, DEV, dtype)
        row[f"amp_{str(dtype)[6:]}_losses_vs_cuda_fp32"] = _loss_diffs(amp["losses"], gpu["losses"])
        cos = {n: float(torch.nn.functional.cosine_similarity(amp["grads"][n].flatten(), g.flatten(), dim=0))
               for n, g in gpu["grads"].items() if n in amp["grads"] and g.norm() > 0}  # fmt: skip
        row[f"amp_{str(dtype)[6:]}_grad_cos_min"] = {n: round(cos[n], 4) for n in sorted(cos, key=cos.get)[:5]}  # type: ignore[arg-type]
    return row


def loop(steps: int, size: int, root: Path) -> dict[str, Any]:
    """The demo's Trainer for ``steps`` optimizer steps on the CPU and on the device, same seed and batches."""
    from rtdetr.data.synthetic import make_synthetic_coco
    from rtdetr.demo import DEMO_RECIPE
    from rtdetr.engine.trainer import Trainer
    from rtdetr.recipe import load_recipe

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    data = make_synthetic_coco(root / "data", 160, 16, size)
    params, row = {}, {"steps": steps}
    for device in ("cpu", DEV, f"{DEV}+math_sdpa", f"{DEV}+tf32"):
        torch.backends.cudnn.allow_tf32 = device.endswith("+tf32")
        ctx: Any = contextlib.nullcontext()
        if device.endswith("+math_sdpa"):
            from torch.nn.attention import SDPBackend, sdpa_kernel

            ctx = sdpa_kernel([SDPBackend.MATH])
        cfg = load_recipe(None, [*DEMO_RECIPE, f"data.image_size=[{size},{size}]", f"data.train={data['train']}",
                                 f"data.val={data['val']}", "train.epochs=1", f"train.max_iters_per_epoch={steps}",
                                 "data.workers=0", f"train.device={device.split('+')[0]}", "train.progress=false",
                                 f"train.output_dir={root / device}"])  # fmt: skip
        trainer = Trainer(cfg)
        trainer._seed_epoch(0)  # as fit() does: the same batches, augmentation and denoising draws everywhere
        losses: list[float] = []
        criterion = trainer.criterion

        def recorded(out: Any, targets: Any, _c: Any = criterion, _l: list[float] = losses) -> Any:
            terms = _c(out, targets)
            _l.append(round(float(sum(terms.values())), 4))
            return terms

        trainer.criterion = recorded  # type: ignore[assignment]
        with denoising_noise_on_cpu(), ctx:
            trainer.train_one_epoch(0)
        row[f"losses_{device}"] = losses
        params[device] = {n: p.detach().double().cpu() for n, p in trainer.model.named_parameters()}
    for device in params:
        if device == "cpu":
            continue
        # (per parameter, Adam makes ones with a zero true gradient move by +-lr on rounding noise: compare all)
        a = torch.cat([p.flatten() for p in params["cpu"].values()])
        b = torch.cat([params[device][n].flatten() for n in params["cpu"]])
        row[f"{device}: params_rel_diff"] = float((a - b).norm() / a.norm())
    torch.backends.cudnn.allow_tf32 = False
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="*", default=["rtdetr_r18vd", "rtdetrv2_r18vd"])
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--loop-steps", type=int, default=0, help="Trainer steps on both devices (0: none)")
    ap.add_argument("--device", default="cuda", help="the device compared with the CPU (cpu: a dry run)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    global DEV
    DEV = args.device
    if DEV.startswith("cuda") and not torch.cuda.is_available():
        print("needs a CUDA device", file=sys.stderr)
        return 2
    rows = []
    for name in args.variants:
        try:
            rows.append(compare(name, args.size))
        except Exception as e:  # the other variant still runs
            rows.append({"variant": name, "error": f"{type(e).__name__}: {e}"[:500]})
        _report(rows, args.out)
    if args.loop_steps:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            try:
                rows.append({"loop": loop(args.loop_steps, args.size, Path(tmp))})
            except Exception as e:
                rows.append({"loop": f"{type(e).__name__}: {e}"[:500]})
        _report(rows, args.out)
    return 0


def _report(rows: list[dict[str, Any]], out: Path | None) -> None:
    """Print the newest row; rewrite ``out`` with all of them (a run cut short keeps what it measured)."""
    print(json.dumps(rows[-1], indent=1), flush=True)
    if out:
        out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
