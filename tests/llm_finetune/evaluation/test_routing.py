import pytest

from llm_finetune.evaluation.causal import expert_routing_shares, routing_heatmap_png, routing_shares_markdown
from tests.tiny_causal import bias_router_toward, build_tiny_causal, dolly_records, one_torch_thread


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    with one_torch_thread():
        yield



@pytest.fixture(scope="module")
def mixtral(tmp_path_factory):
    return build_tiny_causal(tmp_path_factory.mktemp("mixtral"), "mixtral")


@pytest.fixture(scope="module")
def collapsed(mixtral, tmp_path_factory):
    return bias_router_toward(mixtral, tmp_path_factory.mktemp("collapsed"), expert=0)


def texts() -> list[str]:
    """Texts of different lengths: batches carry padding."""
    return [r["prompt"][1]["content"] + " " + r["completion"][0]["content"] for r in dolly_records("train", 6)]


def test_shares_sum_to_one_per_layer_and_ignore_padding(mixtral):
    batched = expert_routing_shares(mixtral, texts(), batch_size=6)
    assert len(batched) == 2 and all(len(row) == 4 for row in batched)
    assert all(sum(row) == pytest.approx(1.0) for row in batched)
    assert all(max(row) <= 0.5 + 1e-9 for row in batched)  # top-2: one expert gets at most every token once
    single = expert_routing_shares(mixtral, texts(), batch_size=1)
    assert all(b == pytest.approx(s) for b, s in zip(batched, single))  # padded positions are not counted


def test_router_biased_toward_expert_0_shows_it_dominant(mixtral, collapsed):
    base = expert_routing_shares(mixtral, texts(), batch_size=6)
    biased = expert_routing_shares(collapsed, texts(), batch_size=6)
    for row in biased:
        assert row[0] == pytest.approx(0.5)  # chosen for every token
        assert row[0] > max(row[1:])
        assert sum(row) == pytest.approx(1.0)
    assert min(row[0] for row in base) < 0.5  # the unbiased model does not route every token to expert 0


def test_routing_report_markdown_and_heatmap(mixtral, collapsed, tmp_path):
    from matplotlib.image import imread

    base = expert_routing_shares(mixtral, texts(), batch_size=6)
    biased = expert_routing_shares(collapsed, texts(), batch_size=6)
    md = routing_shares_markdown(base, biased)
    layer_rows = [line for line in md.splitlines() if line.startswith(("| 0 |", "| 1 |"))]
    assert len(layer_rows) == 2
    for layer, line in enumerate(layer_rows):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1] == f"{base[layer][0]:.3f} -> 0.500"
        assert cells[5] == f"{max(base[layer]):.3f} -> 0.500"
    assert "even routing: 0.250" in md

    png = routing_heatmap_png(base, biased, tmp_path / "routing.png")
    image = imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 300
    assert image[..., :3].std() > 0.05  # something is drawn
    with pytest.raises(ValueError, match=r"base \(2, 4\), fine-tuned \(2, 3\)"):
        routing_shares_markdown(base, [row[:3] for row in biased])


def test_dense_model_has_no_routing(tmp_path):
    llama = build_tiny_causal(tmp_path / "llama", "llama")
    with pytest.raises(ValueError, match="not a mixture-of-experts model"):
        expert_routing_shares(llama, ["hello"])
