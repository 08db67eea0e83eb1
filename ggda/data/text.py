"""Turning sentence pairs into fixed-length token ids: a built-in word tokenizer, or a Hugging Face one."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import torch

PAD, UNK, CLS, SEP = "[PAD]", "[UNK]", "[CLS]", "[SEP]"
_TOKEN = re.compile(r"\w+|[^\w\s]")


def _words(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


class WordTokenizer:
    """A deterministic word-level tokenizer whose vocabulary is built from the training pairs.

    Used offline with the tiny randomly initialised BERT: it needs no download. Ids 0-3 are
    [PAD], [UNK], [CLS], [SEP]; then words by decreasing training frequency (ties alphabetical),
    at most ``vocab_size`` ids in all.
    """

    def __init__(self, pairs: Sequence[tuple[str, str]], vocab_size: int = 30000):
        counts = Counter(w for q, s in pairs for w in _words(q) + _words(s))
        words = sorted(counts, key=lambda w: (-counts[w], w))[: max(vocab_size - 4, 0)]
        self.vocab = {tok: i for i, tok in enumerate([PAD, UNK, CLS, SEP, *words])}

    def __len__(self) -> int:
        return len(self.vocab)

    def encode_pairs(self, pairs: Sequence[tuple[str, str]], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return input ids and attention mask, both int64 (n, max_length): [CLS] q [SEP] s [SEP], padded.

        Too-long pairs are truncated from the end of the sentence, then of the question.
        """
        ids = torch.zeros(len(pairs), max_length, dtype=torch.int64)
        mask = torch.zeros(len(pairs), max_length, dtype=torch.int64)
        unk = self.vocab[UNK]
        budget = max_length - 3
        for row, (q, s) in enumerate(pairs):
            qi = [self.vocab.get(w, unk) for w in _words(q)]
            si = [self.vocab.get(w, unk) for w in _words(s)]
            si = si[: max(budget - len(qi), 0)]
            qi = qi[: budget - len(si)]
            seq = [self.vocab[CLS], *qi, self.vocab[SEP], *si, self.vocab[SEP]]
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        return ids, mask


def encode(
    train_pairs: Sequence[tuple[str, str]],
    test_pairs: Sequence[tuple[str, str]],
    tokenizer: str | None,
    max_length: int,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], int, str]:
    """Tokenise both splits. Returns (train ids, mask), (test ids, mask), vocabulary size, tokenizer name.

    tokenizer: None for the built-in :class:`WordTokenizer` (fitted on ``train_pairs``), else a Hugging
        Face tokenizer name (e.g. "bert-base-uncased", fetched from the hub) or a local folder; needs the
        ``text`` extra (transformers).
    """
    if tokenizer is None:
        tok = WordTokenizer(train_pairs)
        return tok.encode_pairs(train_pairs, max_length), tok.encode_pairs(test_pairs, max_length), len(tok), "word"
    try:
        from transformers import AutoTokenizer
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"tokenizer={tokenizer!r} needs transformers: pip install -e '.[text]'"
        ) from err
    hf = AutoTokenizer.from_pretrained(tokenizer)

    def run(pairs):
        out = hf([q for q, _ in pairs], [s for _, s in pairs], truncation=True,
                 padding="max_length", max_length=max_length, return_tensors="pt")
        return out["input_ids"].long(), out["attention_mask"].long()

    return run(train_pairs), run(test_pairs), hf.vocab_size, tokenizer
