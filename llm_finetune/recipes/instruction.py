"""The instruction-tuning recipe (Dolly -> Llama-2, or a Mixtral MoE): chat-formatted SFT with TRL, LoRA or QLoRA."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from llm_finetune.recipes.base import (
    ApprovalPolicy,
    DataSource,
    EvaluationParams,
    Precision,
    RecipeBase,
    RegistrySpec,
    Strict,
    TrainingLoopParams,
)
from llm_finetune.recipes.paths import CwdPath

MIXTRAL_EXPERT_PARAMETERS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
ATTENTION_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]


class InstructionData(DataSource):
    """Instruction/response records (Dolly layout by default) and how they become chat turns."""

    shape_module: ClassVar[str] = "llm_finetune.data.instructions"  # its record rules: a DataShape named SHAPE

    instruction_field: str = Field("instruction", description="The user's request")
    context_field: str | None = Field(
        "context", description="Supporting text appended to the instruction when a record has any (may be empty); "
        "null when the data has no such field")
    response_field: str = Field("response", description="The answer the model learns to give")
    category_field: str | None = Field(
        "category", description="Optional record category (kept for reports); null when the data has none")
    system_prompt: str | None = Field(
        None, description="System message put before every instruction (Llama-2 `<<SYS>>` block); none by default")
    max_length: int = Field(
        1024, gt=8, description="Tokens per training sequence (prompt + response); longer ones are cut at the end. "
        "A record whose prompt alone fills it has no response left to learn from")
    overlong_records: Literal["fail", "drop"] = Field(
        "fail", description="What to do with records whose response is cut away entirely by max_length: 'fail' "
        "names them and stops before training; 'drop' skips them and reports how many")


class TinyCausalSpec(Strict):
    """A randomly initialised Llama or Mixtral built from a config, with a byte-level BPE tokenizer trained on the
    training split (works offline)."""

    family: Literal["llama", "mixtral", "mistral", "falcon", "gpt2", "gemma2"] = Field(
        "llama", description="llama: dense (Llama-2); mixtral: MoE; mistral: dense, Mistral-7B's architecture; falcon "
        "(Falcon-7B layout: multi-query, parallel attention), gpt2, gemma2: the stand-ins of those Hub models")
    vocab_size: int = Field(2000, ge=300, description="BPE vocabulary size incl. 256 byte symbols and 4 specials")
    hidden_size: int = Field(64, gt=0)
    num_hidden_layers: int = Field(2, gt=0)
    num_attention_heads: int = Field(4, gt=0)
    num_key_value_heads: int = Field(2, gt=0, description="Fewer than attention heads = grouped-query attention")
    intermediate_size: int = Field(128, gt=0, description="MLP width (per expert for mixtral)")
    max_position_embeddings: int = Field(2048, gt=0)
    initializer_range: float | None = Field(
        None, gt=0, description="Std of the random weights; default 1/sqrt(hidden_size). Llama's 0.02 suits widths in "
        "the thousands: at a tiny width it leaves near-uniform logits that LoRA adapters can hardly move")
    tie_word_embeddings: bool = Field(
        False, description="Share the input embeddings with the output head (as Falcon-7B and GPT-2 do). A model "
        "that must copy tokens from its prompt (extractive answers) learns it far more easily: a token's own "
        "embedding then scores that token")
    num_local_experts: int = Field(4, gt=1, description="mixtral only: experts per layer")
    num_experts_per_tok: int = Field(2, gt=0, description="mixtral only: experts each token is routed to")
    seed: int = 0

    @model_validator(mode="after")
    def _shapes(self) -> TinyCausalSpec:
        problems = []
        if self.hidden_size % self.num_attention_heads:
            problems.append("hidden_size must be a multiple of num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            problems.append("num_attention_heads must be a multiple of num_key_value_heads")
        if self.num_experts_per_tok > self.num_local_experts:
            problems.append("num_experts_per_tok must be <= num_local_experts")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class CausalModelSpec(Strict):
    """Base model: a Hub id or local directory (e.g. meta-llama/Llama-2-7b-hf), or a tiny offline model."""

    name_or_path: CwdPath | None = Field(None, description="Hub id or local directory of a causal LM with a tokenizer")
    tiny: TinyCausalSpec | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> CausalModelSpec:
        if (self.name_or_path is None) == (self.tiny is None):
            raise ValueError("set exactly one of 'name_or_path' or 'tiny'")
        return self


class QuantizationSpec(Strict):
    """QLoRA: the frozen base is loaded in 4 bits with bitsandbytes; only the LoRA adapters train."""

    load_in_4bit: bool = Field(False, description="Load the base model's linear layers in 4 bits (needs lora.enabled)")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="nf4 as in the QLoRA paper")
    compute_dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="dtype the 4-bit weights are dequantized to for each matmul")
    double_quant: bool = Field(False, description="Also quantize the quantization constants (saves ~0.4 bit/param)")


class LoraSpec(Strict):
    """LoRA adapters (peft). Disabled = full fine-tune of every weight."""

    enabled: bool = True
    r: int = Field(16, gt=0, description="Adapter rank; higher adapts more and costs more memory")
    alpha: int = Field(32, gt=0, description="Scale: the adapter's update is multiplied by alpha / r")
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: str | list[str] = Field(
        "all-linear", description="Linear layers to adapt: 'all-linear' (every linear layer but the output head; "
        "on a MoE model this includes the router 'mlp.gate') or names such as [q_proj, k_proj, v_proj, o_proj]")
    target_parameters: list[str] = Field(
        default_factory=list, description="Parameters (not modules) to adapt, for fused MoE experts: "
        f"{MIXTRAL_EXPERT_PARAMETERS} on Mixtral")
    quantization: QuantizationSpec = Field(default_factory=QuantizationSpec)

    @model_validator(mode="after")
    def _quantized_needs_adapters(self) -> LoraSpec:
        if self.quantization.load_in_4bit and not self.enabled:
            raise ValueError("quantization.load_in_4bit needs enabled: true (4-bit weights cannot be trained directly)")
        return self


class SFTParams(TrainingLoopParams):
    """Hyperparameters passed to TRL's SFTTrainer (SFTConfig)."""

    epochs: float = Field(3.0, gt=0)
    learning_rate: float = Field(2e-4, gt=0, description="2e-4 suits LoRA; use ~2e-5 for a full fine-tune")
    per_device_train_batch_size: int = Field(4, gt=0)
    warmup: float = Field(0.03, ge=0, description="Warm-up: a fraction of all steps if < 1, else a step count")
    completion_only_loss: bool = Field(True, description="Learn only the response tokens (the prompt is masked)")
    packing: bool = Field(
        True, description="Pack several records into each max_length row, padding-free (TRL 'bfd'): no compute is "
        "spent on padding, and records never attend to each other (attention is bounded by position_ids). Not for "
        "Falcon, whose attention ignores position_ids on CPU (the run refuses it)")
    packing_layout: Literal["auto", "rows", "flat"] = Field(
        "auto", description="How packed rows reach the model. rows: a batch of max_length rows, records bounded by "
        "position_ids (one max_length^2 block mask per row; the fastest with SDPA or eager attention). flat: the whole "
        "batch as one row (TRL's padding-free collator; for flash-attention varlen kernels, which skip the mask; "
        "with SDPA it attends over a (batch x max_length)^2 mask). auto: flat under flash attention, else rows")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field(
        "sdpa", description="Attention kernel for training: sdpa (PyTorch's, any device), eager, or flash_attention_2 "
        "(CUDA with the flash-attn package installed; packing_layout auto then feeds packed rows flattened)")
    precision: Precision = Field(
        "auto", description="auto: bf16 mixed precision where the hardware computes bf16 natively (a GPU that "
        "supports it, a CPU with AVX512-BF16 or AMX), else fp32. Trained weights stay fp32; under LoRA the frozen base "
        "is loaded in bf16")
    activation_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less memory, ~20-50% slower")


class CausalEvaluationParams(EvaluationParams):
    """Generation-based evaluation (ROUGE-L of responses) and perplexity on the validation split."""

    batch_size: int = Field(8, gt=0)


class InstructionRecipe(RecipeBase):
    """Everything one instruction-tuning run needs. Metrics: 'loss' and 'perplexity' on held-out response tokens
    (lower is better), ROUGE of greedy responses (higher is better)."""

    METRICS = {"loss": "lower", "perplexity": "lower",
               **dict.fromkeys(("rouge1", "rouge2", "rougeL", "rougeLsum"), "higher")}

    name: str = "dolly-llama2"
    data: InstructionData
    model: CausalModelSpec
    lora: LoraSpec = Field(default_factory=LoraSpec)
    training: SFTParams = Field(default_factory=SFTParams)
    evaluation: CausalEvaluationParams = Field(default_factory=CausalEvaluationParams)
    registry: RegistrySpec = Field(
        default_factory=lambda: RegistrySpec(experiment="dolly-llama2", model_name="dolly-llama2")
    )
    approval: ApprovalPolicy = Field(
        default_factory=lambda: ApprovalPolicy(min_relative_decrease={"perplexity": 0.05})
    )
