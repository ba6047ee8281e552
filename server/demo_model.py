"""The bundled demo chat model: a real SavedModel that answers questions about TF Serving.

serving_default takes `text` (DT_STRING, [-1]) and returns `reply` (DT_STRING, [-1]) and
`confidence` (DT_FLOAT, [-1]). Everything happens in the graph: the text is lower-cased, split
into word unigrams, bigrams and character trigrams, hashed into buckets, weighted TF-IDF style
and compared by cosine similarity with the questions in demo_data/qa.json; the best pair's answer
is the reply, or a fallback below a confidence floor. Version 2 names the topic and adds detail,
so a version switch shows in the chat.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from core.identity import DEMO_MODEL_NAME, DEMO_MODEL_REVISION, DEMO_MODEL_REVISION_FILE

QA_PATH = Path(__file__).resolve().parent / "demo_data" / "qa.json"

# Hash buckets of the feature vector. The question matrix is [HASH_BUCKETS, questions]; a query
# touches only the few dozen rows of its own n-grams, so similarity gathers those rows instead of
# multiplying by the whole matrix (27 MB read per request for 409 questions).
HASH_BUCKETS = 16384
CHAR_NGRAM_WIDTH = 3
# Character trigrams are many and individually weak; they mostly rescue typos and word forms.
CHAR_NGRAM_WEIGHT = 0.5
# Below this cosine similarity the model admits it does not know rather than guess.
CONFIDENCE_FLOOR = 0.3
SERVING_SIGNATURE = "serving_default"
# Function words dropped before hashing: "what is a ..." must not outweigh the one word that
# carries the question ("label", "canary"). Content words such as "who" or "you" stay.
STOPWORDS = tuple(
    "a an the is are was be do does did what whats how i my me to of in on for and or it its "
    "can this that with there should work works".split()
)
_STOPWORD_PATTERN = r"\b(?:" + "|".join(STOPWORDS) + r")\b"


@dataclass(frozen=True)
class QaPair:
    """One answer and the questions that lead to it."""

    topic: str
    questions: tuple[str, ...]
    answer: str
    detail: str


@dataclass(frozen=True)
class QaSet:
    """The bundled question/answer pairs and the fallback replies per version."""

    pairs: tuple[QaPair, ...]
    fallback_by_version: dict[int, str]


def load_qa(path: Path = QA_PATH) -> QaSet:
    """Read the question/answer pairs from a qa.json file."""
    document = json.loads(path.read_text(encoding="utf-8"))
    pairs = tuple(
        QaPair(
            topic=entry["topic"],
            questions=tuple(entry["questions"]),
            answer=entry["answer"],
            detail=entry["detail"],
        )
        for entry in document["pairs"]
    )
    fallback = {int(key.removeprefix("v")): text for key, text in document["fallback"].items()}
    return QaSet(pairs=pairs, fallback_by_version=fallback)


def reply_for(pair: QaPair, version: int) -> str:
    """The reply a model version gives for a pair: v1 is terse, later versions add detail."""
    if version == 1:
        return pair.answer
    return f"**{pair.topic}** — {pair.answer} {pair.detail}"


def fallback_for(qa: QaSet, version: int) -> str:
    """The reply a model version gives when nothing matches well enough."""
    return qa.fallback_by_version.get(version, qa.fallback_by_version[max(qa.fallback_by_version)])


def ngrams(text: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Every n-gram of a batch of strings, flat: (row, hash bucket, weight) per n-gram.

    Word unigrams and bigrams weigh 1, character trigrams of each word marked `<word>` weigh
    CHAR_NGRAM_WEIGHT. Built from flat tensors in a few dozen ops (ragged n-gram ops take
    ~250 graph nodes per run); a pair that would cross two rows or two words gets weight 0,
    which adds nothing to any count.
    """
    # Invalid UTF-8 must not fail the request: replace bad bytes before any unicode-aware op.
    valid = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
    lowered = tf.strings.lower(valid, encoding="utf-8")
    spaced = tf.strings.regex_replace(lowered, r"[^\pL\pN]+", " ")
    # Letters and digits separated by spaces, no space at either end.
    normalized = tf.strings.strip(tf.strings.regex_replace(spaced, _STOPWORD_PATTERN, " "))
    # tf.strings.split's op: an empty separator splits on runs of whitespace.
    split = tf.raw_ops.StringSplitV2(input=normalized, sep="")
    words, word_row = split.values, split.indices[:, 0]
    bigrams = tf.strings.join([words[:-1], words[1:]], separator=" ")
    # Character trigrams over each row's words written <one><two>: those spanning two words
    # contain "><".
    marked = tf.strings.join(["<", tf.strings.regex_replace(normalized, " +", "><"), ">"])
    char_splits, codepoints = tf.raw_ops.UnicodeDecode(
        input=marked, input_encoding="UTF-8", errors="replace", replacement_char=0xFFFD
    )
    chars = tf.raw_ops.UnicodeEncode(
        input_values=codepoints,
        input_splits=tf.range(tf.size(codepoints, out_type=tf.int64) + 1),
        output_encoding="UTF-8",
        errors="replace",
        replacement_char=0xFFFD,
    )
    trigrams, trigram_splits = tf.raw_ops.StringNGrams(
        data=chars,
        data_splits=char_splits,
        separator="",
        ngram_widths=[CHAR_NGRAM_WIDTH],
        left_pad="",
        right_pad="",
        pad_width=0,
        preserve_short_sequences=False,
    )
    trigram_row = tf.searchsorted(
        trigram_splits[1:],
        tf.range(tf.size(trigrams, out_type=tf.int64)),
        side="right",
        out_type=tf.int64,
    )
    grams = tf.concat([words, bigrams, tf.strings.join(["#", trigrams])], axis=0)
    rows = tf.concat([word_row, word_row[:-1], trigram_row], axis=0)
    zero = tf.constant(0.0)
    weights = tf.concat(
        [
            tf.ones_like(word_row, dtype=tf.float32),
            tf.where(tf.equal(word_row[:-1], word_row[1:]), 1.0, zero),
            tf.where(tf.strings.regex_full_match(trigrams, ".*><.*"), zero, CHAR_NGRAM_WEIGHT),
        ],
        axis=0,
    )
    return rows, tf.strings.to_hash_bucket_fast(grams, HASH_BUCKETS), weights


