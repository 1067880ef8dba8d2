"""The index: formula vs every released name's labels, name resolution, filters, CLI output."""

import csv
import io
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from checkpoints_index.index import all_checkpoints, count_params, register_checkpoint, resolve
from core.errors import UserError
from moelab.cli import main

SHARED_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "research" / "checkpoints.csv"


def _released():
    return [c for c in all_checkpoints() if c.domain in ("math", "code")]


def _label_value(label: str) -> tuple[float, float]:
    """'320M' -> (320e6, half a unit of its last significant digit); '26.0B' -> (26.0e9, 0.05e9)."""
    number, unit = label[:-1], {"M": 1e6, "B": 1e9}[label[-1]]
    if "." in number:
        step = 10 ** -len(number.split(".")[1])
    else:
        step = 10 ** (len(number) - len(number.rstrip("0")))
    return float(number) * unit, step * unit / 2


def test_all_66_confirmed_checkpoints_are_indexed():
    released = _released()
    assert len(released) == 66
    assert sum(c.domain == "math" for c in released) == 65
    assert len({c.hf_id for c in released}) == 66


def test_formula_matches_every_total_label_and_nominal_active_label():
    for info in _released():
        total_label, active_label = re.search(r"-([\d.]+[MB])-A([\d.]+[MB])$", info.hf_id).groups()
        value, tolerance = _label_value(total_label)
        assert abs(info.total_params - value) <= tolerance, (info.name, info.total_params, total_label)
        # The ACTIVE label is nominal per (D, K): it ignores the router term (docs/study.md, "Parameter counts").
        nominal_active = info.active_params - info.num_layers * info.d_model * info.num_experts
        value, tolerance = _label_value(active_label)
        assert abs(nominal_active - value) <= tolerance, (info.name, nominal_active, active_label)


def test_formula_matches_published_counts_and_known_examples():
    assert resolve("d512-E8-k2").total_params == 320_160_256
    assert resolve("d512-E8-k2").active_params == 169_165_312
    if SHARED_CSV.is_file():
        published = {r["hf_id"]: r for r in csv.DictReader(SHARED_CSV.open())}
        for info in _released():
            assert info.total_params == int(published[info.hf_id]["total_params"])
            assert info.active_params == int(published[info.hf_id]["active_params"])


@pytest.mark.slow
def test_formula_equals_a_real_mixtral_numel():
    from transformers import MixtralConfig, MixtralForCausalLM

    config = MixtralConfig(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=32, num_local_experts=4,
                           num_experts_per_tok=2, tie_word_embeddings=False)
    model = MixtralForCausalLM(config)
    total, active = count_params(64, 2, 2, 4, 2, 96, 300, num_kv_heads=1, head_dim=32)
    assert total == sum(p.numel() for p in model.parameters())
    assert total - active == 2 * 2 * 3 * 64 * 96  # two idle experts per layer


@pytest.mark.parametrize("alias", ["d1024-E16-k2", "math-d1024-E16-k2", "D1024-E16-K2",
                                   "llm-jp/optimal-sparsity-math-d1024-E16-k2-1.9B-A470M",
                                   "optimal-sparsity-math-d1024-E16-k2-1.9B-A470M"])
def test_short_names_resolve(alias):
    info = resolve(alias)
    assert info.hf_id == "llm-jp/optimal-sparsity-math-d1024-E16-k2-1.9B-A470M"
    assert (info.d_model, info.num_experts, info.top_k, info.num_heads) == (1024, 16, 2, 8)
    assert info.tpp == pytest.approx(125e9 / info.total_params)
    assert info.density == pytest.approx(2 / 16)


def test_code_checkpoint_has_its_own_name():
    assert resolve("code-d512-E8-k2").domain == "code"
    assert resolve("d512-E8-k2").domain == "math"


def test_unknown_name_suggests_closest():
    with pytest.raises(UserError, match="closest: .*d512-E8-k2"):
        resolve("d512-E9-k2")


def test_registered_checkpoint_resolves_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("MOELAB_REGISTRY", str(tmp_path / "registry.jsonl"))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,'
                                      ' "num_local_experts": 4, "num_experts_per_tok": 2,'
                                      ' "intermediate_size": 128, "vocab_size": 300}')
    info = register_checkpoint("my-grpo-step10", ckpt, base_model="toy-d64-E4-k2", step=10)
    assert resolve("my-grpo-step10").local_path == str(ckpt.resolve())
    assert (info.base_model, info.step, info.num_experts) == ("toy-d64-E4-k2", 10, 4)
    assert resolve(str(ckpt)).total_params == info.total_params


def _run_cli(args):
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(args)
    return code, out.getvalue()


def test_cli_csv_header_and_filters():
    code, text = _run_cli(["checkpoints", "--format", "csv", "--d-model", "512", "--top-k", "2", "--experts", "8,16"])
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(text)))
    header = text.splitlines()[0]
    assert header.startswith("name,hf_id,domain,d_model,num_layers,num_heads,num_experts,top_k")
    for col in ["total_params", "active_params", "tpp", "density"]:
        assert col in header
    assert {r["name"] for r in rows} == {"d512-E8-k2", "d512-E16-k2", "code-d512-E8-k2"}


def test_cli_unknown_show_exits_2(capsys):
    assert main(["checkpoints", "--show", "d512-E9-k2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "d512-E8-k2" in err
