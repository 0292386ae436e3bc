"""Raw text documents for causal-LM pretraining: intake rules, document identity, which documents a run trains on
(new ones plus a replayed share of seen ones), and tokenized documents packed into fixed blocks with EOS between
documents and no padding (Hugging Face `run_clm`'s `group_texts`, CodeParrot's `ConstantLengthDataset`)."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel

from llm_finetune.data.intake import FieldRule, ValidatedData, intake, source_listing
from llm_finetune.data.shapes import DataShape
from llm_finetune.errors import DataValidationError
from llm_finetune.fingerprint import build_once, fingerprint, name_or_path_key
from llm_finetune.kinds import EndpointTestCase
from llm_finetune.recipes import PerplexityEvaluationParams, RawTextData

DOCUMENTS_FILE = "llmft_documents.json"  # in a trained model's folder: every document it has been trained on
IN_DOMAIN, OUT_OF_DOMAIN = "in_domain", "out_of_domain"  # held-out set names: the validation split, all others


def raw_text_rules(data: RawTextData) -> list[FieldRule]:
    return [FieldRule(data.text_field)]


def document_key(text: str) -> str:
    """A document's identity: the hash of its text (the same text in two files is one document)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def documents(validated: ValidatedData, split: str, text_field: str, limit: int | None = None) -> list[str]:
    return validated.load(split, limit)[text_field]


def seen_documents(model_dir: str | Path) -> set[str]:
    """Keys of the documents a model was trained on; empty for a model this project did not train."""
    path = Path(model_dir) / DOCUMENTS_FILE
    return set(json.loads(path.read_text())["documents"]) if path.exists() else set()


class DocumentSelection(BaseModel):
    """Which corpus documents one training run uses, and why the others are left out."""

    corpus: int  # documents in the training split
    new: int  # not seen by the starting model: all trained on
    replayed: int  # seen before, drawn again to limit forgetting
    seen_not_replayed: int
    duplicates: int  # same text as an earlier document
    held_out: int  # same text as a held-out (validation) document: never trained on
    replay_share: float


def select_documents(texts: Sequence[str], seen: set[str], held_out: set[str], replay_share: float,
                     seed: int) -> tuple[list[str], DocumentSelection]:
    """Every unseen document plus seen ones drawn at random so they make `replay_share` of the mix (as many as
    there are); duplicates and held-out documents are left out. Order: the corpus order, so runs are reproducible."""
    new, old, duplicates, excluded, keys = [], [], 0, 0, set()
    for i, text in enumerate(texts):
        key = document_key(text)
        if key in keys:
            duplicates += 1
        elif key in held_out:
            excluded += 1
        else:
            (old if key in seen else new).append(i)
        keys.add(key)
    wanted = round(len(new) * replay_share / (1 - replay_share)) if new else 0
    replayed = sorted(random.Random(seed).sample(old, min(wanted, len(old))))
    chosen = sorted(new + replayed)
    return [texts[i] for i in chosen], DocumentSelection(
        corpus=len(texts), new=len(new), replayed=len(replayed), seen_not_replayed=len(old) - len(replayed),
        duplicates=duplicates, held_out=excluded, replay_share=replay_share)


# ---------------------------------------------------------------------------------------------------------------
# Tokenizing and packing


