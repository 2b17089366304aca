"""The "from scratch" scan resolves names through the file's imports: torch's are caught
however they are aliased, and the learner's own names that happen to match are not."""
import textwrap

import pytest

from grader.checks.forbidden import scan
from grader.course import load_course

LAYERNORM = ("torch.nn.functional.layer_norm", "torch.nn.LayerNorm", "torch.layer_norm")
SOFTMAX = load_course().stage("04_softmax").forbidden


def found(tmp_path, source: str, forbidden=LAYERNORM, name="layernorm.py", others=None):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    paths = [path]
    for other, text in (others or {}).items():
        (tmp_path / other).write_text(textwrap.dedent(text))
        paths.append(tmp_path / other)
    return scan(paths, forbidden)


def test_a_learners_own_layernorm_class_is_not_torchs(tmp_path):
    assert found(tmp_path, """
        import torch
        from torch import nn

        class LayerNorm(nn.Module):
            def forward(self, x):
                return (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True)

        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.ln = LayerNorm()
                self.layer_norm = LayerNorm()
            def forward(self, x):
                return self.layer_norm(self.ln(x))
    """) == []


def test_a_learners_module_named_norms_is_not_torchs(tmp_path):
    norms = "import torch\n\nclass LayerNorm(torch.nn.Module):\n    pass\n\ndef layer_norm(x):\n    return x\n"
    source = """
        import norms
        from norms import LayerNorm
        from norms import layer_norm as ln
        from .norms import LayerNorm as RelativeLayerNorm
        a = norms.LayerNorm()
        b = norms.layer_norm
    """
    assert found(tmp_path, source, others={"norms.py": norms}) == []


def test_self_softmax_is_the_learners_method(tmp_path):
    assert found(tmp_path, """
        import torch

        class Attention:
            def softmax(self, x):
                e = (x - x.max(-1, keepdim=True).values).exp()
                return e / e.sum(-1, keepdim=True)
            def forward(self, x):
                return self.softmax(x) + Attention.softmax(self, x)
    """, SOFTMAX, name="softmax.py") == []


def test_f_layer_norm_is_reported_as_written(tmp_path):
    violations = found(tmp_path, """
        import torch.nn.functional as F
        def forward(x):
            return F.layer_norm(x, x.shape[-1:])
    """)
    assert [(v.line, v.api) for v in violations] == [(4, "torch.nn.functional.layer_norm")]
    assert violations[0].describe() == "layernorm.py line 4 uses F.layer_norm (torch.nn.functional.layer_norm)"


@pytest.mark.parametrize("source, line, api", [
    ("from torch.nn import functional as Fn\ny = Fn.layer_norm(x, (3,))", 2, "torch.nn.functional.layer_norm"),
    ("import torch as t\nm = t.nn.LayerNorm(3)", 2, "torch.nn.LayerNorm"),
    ("from torch.nn.functional import layer_norm as ln\ny = ln(x, (3,))", 1, "torch.nn.functional.layer_norm"),
    ("from torch import nn\nm = nn.LayerNorm(3)", 2, "torch.nn.LayerNorm"),
    ("import torch\ny = torch.nn.functional.layer_norm(x, (3,))", 2, "torch.nn.functional.layer_norm"),
    ("import torch\ny = torch.layer_norm(x, (3,))", 2, "torch.layer_norm"),
    ("import torch\nm = torch.nn.modules.normalization.LayerNorm(3)", 2, "torch.nn.LayerNorm"),
    ("import torch\nfn = torch.nn.functional\ny = fn.layer_norm(x, (3,))", 3, "torch.nn.functional.layer_norm"),
    ("import torch.nn.functional as F\ny = getattr(F, 'layer_norm')(x, (3,))", 2, "torch.nn.functional.layer_norm"),
    ("from torch.nn.functional import *\ny = layer_norm(x, (3,))", 2, "torch.nn.functional.layer_norm"),
])
def test_aliases_of_torch_are_still_caught(tmp_path, source, line, api):
    assert [(v.line, v.api) for v in found(tmp_path, source)] == [(line, api)]


def test_tensor_methods_are_caught_on_any_value(tmp_path):
    violations = found(tmp_path, """
        import torch
        def attend(q, k):
            scores = q @ k.transpose(-2, -1)
            weights = scores.softmax(dim=-1)
            return (q @ k.mT).log_softmax(-1), weights
    """, SOFTMAX, name="softmax.py")
    assert [(v.line, v.api) for v in violations] == [(5, "torch.Tensor.softmax"), (6, "torch.Tensor.log_softmax")]


def test_the_stage_modules_own_softmax_imported_later_is_not_torchs(tmp_path):
    # A later stage importing the learner's 04 softmax (a module of the same name).
    assert found(tmp_path, """
        from softmax import softmax, causal_mask
        import softmax as mine
        def f(x):
            return softmax(x) + mine.softmax(x)
    """, SOFTMAX, name="attention.py") == []


def test_forbidden_packages_are_caught_however_imported(tmp_path):
    violations = found(tmp_path, """
        import tiktoken as t
        from tokenizers import Tokenizer
        import importlib
        sp = importlib.import_module("sentencepiece")
    """, ("tiktoken", "tokenizers", "sentencepiece"), name="bpe.py")
    assert [(v.line, v.api) for v in violations] == [(2, "tiktoken"), (3, "tokenizers"), (5, "sentencepiece")]
    assert violations[0].describe() == "bpe.py line 2 uses tiktoken"


def test_every_reference_solution_is_clean():
    course = load_course()
    for stage in course.stages:
        if stage.available:
            files = sorted((course.root / "solutions" / stage.id).glob("*.py"))
            assert scan(files, stage.forbidden) == [], stage.id
