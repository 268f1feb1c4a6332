import pytest
import torch

from rtdetr.bench.profile import count_parameters
from rtdetr.models import create_model
from rtdetr.models.layers import RepVggBlock
from rtdetr.ops.compare import max_query_set_diff
from tests.conftest import randomize_batchnorm


@pytest.mark.parametrize("name", ["rtdetrv2_r18vd", "rtdetr_r50vd_m", "rtdetr_hgnetv2_l"])
def test_deploy_keeps_outputs(name: str) -> None:
    model = create_model(name, num_classes=5).eval()
    randomize_batchnorm(model)
    x = torch.rand(2, 3, 128, 96)
    with torch.no_grad():
        ref = model(x)
        params = count_parameters(model)
        model.deploy()
        out = model(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert all(hasattr(m, "conv") and not hasattr(m, "conv1") for m in model.modules() if isinstance(m, RepVggBlock))
    assert count_parameters(model) < params
    assert max_query_set_diff(out, ref) < 1e-4


def test_deployed_model_refuses_training() -> None:
    model = create_model("rtdetr_r18vd").deploy()
    with pytest.raises(RuntimeError, match="cannot be trained"):
        model.train()