def tokenize_documents(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each document without special tokens (packing adds EOS itself)."""
    if not texts:
        return []
    return tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]


def pack_blocks(token_lists: Iterable[list[int]], block_size: int, eos_id: int, *,
                keep_remainder: bool = False) -> list[list[int]]:
    """Documents concatenated with EOS after each, cut into blocks of exactly block_size tokens. The tokens after
    the last full block are dropped (run_clm), or kept as one shorter last block (evaluation)."""
    stream: list[int] = []
    for ids in token_lists:
        stream.extend(ids)
        stream.append(eos_id)
    full = len(stream) // block_size * block_size
    blocks = [stream[i : i + block_size] for i in range(0, full, block_size)]
    if keep_remainder and full < len(stream):
        blocks.append(stream[full:])
    return blocks


class PackedBlocks(BaseModel):
    """Training blocks on disk (a DatasetDict with split 'train', column 'input_ids') and what went into them."""

    path: str
    fingerprint: str
    block_size: int
    documents: int
    blocks: int
    tokens: int  # in blocks: what one epoch trains on
    dropped_tokens: int  # after the last full block
    documents_file: str  # keys of every document the trained model will have seen (starting model's + these)
    reused: bool = False


def prepare_blocks(texts: Sequence[str], tokenizer_dir: str, block_size: int, cache_root: str | Path, *,
                   seen_before: set[str] = frozenset()) -> PackedBlocks:
    """Tokenize and pack `texts` into training blocks, once per (texts, tokenizer, block size)."""
    from transformers import AutoTokenizer

    keys = [document_key(t) for t in texts]
    key = fingerprint("packed-blocks-v1", keys, name_or_path_key(tokenizer_dir, (".json", ".txt", ".model")),
                      block_size, sorted(seen_before))
    out = Path(cache_root) / key
    with build_once(out) as needed:
        if needed:
            import datasets
            import pyarrow as pa

            if not texts:
                raise ValueError("no documents to pack")
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
            token_lists = tokenize_documents(tokenizer, texts)
            blocks = pack_blocks(token_lists, block_size, tokenizer.eos_token_id)
            if not blocks:
                total = sum(len(t) + 1 for t in token_lists)
                raise ValueError(f"{len(texts)} documents make {total} tokens, fewer than one block of "
                                 f"{block_size}: add documents or lower data.block_size")
            # A given fingerprint: else datasets hashes the table with dill, whose disassembly a flow with
            # log_prints would log line by line.
            table = datasets.Dataset(pa.Table.from_pydict({"input_ids": blocks}), fingerprint=key)
            datasets.DatasetDict({"train": table}).save_to_disk(str(out / "dataset"))
            # Inside the dataset folder: the one folder a trainer (or a SageMaker channel) gets.
            documents_file = out / "dataset" / DOCUMENTS_FILE
            documents_file.write_text(json.dumps({"documents": sorted(set(keys) | set(seen_before))}))
            packed = PackedBlocks(
                path=str(out / "dataset"), fingerprint=key, block_size=block_size, documents=len(texts),
                blocks=len(blocks), tokens=len(blocks) * block_size,
                dropped_tokens=sum(len(t) + 1 for t in token_lists) - len(blocks) * block_size,
                documents_file=str(documents_file))
            (out / "packed.json").write_text(packed.model_dump_json(indent=2))
    return PackedBlocks.model_validate_json((out / "packed.json").read_text()).model_copy(
        update={"reused": not needed})


def continuation_prompts(texts: Sequence[str], tokenizer_dir: str, prompt_tokens: int) -> list[str]:
    """The first `prompt_tokens` tokens of each document, as text: what a model is asked to continue."""
    return [case.inputs for case in continuation_test_cases(texts, tokenizer_dir, prompt_tokens, len(texts))]


def continuation_test_cases(texts: Sequence[str], tokenizer_dir: str, prompt_tokens: int,
                            limit: int) -> list[EndpointTestCase]:
    """Held-out documents cut after `prompt_tokens` tokens: the start is the prompt, the next as many tokens the
    reference."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    cases = []
    for i, ids in enumerate(tokenize_documents(tokenizer, texts[:limit])):
        cases.append(EndpointTestCase(id=str(i), inputs=tokenizer.decode(ids[:prompt_tokens]),
                                      reference=tokenizer.decode(ids[prompt_tokens : 2 * prompt_tokens])))
    return cases


def validate_held_out_sets(params: PerplexityEvaluationParams, work_dir: str | Path) -> dict[str, ValidatedData]:
    """Every out-of-domain set through the intake layer (all problems at once), before any training."""
    checked, problems = {}, []
    for name, held_out in params.out_of_domain.items():
        try:
            checked[name] = intake({"validation": held_out.uri}, [FieldRule(held_out.text_field)],
                                   fmt=held_out.format, work_dir=work_dir)
        except DataValidationError as e:
            problems.extend(e.problems)
    if problems:
        raise DataValidationError(problems)
    return checked


def held_out_texts(validated: ValidatedData, data: RawTextData, params: PerplexityEvaluationParams,
                   out_of_domain: dict[str, ValidatedData]) -> dict[str, list[str]]:
    """Documents of each held-out set: the validation split as 'in_domain', then each out-of-domain set."""
    sets = {IN_DOMAIN: documents(validated, "validation", data.text_field, params.max_documents)}
    for name, held_out in params.out_of_domain.items():
        sets[name] = documents(out_of_domain[name], "validation", held_out.text_field, held_out.max_documents)
    return sets


# ---------------------------------------------------------------------------------------------------------------
# Has the corpus changed since the last successful run?


class CorpusCheck(BaseModel):
    """The corpus listing's fingerprint now and at the end of the last successful run."""

    uri: str
    fingerprint: str | None  # None: the source cannot be listed (hf://); its documents are compared instead
    files: int
    last_trained: str | None

    @property
    def unchanged(self) -> bool:
        return self.fingerprint is not None and self.fingerprint == self.last_trained


def corpus_fingerprint(uri: str, s3=None) -> tuple[str | None, int]:
    """(fingerprint of the listing: every file's name and content hash or ETag, number of files); nothing is read
    beyond the listing for S3."""
    listing = source_listing(uri, s3=s3)
    return (None, 0) if listing is None else (fingerprint("corpus-listing-v1", listing), len(listing))


class _RawTextShape(DataShape):
    def rules(self, data):
        return raw_text_rules(data)


SHAPE = _RawTextShape()
