"""Text tokenisation shared by training and serving, so that both see exactly the same ids.

A review becomes the set of its word n-grams (a binary bag: repeating a word does not shout
louder), mapped to ids by a vocabulary fitted on the training split. Id 0 is padding; n-grams
outside the vocabulary are dropped. An `ordered` tokenizer (for sequence models such as the
LSTM baseline) keeps the known words in text order instead, repeats included. Pure Python +
numpy: the serving path imports it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

PAD_ID = 0
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[!?]")


class Tokenizer:
    def __init__(
        self, vocab: dict[str, int], ngram_max: int, max_ids: int, ordered: bool = False
    ) -> None:
        self.vocab = vocab
        self.ngram_max = ngram_max
        self.max_ids = max_ids
        self.ordered = ordered

    @property
    def vocab_size(self) -> int:
        """Embedding rows needed: every id plus the padding row."""
        return len(self.vocab) + 1

    @staticmethod
    def words(text: str) -> list[str]:
        return _WORD.findall(_HTML_BREAK.sub(" ", text).lower())

    def ngrams(self, text: str) -> set[str]:
        words = self.words(text)
        grams = set(words)
        for n in range(2, self.ngram_max + 1):
            grams.update(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
        return grams

    def encode(self, text: str) -> np.ndarray:
        """Sorted unique ids of the text's known n-grams, or with `ordered` the ids of its known
        words in text order (at most `max_ids`, the first ones; may be empty)."""
        vocab = self.vocab
        if self.ordered:
            ids = [vocab[w] for w in self.words(text) if w in vocab]
        else:
            ids = sorted({vocab[g] for g in self.ngrams(text) if g in vocab})
        return np.asarray(ids[: self.max_ids], dtype=np.int64)

    @classmethod
    def fit(
        cls,
        texts: Iterable[str],
        ngram_max: int,
        min_docs: int,
        max_vocab: int,
        max_ids: int,
        ordered: bool = False,
    ) -> Tokenizer:
        """Keep the n-grams that occur in at least `min_docs` texts, most frequent first."""
        if ordered and ngram_max != 1:
            raise ValueError("an ordered tokenizer yields words, so ngram_max must be 1")
        shell = cls({}, ngram_max, max_ids)
        doc_freq: Counter[str] = Counter()
        for text in texts:
            doc_freq.update(shell.ngrams(text))
        kept = [g for g, c in doc_freq.most_common(max_vocab) if c >= min_docs]
        return cls({g: i + 1 for i, g in enumerate(kept)}, ngram_max, max_ids, ordered)

    def save(self, path: Path) -> None:
        tokens = sorted(self.vocab, key=self.vocab.__getitem__)
        config = {"ngram_max": self.ngram_max, "max_ids": self.max_ids, "pad_id": PAD_ID}
        if self.ordered:  # absent otherwise, so the bag-of-n-grams files stay byte-identical
            config["ordered"] = True
        path.write_text(json.dumps({"config": config, "tokens": tokens}, separators=(",", ":")))

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        data = json.loads(path.read_text())
        config = data["config"]
        vocab = {token: i + 1 for i, token in enumerate(data["tokens"])}
        ordered = bool(config.get("ordered", False))
        return cls(vocab, int(config["ngram_max"]), int(config["max_ids"]), ordered)
