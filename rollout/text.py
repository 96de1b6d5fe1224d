"""An offline word-level tokenizer over the editworld instruction vocabulary (no hub, no downloads).

Built with ``tokenizers`` (WordLevel model, lower-casing, whitespace split, ``[BOS] ... [EOS]`` template) and
wrapped in ``transformers.PreTrainedTokenizerFast`` so it saves and loads like any tokenizer. Ids 0-3 are the
special tokens ``[PAD] [UNK] [BOS] [EOS]``; words outside the vocabulary become ``[UNK]``.
"""

from __future__ import annotations

from typing import Any, Iterable

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)


def editworld_words() -> list[str]:
    """The words the editworld instruction grammar can produce."""
    from editworld.instructions import VOCABULARY

    return list(VOCABULARY)


def build_word_tokenizer(words: Iterable[str], max_length: int = 16) -> Any:
    """A ``PreTrainedTokenizerFast`` over ``words`` (plus the special tokens), padding to ``max_length``."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for w in sorted({w.lower() for w in words}):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[BOS] $A [EOS]",
                                                       special_tokens=[("[BOS]", BOS_ID), ("[EOS]", EOS_ID)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]",
                                   eos_token="[EOS]", model_max_length=max_length, padding_side="right")
