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


def featurize(text: tf.Tensor) -> tf.Tensor:
    """Weighted, hashed n-gram counts [batch, HASH_BUCKETS] for a batch of strings."""
    # Invalid UTF-8 must not fail the request: replace bad bytes before any unicode-aware op.
    valid = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
    lowered = tf.strings.lower(valid, encoding="utf-8")
    spaced = tf.strings.regex_replace(lowered, r"[^\pL\pN]+", " ")
    normalized = tf.strings.strip(tf.strings.regex_replace(spaced, _STOPWORD_PATTERN, " "))
    words = tf.strings.split(normalized)
    word_grams = tf.strings.ngrams(words, ngram_width=(1, 2), separator=" ")
    # Mark word edges so that trigrams also capture how words start and end.
    marked = tf.ragged.map_flat_values(lambda w: tf.strings.join(["<", w, ">"]), words)
    chars = tf.strings.unicode_split(marked, "UTF-8")
    char_grams = tf.strings.ngrams(chars, ngram_width=CHAR_NGRAM_WIDTH, separator="")
    char_grams = tf.ragged.map_flat_values(
        lambda g: tf.strings.join(["#", g]), char_grams.merge_dims(1, 2)
    )
    grams = tf.concat([word_grams, char_grams], axis=1)
    weights = tf.concat(
        [
            tf.ones_like(word_grams, dtype=tf.float32),
            tf.ones_like(char_grams, dtype=tf.float32) * CHAR_NGRAM_WEIGHT,
        ],
        axis=1,
    )
    bucket = tf.strings.to_hash_bucket_fast(grams.flat_values, HASH_BUCKETS)
    row = grams.value_rowids()
    batch_size = tf.shape(text, out_type=tf.int64)[0]
    counts = tf.math.unsorted_segment_sum(
        weights.flat_values, row * HASH_BUCKETS + bucket, batch_size * HASH_BUCKETS
    )
    return tf.reshape(counts, tf.stack([batch_size, HASH_BUCKETS]))


def sparse_similarity(query: tf.Tensor, question_matrix: tf.Tensor) -> tf.Tensor:
    """query [batch, HASH_BUCKETS] times question_matrix, reading only query's non-zero rows."""
    nonzero = tf.where(tf.not_equal(query, 0.0))
    weights = tf.gather_nd(query, nonzero)
    rows = tf.gather(question_matrix, nonzero[:, 1]) * weights[:, tf.newaxis]
    return tf.math.unsorted_segment_sum(rows, nonzero[:, 0], tf.shape(query, out_type=tf.int64)[0])


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
        query = _tfidf(featurize(text), self.idf)
        similarity = sparse_similarity(query, self.question_matrix)
        best_question = tf.math.argmax(similarity, axis=1, output_type=tf.int32)
        confidence = tf.math.reduce_max(similarity, axis=1)
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
