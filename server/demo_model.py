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
from tensorflow.core.protobuf import meta_graph_pb2

from core.identity import DEMO_MODEL_REVISION, DEMO_MODEL_REVISION_FILE

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
    ~250 graph nodes per run); a bigram that would cross two rows gets weight 0, which adds
    nothing to any count.
    """
    # ICU's lower-casing replaces invalid UTF-8 with U+FFFD, as a transcode would: malformed
    # input does not fail the request, and the replacement characters become spaces below.
    lowered = tf.strings.lower(text, encoding="utf-8")
    spaced = tf.strings.regex_replace(lowered, r"[^\pL\pN]+", " ")
    normalized = tf.strings.regex_replace(spaced, _STOPWORD_PATTERN, " ")
    # tf.strings.split's op: an empty separator splits on runs of whitespace.
    split = tf.raw_ops.StringSplitV2(input=normalized, sep="")
    words, word_row = split.values, tf.unstack(split.indices, num=2, axis=1)[0]
    bigrams = tf.strings.join([words[:-1], words[1:]], separator=" ")
    # Character trigrams of each word padded to <word>: one per character of the word.
    char_splits, codepoints = tf.raw_ops.UnicodeDecode(
        input=words, input_encoding="UTF-8", errors="replace", replacement_char=0xFFFD
    )
    positions = tf.range(tf.size(codepoints, out_type=tf.int64) + 1)
    chars = tf.raw_ops.UnicodeEncode(
        input_values=codepoints,
        input_splits=positions,
        output_encoding="UTF-8",
        errors="replace",
        replacement_char=0xFFFD,
    )
    trigrams, _ = tf.raw_ops.StringNGrams(
        data=chars,
        data_splits=char_splits,
        separator="",
        ngram_widths=[CHAR_NGRAM_WIDTH],
        left_pad="<",
        right_pad=">",
        pad_width=1,
        preserve_short_sequences=False,
    )
    # Trigram i belongs to the word of character i: the number of words ending at or before i.
    word_of_char = tf.raw_ops.UpperBound(
        sorted_inputs=char_splits[tf.newaxis, 1:], values=positions[tf.newaxis, :-1]
    )[0]
    grams = tf.concat([words, bigrams, tf.strings.join(["#", trigrams])], axis=0)
    rows = tf.concat([word_row, word_row[:-1], tf.gather(word_row, word_of_char)], axis=0)
    weights = tf.concat(
        [
            tf.ones_like(word_row, dtype=tf.float32),
            tf.cast(tf.equal(word_row[:-1], word_row[1:]), tf.float32),
            tf.fill(tf.shape(word_of_char), tf.constant(CHAR_NGRAM_WEIGHT)),
        ],
        axis=0,
    )
    return rows, tf.strings.to_hash_bucket_fast(grams, HASH_BUCKETS), weights


def featurize(text: tf.Tensor) -> tf.Tensor:
    """Weighted, hashed n-gram counts [batch, HASH_BUCKETS] for a batch of strings."""
    rows, buckets, weights = ngrams(text)
    batch_size = tf.size(text, out_type=tf.int64)
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
    row, bucket = keys // HASH_BUCKETS, keys % HASH_BUCKETS
    values = tf.math.log1p(counts) * tf.gather(idf, bucket)
    # l2_normalize per row, as tf.math.l2_normalize: x * rsqrt(max(sum(x**2), epsilon)).
    batch_size = tf.size(text, out_type=tf.int64)
    square_sum = tf.math.unsorted_segment_sum(tf.square(values), row, batch_size)
    normalized = values * tf.gather(tf.math.rsqrt(tf.maximum(square_sum, 1e-12)), row)
    # The query as a sparse [batch, HASH_BUCKETS] matrix times the question matrix: the op reads
    # only the rows of the query's buckets, and builds no [n-grams, questions] intermediate.
    return tf.raw_ops.SparseTensorDenseMatMul(
        a_indices=tf.stack([row, bucket], axis=1),
        a_values=normalized,
        a_shape=tf.stack([batch_size, tf.constant(HASH_BUCKETS, tf.int64)]),
        b=question_matrix,
    )


def _tfidf(counts: tf.Tensor, idf: tf.Tensor) -> tf.Tensor:
    """Sublinear term frequency times idf, L2-normalized per row (all-zero rows stay zero)."""
    return tf.math.l2_normalize(tf.math.log1p(counts) * idf, axis=1)


@dataclass(frozen=True)
class DemoChatModel:
    """One version's data: the serving graph holds it as constants, but for the question matrix.

    The matrix (HASH_BUCKETS x questions floats) stays a variable: as a constant it would make
    the graph 27 MB, which loads five times slower and keeps extra copies in memory.
    """

    question_matrix: np.ndarray  # [HASH_BUCKETS, questions] float32, TF-IDF rows of questions
    idf: np.ndarray  # [HASH_BUCKETS] float32
    reply_of_question: tuple[str, ...]  # the reply each question leads to
    fallback: str

    def serve(self, text: tf.Tensor, question_matrix: tf.Tensor) -> dict[str, tf.Tensor]:
        """Best reply and its cosine similarity for each input string."""
        scores = similarity(text, tf.constant(self.idf), question_matrix)
        best_question = tf.math.argmax(scores, axis=1, output_type=tf.int32)
        confidence = tf.math.reduce_max(scores, axis=1)
        # Bucketize's boundary is an attribute: 1 at or above the floor, else 0 (the fallback).
        above_floor = tf.raw_ops.Bucketize(input=confidence, boundaries=[CONFIDENCE_FLOOR])
        replies = tf.constant(
            [[self.fallback] * len(self.reply_of_question), list(self.reply_of_question)],
            dtype=tf.string,
        )
        reply = tf.gather_nd(replies, tf.stack([above_floor, best_question], axis=1))
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
    replies = [reply_for(pair, version) for pair in qa.pairs]
    return DemoChatModel(
        question_matrix=question_matrix,
        idf=idf,
        reply_of_question=tuple(replies[pair_index] for pair_index in pair_of_question),
        fallback=fallback_for(qa, version),
    )


def _tensor_info(tensor: tf.Tensor) -> meta_graph_pb2.TensorInfo:
    return meta_graph_pb2.TensorInfo(
        name=tensor.name,
        dtype=tensor.dtype.as_datatype_enum,
        tensor_shape=tensor.shape.as_proto(),
    )


def _predict_signature(
    inputs: dict[str, tf.Tensor], outputs: dict[str, tf.Tensor]
) -> meta_graph_pb2.SignatureDef:
    """predict_signature_def without its deprecation warning (build_tensor_info)."""
    signature = meta_graph_pb2.SignatureDef(method_name=tf.saved_model.PREDICT_METHOD_NAME)
    for key, tensor in inputs.items():
        signature.inputs[key].CopyFrom(_tensor_info(tensor))
    for key, tensor in outputs.items():
        signature.outputs[key].CopyFrom(_tensor_info(tensor))
    return signature


def _save(model: DemoChatModel, path: Path) -> None:
    """Write model as a TF1-style SavedModel: one graph, no functions.

    Each request then runs only the ops of the serving graph: no function call and its
    argument nodes around them, and one variable instead of six.
    """
    graph = tf.Graph()
    with graph.as_default():
        text = tf.compat.v1.placeholder(tf.string, [None], name="text")
        # Initialized from a feed, so the graph does not carry the matrix as its initial value.
        initial = tf.compat.v1.placeholder(tf.float32, model.question_matrix.shape)
        question_matrix = tf.Variable(initial, trainable=False, name="questions")
        outputs = model.serve(text, question_matrix)
        signature = _predict_signature({"text": text}, outputs)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(question_matrix.initializer, {initial: model.question_matrix})
            builder = tf.compat.v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(
                session,
                [tf.saved_model.SERVING],
                signature_def_map={SERVING_SIGNATURE: signature},
                strip_default_attrs=True,
            )
            builder.save()


def export_demo_model(base_path: Path, versions: Sequence[int] = (1, 2)) -> None:
    """Write the demo model as SavedModels base_path/<version>/ for the given versions."""
    base_path = Path(base_path)
    qa = load_qa()
    for version in versions:
        if version < 1:
            raise ValueError(f"demo model version {version}: expected a positive integer")
        model = build_model(version, qa)
        target = base_path / str(version)
        base_path.mkdir(parents=True, exist_ok=True)
        # Export next to the target, then rename: a polling server never sees half a version.
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=base_path))
        try:
            _save(model, staging / "model")
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
