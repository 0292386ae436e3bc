from llm_finetune.models.tiny_diffusion import BOS, EOS, train_clip_tokenizer


def test_clip_tokenizer_trained_offline_in_clip_layout():
    tokenizer = train_clip_tokenizer(["a photo of three apples", "a photo of one cat", "two cars"], vocab_size=560)
    ids = tokenizer("A Photo of three apples").input_ids
    assert len(tokenizer) > 514  # 512 byte symbols, merges, BOS, EOS: not a 2-token stand-in
    assert ids[0] == tokenizer.bos_token_id == len(tokenizer) - 2 and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.eos_token_id == len(tokenizer) - 1 and tokenizer.bos_token_id != 0  # OWL: EOS max, BOS not 0
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a photo of three apples"  # CLIP lowercases
    assert len(ids) < len("a photo of three apples")  # merges learnt
    assert (BOS, EOS) == (tokenizer.bos_token, tokenizer.eos_token)
    assert tokenizer("x", padding="max_length").input_ids.__len__() == 77
