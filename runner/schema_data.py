"""The chat-data section of a manifest (`train.data`, `kd_cache.data`): a HF dataset id or a local JSONL."""

from __future__ import annotations

from typing import ClassVar

from pydantic import model_validator

from qc2c.config import TrainDataConfig
from runner.schema_types import NonEmptyStr, PositiveInt, Section


class TrainData(Section):
    """A Hugging Face dataset id or a local JSONL of chat conversations (exactly one)."""

    config_type: ClassVar[type] = TrainDataConfig
    dataset: NonEmptyStr | None = TrainDataConfig.dataset
    jsonl: NonEmptyStr | None = TrainDataConfig.jsonl
    split: NonEmptyStr = TrainDataConfig.split
    limit: PositiveInt | None = TrainDataConfig.limit
    max_length: PositiveInt = TrainDataConfig.max_length

    @model_validator(mode="after")
    def _exactly_one_source(self) -> TrainData:
        if (self.dataset is None) == (self.jsonl is None):
            raise ValueError("exactly one of dataset / jsonl is required")
        return self