def featurize(text: tf.Tensor) -> tf.Tensor:
    """Weighted, hashed n-gram counts [batch, HASH_BUCKETS] for a batch of strings."""
    rows, buckets, weights = ngrams(text)
    batch_size = tf.shape(text, out_type=tf.int64)[0]
    counts = tf.math.unsorted_segment_sum(
        weights, rows * HASH_BUCKETS + buckets, batch_size * HASH_BUCKETS
    )
    return tf.reshape(counts, tf.stack([batch_size, HASH_BUCKETS]))


def similarity(text: tf.Tensor, idf: tf.Tensor, question_matrix: tf.Tensor) -> tf.Tensor:
    """Cosine similarity [batch, questions] of each string's TF-IDF vector with the questions.

    The same as _tfidf(featurize(text), idf) times question_matrix, computed on the query's
    non-zero buckets only: no [batch, HASH_BUCKETS] tensor, and only those rows of the matrix.
    """
    rows, buckets, weights = ngrams(text)
    keys, slot = tf.unique(rows * HASH_BUCKETS + buckets)
    counts = tf.math.unsorted_segment_sum(weights, slot, tf.size(keys))
    row = keys // HASH_BUCKETS
    values = tf.math.log1p(counts) * tf.gather(idf, keys - row * HASH_BUCKETS)
    # l2_normalize per row, as tf.math.l2_normalize: x * rsqrt(max(sum(x**2), epsilon)).
    batch_size = tf.shape(text, out_type=tf.int64)[0]
    square_sum = tf.math.unsorted_segment_sum(tf.square(values), row, batch_size)
    normalized = values * tf.gather(tf.math.rsqrt(tf.maximum(square_sum, 1e-12)), row)
    questions = tf.gather(question_matrix, keys - row * HASH_BUCKETS)
    return tf.math.unsorted_segment_sum(questions * normalized[:, tf.newaxis], row, batch_size)


def _tfidf(counts: tf.Tensor, idf: tf.Tensor) -> tf.Tensor:
    """Sublinear term frequency times idf, L2-normalized per row (all-zero rows stay zero)."""
    return tf.math.l2_normalize(tf.math.log1p(counts) * idf, axis=1)


