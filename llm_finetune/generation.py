"""Generation settings: the one home of their defaults and bounds (recipes, evaluation, pyfunc, endpoint requests)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError


class GenerationParams(BaseModel):
    """Keyword arguments for `model.generate`; every field is range-checked, unknown ones are refused."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(64, ge=1, le=2048, description="Most tokens generated per summary")
    num_beams: int = Field(1, ge=1, le=16, description="1 is greedy search")
    no_repeat_ngram_size: int = Field(
        0, ge=0, le=64, description="Never repeat an n-gram of this size; 0 turns it off"
    )
    # 1.2: the fine-tuned tiny model loops ("to to to ...") without it; it beat no_repeat_ngram_size 2 and 3 on
    # ROUGE-L, which also forbid the repeats that half the references contain (benchmarks/generation_settings.py).
    repetition_penalty: float = Field(
        1.2, gt=0, le=10, description="Above 1 discourages tokens already generated; 1.0 turns it off"
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans(cls, v):
        # pydantic would read true as 1: in a request that is a mistake, not a number.
        if isinstance(v, bool):
            raise PydanticCustomError("number_not_bool", "Input should be a number, not a boolean")
        return v
