"""server.demo_model: the exported SavedModel answers from the bundled Q/A set, in-graph."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from core.identity import DEMO_MODEL_REVISION
from server import demo_model

pytestmark = pytest.mark.slow

Signature = Any  # a loaded SavedModel's concrete serving function


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base_path = tmp_path_factory.mktemp("deepchat_model")
    assert demo_model.main([str(base_path)]) == 0
    return base_path


@pytest.fixture(scope="module")
def serve_v1(exported: Path) -> Signature:
    return tf.saved_model.load(str(exported / "1")).signatures["serving_default"]


@pytest.fixture(scope="module")
def serve_v2(exported: Path) -> Signature:
    return tf.saved_model.load(str(exported / "2")).signatures["serving_default"]


def ask(serve: Signature, questions: Sequence[str | bytes]) -> tuple[list[str], np.ndarray]:
    """Replies (decoded) and confidences for a batch of questions."""
    outputs = serve(text=tf.constant(list(questions), dtype=tf.string))
    replies = [reply.decode("utf-8") for reply in outputs["reply"].numpy()]
    return replies, outputs["confidence"].numpy()


def test_writes_numbered_versions(exported: Path) -> None:
    # The numbered versions, and the revision mark that tells a newer release to re-export.
    assert sorted(path.name for path in exported.iterdir()) == ["1", "2", "REVISION"]
    assert (exported / "REVISION").read_text().strip() == str(DEMO_MODEL_REVISION)
    for version in ("1", "2"):
        assert (exported / version / "saved_model.pb").is_file()
        assert (exported / version / "variables").is_dir()


def test_signature_as_tf_serving_sees_it(exported: Path) -> None:
    """The TF1 loader (TF Serving's path) sees DT_STRING [-1] in, DT_STRING/DT_FLOAT [-1] out."""
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(exported / "1"))
        signature = meta_graph.signature_def["serving_default"]
        assert signature.method_name == "tensorflow/serving/predict"
        assert list(signature.inputs) == ["text"]
        assert sorted(signature.outputs) == ["confidence", "reply"]
        assert signature.inputs["text"].dtype == tf.string.as_datatype_enum
        assert signature.outputs["reply"].dtype == tf.string.as_datatype_enum
        assert signature.outputs["confidence"].dtype == tf.float32.as_datatype_enum
        for info in [*signature.inputs.values(), *signature.outputs.values()]:
            assert [dim.size for dim in info.tensor_shape.dim] == [-1]
        reply, confidence = session.run(
            [signature.outputs["reply"].name, signature.outputs["confidence"].name],
            {signature.inputs["text"].name: np.array([b"How do I enable batching?"], object)},
        )
    assert "--enable_batching" in reply[0].decode()
    assert confidence.dtype == np.float32 and confidence[0] > 0.9


@pytest.mark.parametrize(
    ("question", "expected_fragment"),
    [
        ("How do I enable batching?", "--enable_batching"),
        ("I get servable not found", "Servable not found for request"),
        ("how do I quit the console", "Ctrl-Q"),
        ("what does max_enqueued_batches do?", "max_enqueued_batches bounds"),
        ("Should I use gRPC or REST?", "gRPC is faster"),
        ("How do version labels work?", "Labels are names for versions"),
        # Not the /label command's answer, which "label" alone in its topic name outweighed.
        ("what is a version label?", "Labels are names for versions"),
        ("my requests fail with deadline exceeded", "took longer than its deadline"),
        # Function words ("what is a", "why is my") must not outweigh the word that matters.
        ("what is a canary", "label them stable and canary"),
        ("why is my p99 high?", "Find where the time goes"),
    ],
)
def test_answers_operator_questions(
    serve_v1: Signature, question: str, expected_fragment: str
) -> None:
    replies, confidence = ask(serve_v1, [question])
    assert expected_fragment in replies[0]
    assert confidence[0] >= demo_model.CONFIDENCE_FLOOR


def test_every_bundled_question_finds_its_own_answer(serve_v1: Signature) -> None:
    qa = demo_model.load_qa()
    questions = [question for pair in qa.pairs for question in pair.questions]
    answers = [pair.answer for pair in qa.pairs for _ in pair.questions]
    replies, _ = ask(serve_v1, questions)
    misses = [
        q for q, reply, answer in zip(questions, replies, answers, strict=True) if reply != answer
    ]
    assert misses == []


