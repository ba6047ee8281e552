"""Chat adapters: prompts to tensors, outputs to sanitized replies, mismatches named clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from core.chat.adapters import (
    AdapterMismatch,
    AdapterSettings,
    ClassifyAdapter,
    TextAdapter,
    TokensAdapter,
    describe_signature,
    escape_markdown,
    make_adapter,
    sanitize_text,
)
from core.client.serving import SignatureInfo, TensorInfo


def signature(inputs: dict[str, tuple[str, tuple[int, ...]]], outputs: dict) -> SignatureInfo:
    """A SignatureInfo from alias -> (dtype, shape) tables."""
    return SignatureInfo(
        key="serving_default",
        method_name="tensorflow/serving/predict",
        inputs={a: TensorInfo(a, f"{a}:0", d, s) for a, (d, s) in inputs.items()},
        outputs={a: TensorInfo(a, f"{a}:0", d, s) for a, (d, s) in outputs.items()},
    )


DEMO = signature(
    {"text": ("DT_STRING", (-1,))},
    {"reply": ("DT_STRING", (-1,)), "confidence": ("DT_FLOAT", (-1,))},
)


# --- sanitizer ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain text", "plain text"),
        ("\x1b[31mred\x1b[0m", "red"),
        ("title\x1b]0;pwned\x07after", "titleafter"),
        ("link \x1b]8;;http://x\x1b\\text\x1b]8;;\x1b\\", "link text"),
        ("clear\x1b[2J\x1b[Hscreen", "clearscreen"),
        ("bell\x07 and back\x08space", "bell and backspace"),
        ("c1 \x9b31m csi", "c1 31m csi"),
        ("over\rwrite", "overwrite"),
        ("keep\nlines\tand tabs", "keep\nlines    and tabs"),
        ("bidi \u202eevil\u202c text", "bidi evil text"),
        ("marks \u200fright\u200e left \u061carabic", "marks right left arabic"),
        ("dcs \x1bPq#0;2;0;0;0\x1b\\ done", "dcs  done"),
        ("[bold red]markup stays literal[/]", "[bold red]markup stays literal[/]"),
        ("unicode ✓ ü 漢字", "unicode ✓ ü 漢字"),
    ],
)
def test_sanitize_text_removes_terminal_control(raw: str, clean: str) -> None:
    assert sanitize_text(raw) == clean


def test_sanitize_text_leaves_no_escape_or_control_characters() -> None:
    every_code_point_below_256 = "".join(chr(code) for code in range(256))
    cleaned = sanitize_text(every_code_point_below_256 * 2)
    assert not any(ord(char) < 32 and char != "\n" for char in cleaned)
    assert not any(0x7F <= ord(char) <= 0x9F for char in cleaned)


def test_escape_markdown_makes_syntax_literal() -> None:
    assert escape_markdown("*a* [b](c) `d`") == r"\*a\* \[b\]\(c\) \`d\`"


# --- text adapter ---------------------------------------------------------------------------


def test_text_adapter_guesses_keys_from_the_demo_signature() -> None:
    adapter = make_adapter(AdapterSettings(), DEMO)
    assert isinstance(adapter, TextAdapter)
    inputs = adapter.encode("héllo")
    assert list(inputs) == ["text"]
    assert inputs["text"].dtype == object and inputs["text"].shape == (1,)
    assert inputs["text"][0] == "héllo".encode()
    reply = adapter.decode(
        {"reply": np.array([b"**hi** \x1b[31mthere"], dtype=object), "confidence": np.array([0.5])}
    )
    assert reply.text == "**hi** there"
    assert reply.details == (("confidence", "0.500"),)


def test_text_adapter_shapes_a_column_input_and_replaces_bad_utf8() -> None:
    column = signature({"q": ("DT_STRING", (-1, 1))}, {"a": ("DT_STRING", (-1, 1))})
    adapter = make_adapter(AdapterSettings(), column)
    assert adapter.encode("x")["q"].shape == (1, 1)
    assert adapter.decode({"a": np.array([[b"ok \xff"]], dtype=object)}).text == "ok \ufffd"


def test_text_adapter_uses_configured_keys() -> None:
    two_strings = signature(
        {"text": ("DT_STRING", (-1,))},
        {"first": ("DT_STRING", (-1,)), "second": ("DT_STRING", (-1,))},
    )
    with pytest.raises(AdapterMismatch) as excinfo:
        make_adapter(AdapterSettings(), two_strings)
    message = str(excinfo.value)
    assert "first (DT_STRING [-1])" in message and "second" in message
    assert "models[0].adapter.output_key" in message
    adapter = make_adapter(AdapterSettings(output_key="second"), two_strings)
    reply = adapter.decode(
        {"first": np.array([b"no"], dtype=object), "second": np.array([b"yes"], dtype=object)}
    )
    assert reply.text == "yes"


def test_text_adapter_rejects_a_numeric_signature_naming_inputs_and_keys() -> None:
    numeric = signature({"x": ("DT_FLOAT", (-1, 1))}, {"y": ("DT_FLOAT", (-1, 1))})
    with pytest.raises(AdapterMismatch) as excinfo:
        make_adapter(AdapterSettings(config_path="models[1].adapter"), numeric)
    message = str(excinfo.value)
    assert "inputs: x (DT_FLOAT [-1, 1]); outputs: y (DT_FLOAT [-1, 1])" in message
    assert "models[1].adapter.input_key" in message


def test_text_adapter_names_an_unknown_configured_key() -> None:
    with pytest.raises(AdapterMismatch, match="output_key 'answer' is not among"):
        make_adapter(AdapterSettings(output_key="answer"), DEMO)


def test_unknown_kind_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"models\[0\]\.adapter\.kind: expected one of"):
        make_adapter(AdapterSettings(kind="speech"), DEMO)


def test_describe_signature_handles_unknown_rank() -> None:
    sig = signature({"t": ("DT_STRING", ())}, {})
    sig.inputs["t"] = TensorInfo("t", "t:0", "DT_STRING", None)
    assert describe_signature(sig) == "inputs: t (DT_STRING unknown rank); outputs: none"


# --- classify adapter -----------------------------------------------------------------------


def test_classify_adapter_top_k_from_class_output() -> None:
    sig = signature(
        {"text": ("DT_STRING", (-1,))},
        {"scores": ("DT_FLOAT", (-1, 3)), "classes": ("DT_STRING", (-1, 3))},
    )
    adapter = make_adapter(AdapterSettings(kind="classify", top_k=2), sig)
    assert isinstance(adapter, ClassifyAdapter)
    reply = adapter.decode(
        {
            "scores": np.array([[0.1, 0.7, 0.2]], dtype=np.float32),
            "classes": np.array([[b"neg", b"pos", b"neu*"]], dtype=object),
        }
    )
    assert [name for name, _ in reply.labels] == ["pos", "neu*"]
    assert reply.labels[0][1] == pytest.approx(0.7)
    assert reply.text == "- pos · 0.700\n- neu\\* · 0.200"


def test_classify_adapter_labels_file_and_softmax_of_logits(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\n")
    sig = signature({"text": ("DT_STRING", (-1,))}, {"logits": ("DT_FLOAT", (-1, 3))})
    adapter = make_adapter(AdapterSettings(kind="classify", labels_file=labels, top_k=3), sig)
    reply = adapter.decode({"logits": np.array([[0.0, 2.0, 1.0]])})
    assert [name for name, _ in reply.labels] == ["dog", "bird", "cat"]
    assert sum(score for _, score in reply.labels) == pytest.approx(1.0)


def test_classify_adapter_reports_an_unreadable_labels_file(tmp_path: Path) -> None:
    sig = signature({"text": ("DT_STRING", (-1,))}, {"scores": ("DT_FLOAT", (-1, 2))})
    missing = tmp_path / "nope.txt"
    with pytest.raises(ValueError, match=r"labels_file .*nope.txt: cannot read it"):
        make_adapter(AdapterSettings(kind="classify", labels_file=missing), sig)


# --- tokens adapter -------------------------------------------------------------------------


@pytest.fixture
def tokenizer_file(tmp_path: Path) -> Path:
    """A tiny WordLevel tokenizer with BERT-style special tokens, saved as tokenizer.json."""
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "hello": 4, "world": 5, "serving": 6}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    return path


BERT = signature(
    {
        "input_ids": ("DT_INT32", (-1, 6)),
        "attention_mask": ("DT_INT32", (-1, 6)),
        "token_type_ids": ("DT_INT64", (-1, 6)),
    },
    {"output_ids": ("DT_INT32", (-1, -1))},
)


def test_tokens_adapter_encodes_padded_bert_inputs(tokenizer_file: Path) -> None:
    adapter = make_adapter(AdapterSettings(kind="tokens", tokenizer_file=tokenizer_file), BERT)
    assert isinstance(adapter, TokensAdapter)
    inputs = adapter.encode("hello unknown world")
    assert inputs["input_ids"].tolist() == [[2, 4, 1, 5, 3, 0]]
    assert inputs["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0]]
    assert inputs["token_type_ids"].dtype == np.int64
    assert inputs["input_ids"].dtype == np.int32
    # Longer than the signature's fixed length: truncated, keeping the closing [SEP].
    long_ids = adapter.encode("hello world hello world hello world")["input_ids"].tolist()
    assert long_ids == [[2, 4, 5, 4, 5, 3]]


def test_tokens_adapter_decodes_ids_and_per_position_scores(tokenizer_file: Path) -> None:
    adapter = make_adapter(AdapterSettings(kind="tokens", tokenizer_file=tokenizer_file), BERT)
    reply = adapter.decode({"output_ids": np.array([[2, 4, 6, 3, 0]], dtype=np.int32)})
    assert reply.text == "hello serving"
    sig = signature({"input_ids": ("DT_INT64", (-1, -1))}, {"logits": ("DT_FLOAT", (-1, -1, 7))})
    per_position = make_adapter(
        AdapterSettings(kind="tokens", tokenizer_file=tokenizer_file, max_length=4), sig
    )
    assert per_position.encode("hello")["input_ids"].shape == (1, 4)
    logits = np.zeros((1, 2, 7), dtype=np.float32)
    logits[0, 0, 5] = logits[0, 1, 4] = 9.0
    assert per_position.decode({"logits": logits}).text == "world hello"


def test_tokens_adapter_reads_class_scores_as_labels(tokenizer_file: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("negative\npositive\n")
    sig = signature({"input_word_ids": ("DT_INT32", (-1, 8))}, {"probs": ("DT_FLOAT", (-1, 2))})
    adapter = make_adapter(
        AdapterSettings(kind="tokens", tokenizer_file=tokenizer_file, labels_file=labels), sig
    )
    reply = adapter.decode({"probs": np.array([[0.2, 0.8]], dtype=np.float32)})
    assert reply.labels[0][0] == "positive"


def test_tokens_adapter_mismatches_name_inputs_and_keys(tokenizer_file: Path) -> None:
    with pytest.raises(AdapterMismatch, match=r"models\[0\]\.adapter\.tokenizer_file"):
        make_adapter(AdapterSettings(kind="tokens"), BERT)
    with pytest.raises(AdapterMismatch, match=r"input 'text' is not a token ids") as excinfo:
        make_adapter(AdapterSettings(kind="tokens", tokenizer_file=tokenizer_file), DEMO)
    assert "outputs: reply (DT_STRING [-1]), confidence (DT_FLOAT [-1])" in str(excinfo.value)


def test_tokens_adapter_reports_a_broken_tokenizer_file(tmp_path: Path) -> None:
    broken = tmp_path / "tokenizer.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=r"tokenizer_file .*tokenizer.json: cannot load it"):
        make_adapter(AdapterSettings(kind="tokens", tokenizer_file=broken), BERT)