class DemoChatModel(tf.Module):
    """The exported module: constants as variables plus the serving function."""

    def __init__(
        self,
        question_matrix: np.ndarray,
        idf: np.ndarray,
        pair_of_question: np.ndarray,
        replies: Sequence[str],
        fallback: str,
    ) -> None:
        super().__init__(name=DEMO_MODEL_NAME)
        self.question_matrix = tf.Variable(question_matrix, trainable=False, name="questions")
        self.idf = tf.Variable(idf, trainable=False, name="idf")
        self.pair_of_question = tf.Variable(pair_of_question, trainable=False, name="pair_index")
        self.replies = tf.Variable(list(replies), dtype=tf.string, trainable=False, name="replies")
        self.fallback = tf.Variable(fallback, dtype=tf.string, trainable=False, name="fallback")
        self.confidence_floor = tf.Variable(
            CONFIDENCE_FLOOR, dtype=tf.float32, trainable=False, name="confidence_floor"
        )

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        """Best reply and its cosine similarity for each input string."""
        scores = similarity(text, self.idf, self.question_matrix)
        best_question = tf.math.argmax(scores, axis=1, output_type=tf.int32)
        confidence = tf.math.reduce_max(scores, axis=1)
        best_reply = tf.gather(self.replies, tf.gather(self.pair_of_question, best_question))
        fallback = tf.fill(tf.shape(text), self.fallback)
        reply = tf.where(confidence >= self.confidence_floor, best_reply, fallback)
        return {"reply": reply, "confidence": confidence}


def build_model(version: int, qa: QaSet | None = None) -> DemoChatModel:
    """The demo model for one version, with its question matrix computed from the QA set."""
    qa = qa or load_qa()
    documents: list[str] = []
    pair_of_question: list[int] = []
    for pair_index, pair in enumerate(qa.pairs):
        # The topic is indexed as one more phrasing: short queries often name just the topic.
        for question in (*pair.questions, pair.topic):
            documents.append(question)
            pair_of_question.append(pair_index)
    counts = featurize(tf.constant(documents)).numpy()
    # Answers count as documents for idf only: words common in everything an operator reads
    # ("what", "the", "model") get low weight, while matching still runs against questions.
    answers = [f"{pair.answer} {pair.detail}" for pair in qa.pairs]
    idf_counts = np.concatenate([counts, featurize(tf.constant(answers)).numpy()])
    document_frequency = np.count_nonzero(idf_counts, axis=0)
    idf = np.log((1.0 + len(idf_counts)) / (1.0 + document_frequency)) + 1.0
    idf = idf.astype(np.float32)
    question_matrix = _tfidf(tf.constant(counts), tf.constant(idf)).numpy().T.copy()
    return DemoChatModel(
        question_matrix=question_matrix,
        idf=idf,
        pair_of_question=np.asarray(pair_of_question, dtype=np.int32),
        replies=[reply_for(pair, version) for pair in qa.pairs],
        fallback=fallback_for(qa, version),
    )


def export_demo_model(base_path: Path, versions: Sequence[int] = (1, 2)) -> None:
    """Write the demo model as SavedModels base_path/<version>/ for the given versions."""
    base_path = Path(base_path)
    qa = load_qa()
    for version in versions:
        if version < 1:
            raise ValueError(f"demo model version {version}: expected a positive integer")
        module = build_model(version, qa)
        target = base_path / str(version)
        base_path.mkdir(parents=True, exist_ok=True)
        # Export next to the target, then rename: a polling server never sees half a version.
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=base_path))
        try:
            tf.saved_model.save(
                module,
                str(staging / "model"),
                signatures={SERVING_SIGNATURE: module.serve.get_concrete_function()},
            )
            if target.exists():
                shutil.rmtree(target)
            (staging / "model").rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    (base_path / DEMO_MODEL_REVISION_FILE).write_text(f"{DEMO_MODEL_REVISION}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """`deepchat-tfs export-demo-model DIR`: write the demo model's versions under DIR."""
    parser = argparse.ArgumentParser(
        prog="deepchat-tfs export-demo-model",
        description="Write the bundled demo chat model as TF Serving SavedModels (DIR/1, DIR/2).",
    )
    parser.add_argument("directory", type=Path, help="model base path to write versions into")
    parser.add_argument(
        "--versions",
        default="1,2",
        help="comma-separated version numbers to write (default: 1,2)",
    )
    args = parser.parse_args(argv)
    try:
        versions = [int(part) for part in args.versions.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--versions {args.versions!r}: expected comma-separated integers, e.g. 1,2")
    if not versions or any(version < 1 for version in versions):
        parser.error(f"--versions {args.versions!r}: expected positive integers, e.g. 1,2")
    if args.directory.exists() and not args.directory.is_dir():
        parser.error(f"{args.directory}: is a file; expected a directory to write versions into")
    try:
        export_demo_model(args.directory, versions)
    except (OSError, tf.errors.OpError) as error:
        print(f"export-demo-model: cannot write {args.directory}: {error}", file=sys.stderr)
        return 1
    for version in versions:
        print(f"wrote {args.directory / str(version)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