def test_out_of_domain_gets_the_fallback(serve_v1: Signature, serve_v2: Signature) -> None:
    qa = demo_model.load_qa()
    questions = ["pizza recipe with pineapple", "", "asdf qwerty zxcv"]
    replies_v1, confidence = ask(serve_v1, questions)
    replies_v2, _ = ask(serve_v2, questions)
    assert replies_v1 == [demo_model.fallback_for(qa, 1)] * 3
    assert replies_v2 == [demo_model.fallback_for(qa, 2)] * 3
    assert np.all(confidence < demo_model.CONFIDENCE_FLOOR)
    assert confidence[1] == 0.0  # nothing to match in an empty string


def test_version_2_answers_visibly_differently(serve_v1: Signature, serve_v2: Signature) -> None:
    question = ["How do I roll out a new version?"]
    (reply_v1,), confidence_v1 = ask(serve_v1, question)
    (reply_v2,), confidence_v2 = ask(serve_v2, question)
    assert reply_v1 != reply_v2
    assert reply_v2.startswith("**New versions**")
    assert reply_v1 in reply_v2  # same match, more detail
    np.testing.assert_allclose(confidence_v1, confidence_v2)


def test_deterministic_and_independent_of_batch_company(serve_v2: Signature) -> None:
    questions = ["what is p99?", "hello", "How do I enable batching?", "tls certificates"]
    first_replies, first_confidence = ask(serve_v2, questions)
    again_replies, again_confidence = ask(serve_v2, questions)
    assert first_replies == again_replies
    np.testing.assert_array_equal(first_confidence, again_confidence)
    alone = [ask(serve_v2, [question]) for question in questions]
    assert [replies[0] for replies, _ in alone] == first_replies
    np.testing.assert_allclose([conf[0] for _, conf in alone], first_confidence, rtol=1e-5)


def test_empty_batch_long_and_malformed_input(serve_v1: Signature) -> None:
    replies, confidence = ask(serve_v1, [])
    assert replies == [] and confidence.shape == (0,)
    long_question = ("how do I enable batching " * 500)[:10_000]
    invalid_utf8 = b"\xff\xfe enable batching \xc3"
    replies, confidence = ask(serve_v1, [long_question, invalid_utf8, "x" * 10_000])
    assert len(replies) == 3 and confidence.shape == (3,)
    assert "--enable_batching" in replies[0]
    assert "--enable_batching" in replies[1]


