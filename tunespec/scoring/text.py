"""Text similarity against a reference: normalised Levenshtein distance and ROUGE-L F1."""

from __future__ import annotations

import re

from tunespec.scoring import Score


def levenshtein_ratio(a: str, b: str) -> float:
    """1 - edit distance / length of the longer text (1.0 for two empty texts)."""
    if a == b:
        return 1.0
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return 1.0 - previous[-1] / max(len(a), 1)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1: the longest common subsequence of lowercased words, as precision and recall."""
    c, r = _words(candidate), _words(reference)
    if not c or not r:
        return 1.0 if c == r else 0.0
    previous = [0] * (len(r) + 1)
    for wc in c:
        current = [0]
        for j, wr in enumerate(r, 1):
            current.append(previous[j - 1] + 1 if wc == wr else max(previous[j], current[j - 1]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(c), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def score_levenshtein(output: str, reference: str) -> Score:
    return Score(levenshtein_ratio(output.strip(), reference.strip()))


def score_rouge_l(output: str, reference: str) -> Score:
    return Score(rouge_l(output, reference))