def test_cli_rejects_bad_versions(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as raised:
        demo_model.main([str(tmp_path), "--versions", "1,two"])
    assert raised.value.code == 2
    assert "--versions '1,two': expected comma-separated integers" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_rejects_a_file_as_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    not_a_directory = tmp_path / "models.txt"
    not_a_directory.write_text("")
    with pytest.raises(SystemExit) as raised:
        demo_model.main([str(not_a_directory)])
    assert raised.value.code == 2
    assert "is a file; expected a directory" in capsys.readouterr().err


def ragged_featurize(text: tf.Tensor) -> tf.Tensor:
    """The n-gram counts as tf.strings.ngrams builds them (the model's first graph, ~250 nodes
    per run): the reference demo_model.ngrams must match exactly."""
    valid = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
    lowered = tf.strings.lower(valid, encoding="utf-8")
    spaced = tf.strings.regex_replace(lowered, r"[^\pL\pN]+", " ")
    pattern = r"\b(?:" + "|".join(demo_model.STOPWORDS) + r")\b"
    words = tf.strings.split(tf.strings.strip(tf.strings.regex_replace(spaced, pattern, " ")))
    word_grams = tf.strings.ngrams(words, ngram_width=(1, 2), separator=" ")
    marked = tf.ragged.map_flat_values(lambda w: tf.strings.join(["<", w, ">"]), words)
    chars = tf.strings.unicode_split(marked, "UTF-8")
    char_grams = tf.strings.ngrams(chars, ngram_width=demo_model.CHAR_NGRAM_WIDTH, separator="")
    char_grams = tf.ragged.map_flat_values(
        lambda g: tf.strings.join(["#", g]), char_grams.merge_dims(1, 2)
    )
    grams = tf.concat([word_grams, char_grams], axis=1)
    weights = tf.concat(
        [
            tf.ones_like(word_grams, dtype=tf.float32),
            tf.ones_like(char_grams, dtype=tf.float32) * demo_model.CHAR_NGRAM_WEIGHT,
        ],
        axis=1,
    )
    buckets = tf.strings.to_hash_bucket_fast(grams.flat_values, demo_model.HASH_BUCKETS)
    size = tf.shape(text, out_type=tf.int64)[0]
    counts = tf.math.unsorted_segment_sum(
        weights.flat_values,
        grams.value_rowids() * demo_model.HASH_BUCKETS + buckets,
        size * demo_model.HASH_BUCKETS,
    )
    return tf.reshape(counts, tf.stack([size, demo_model.HASH_BUCKETS]))


TRICKY_TEXTS = [
    "How do I enable batching?",
    "",
    "   ",
    "the what is",  # stopwords only
    "a",
    "x",
    "one  two\tthree, four!five",
    "ÉCOLE naïve café Straße İstanbul ǅemal",
    "日本語のテキスト です 😀 emoji",
    "<tag> a>b c<d ><",
    "grpc grpc grpc grpc",
    "x" * 3000,
]


def test_flat_ngrams_count_exactly_as_ragged_ngrams() -> None:
    qa = demo_model.load_qa()
    texts = [t.encode() for t in TRICKY_TEXTS] + [b"\xff\xfe enable batching \xc3"]
    texts += [q.encode() for pair in qa.pairs[:40] for q in (*pair.questions, pair.answer)]
    batch = tf.constant(texts)
    np.testing.assert_array_equal(
        demo_model.featurize(batch).numpy(), ragged_featurize(batch).numpy()
    )
    for text in texts[:13]:  # alone, as the console asks
        single = tf.constant([text])
        np.testing.assert_array_equal(
            demo_model.featurize(single).numpy(), ragged_featurize(single).numpy()
        )


def ragged_similarity(text: tf.Tensor, model: demo_model.DemoChatModel) -> tf.Tensor:
    """The scores as the model's first graph computed them: dense TF-IDF of the ragged counts,
    then the question matrix's rows gathered for the query's non-zero buckets."""
    query = demo_model._tfidf(ragged_featurize(text), model.idf)
    nonzero = tf.where(tf.not_equal(query, 0.0))
    weights = tf.gather_nd(query, nonzero)
    rows = tf.gather(model.question_matrix, nonzero[:, 1]) * weights[:, tf.newaxis]
    return tf.math.unsorted_segment_sum(rows, nonzero[:, 0], tf.shape(query, out_type=tf.int64)[0])


def test_similarity_answers_as_the_ragged_graph() -> None:
    model = demo_model.build_model(1)
    qa = demo_model.load_qa()
    texts = TRICKY_TEXTS + [
        text for pair in qa.pairs for text in (*pair.questions, pair.topic, pair.answer)
    ]
    batch = tf.constant(texts)
    reference = ragged_similarity(batch, model).numpy()
    scores = demo_model.similarity(batch, model.idf, model.question_matrix).numpy()
    np.testing.assert_allclose(scores, reference, atol=2e-6)
    # The same best question and the same side of the confidence floor: the same reply.
    np.testing.assert_array_equal(scores.argmax(axis=1), reference.argmax(axis=1))
    np.testing.assert_array_equal(
        scores.max(axis=1) >= demo_model.CONFIDENCE_FLOOR,
        reference.max(axis=1) >= demo_model.CONFIDENCE_FLOOR,
    )


def test_malformed_utf8_answers_as_its_replaced_text(serve_v1: Signature) -> None:
    """Invalid bytes count as U+FFFD, a separator: as if the client had replaced them."""
    raw = [
        b"\xff\xfe enable batching \xc3",
        b"enable\xed\xa0\x80batching",
        b"\xc0\xafcanary\xf4\x90\x80\x80 label",
        b"servable\x80not found\xe2\x82",
    ]
    replaced = [text.decode("utf-8", "replace").encode() for text in raw]
    raw_replies, raw_confidence = ask(serve_v1, raw)
    replaced_replies, replaced_confidence = ask(serve_v1, replaced)
    assert raw_replies == replaced_replies
    np.testing.assert_array_equal(raw_confidence, replaced_confidence)


def test_a_request_runs_few_graph_nodes(exported: Path) -> None:
    """The TF1-style graph: no function call, one variable; ~80 nodes per request (was 117)."""
    graph = tf.Graph()
    config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=-1)
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(exported / "1"))
        assert not meta_graph.graph_def.library.function
        signature = meta_graph.signature_def["serving_default"]
        options = tf.compat.v1.RunOptions(
            trace_level=tf.compat.v1.RunOptions.FULL_TRACE, inter_op_thread_pool=-1
        )
        metadata = tf.compat.v1.RunMetadata()
        session.run(
            signature.outputs["reply"].name,
            {signature.inputs["text"].name: np.array([b"How do I enable batching?"], object)},
            options=options,
            run_metadata=metadata,
        )
    nodes = [node for dev in metadata.step_stats.dev_stats for node in dev.node_stats]
    assert len(nodes) <= 90
