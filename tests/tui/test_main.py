"""Entry points: lazy imports, config errors before drawing, command-line choices."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest

from core.config.schema import Config
from tests.tui.conftest import make_config
from tui.main import chat_main, main
from tui.options import build_options

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run code in a fresh interpreter from the repository root."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_help_and_importing_the_entry_points_load_no_textual() -> None:
    result = run_python(
        "import sys, contextlib, io\n"
        "import cli.main, tui.main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    cli.main.main(['--help'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'grpc')))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_first_frame_needs_no_serving_modules() -> None:
    # What the console imports before drawing; gRPC, numpy, aiohttp, Markdown, the transcript's
    # SQLite, load generation and the YAML parser (a cached config needs none) load afterwards.
    result = run_python(
        "import sys\n"
        "import core.config.schema, tui.options, tui.app\n"
        "heavy = ('grpc', 'numpy', 'aiohttp', 'markdown_it', 'core.client.serving',"
        " 'core.metrics.stats', 'sqlite3', 'core.chat.transcript', 'core.load.burst',"
        " 'core.load.generator', 'tui.burst', 'tui.live', 'hdrh', 'yaml', 'psutil')\n"
        "print(sorted(name for name in heavy if name in sys.modules))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_first_frame_is_within_a_wide_margin_of_a_bare_textual_app(tmp_path: Path) -> None:
    # A guard against regressions, not the goal (1.3x, measured by benchmarks/bench_console.py).
    from benchmarks.bench_console import paired_first_frames

    paired = paired_first_frames(3, tmp_path, settle_s=0.2)
    assert paired.ratio < 3.0, (
        f"first frame {paired.console_ms:.0f} ms vs bare Textual app {paired.bare_ms:.0f} ms"
    )


def test_the_console_never_initializes_tensorflow() -> None:
    result = run_python(
        "import sys\n"
        "import tui.app, tui.burst\n"
        "print(any(m.startswith('tensorflow.python') for m in sys.modules))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_invalid_config_prints_the_error_and_exits_before_drawing(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("model_serving:\n  tensorflow_serving:\n    grpc_port: 85OO\n")
    result = subprocess.run(
        [sys.executable, "-m", "cli", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert "config.yaml:3: model_serving.tensorflow_serving.grpc_port" in result.stderr
    assert "\x1b[" not in result.stdout + result.stderr  # nothing was drawn


def test_bad_target_and_missing_token_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert chat_main(["--target", "no-port-here", "--data-dir", str(tmp_path)]) == 2
    assert gc.isenabled()  # off while the console starts, on again when it stops before drawing
    error = capsys.readouterr().err
    assert "command line: model_serving.tensorflow_serving.targets[0]: expected" in error
    assert "got 'no-port-here'" in error
    config = tmp_path / "config.yaml"
    config.write_text(
        "model_serving:\n  tensorflow_serving:\n    host: tfs.example\n"
        "    bearer_token_env: DEEPCHAT_TEST_TOKEN_THAT_IS_UNSET\n"
    )
    assert main(["--config", str(config), "--data-dir", str(tmp_path)]) == 2
    assert "DEEPCHAT_TEST_TOKEN_THAT_IS_UNSET" in capsys.readouterr().err


def test_metrics_and_prometheus_flags_reach_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import tui.app

    seen = {}

    class NotRun:
        def __init__(self, options: object) -> None:
            seen["options"] = options
            self.session = None
            self.return_code = 0

        def run(self) -> None:
            pass

    monkeypatch.setattr(tui.app, "DeepChatApp", NotRun)
    args = ["--data-dir", str(tmp_path), "--target", "a:8500", "--target", "b:8500"]
    metrics = ["--metrics", "http://a:9/m", "--metrics", "http://b:9/m"]
    assert chat_main([*args, *metrics, "--prometheus", "http://prom:9090"]) == 0
    tfs = seen["options"].config.model_serving.tensorflow_serving  # type: ignore[attr-defined]
    assert tfs.metrics_urls == ["http://a:9/m", "http://b:9/m"]
    assert tfs.prometheus_url == "http://prom:9090"
    # One URL per target, in their order: a count that does not match is a usage error.
    assert chat_main([*args, "--metrics", "http://a:9/m"]) == 2
    assert "metrics_urls" in capsys.readouterr().err


def test_build_options_from_config_and_flags(tmp_path: Path) -> None:
    embedded = build_options(Config(), data_dir=tmp_path)
    assert embedded.embedded and embedded.targets == () and embedded.rest_url is None
    assert embedded.models[0].spec.name == "deepchat_model"
    assert embedded.transcript_path == tmp_path / "transcript.sqlite3"

    remote = build_options(
        Config(),
        targets=["10.0.0.5:8500", "10.0.0.6:8500"],
        model_name="resnet",
        signature_name="predict_images",
        data_dir=tmp_path,
    )
    assert not remote.embedded and remote.targets == ("10.0.0.5:8500", "10.0.0.6:8500")
    assert remote.rest_url == "http://10.0.0.5:8501"
    assert remote.models[0].spec.name == "resnet"
    assert remote.models[0].spec.signature_name == "predict_images"
    assert remote.target_label == "10.0.0.5:8500, 10.0.0.6:8500"

    configured = make_config(
        model_serving={"tensorflow_serving": {"host": "tfs", "rest_port": 0}},
        models=[
            {"name": "chat", "model_name": "deepchat_model"},
            {"name": "sentiment", "model_name": "bert", "version_label": "stable",
             "adapter": {"kind": "classify", "top_k": 3}},
        ],
    )  # fmt: skip
    chosen = build_options(configured, model_name="sentiment", data_dir=tmp_path)
    assert chosen.targets == ("tfs:8500",) and chosen.rest_url is None
    first = chosen.models[0]
    assert first.label == "sentiment" and first.spec.version_label == "stable"
    assert first.adapter.kind == "classify" and first.adapter.top_k == 3
    assert first.adapter.config_path == "models[1].adapter"
    assert [m.label for m in chosen.models] == ["sentiment", "chat"]


def test_kill_server_now_stops_the_child_after_a_crash(tmp_path: Path) -> None:
    import psutil

    from core.chat.session import ChatSession
    from core.metrics.stats import StatsCollector

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    backend = ChatSession(Config(), StatsCollector(), embedded=True, data_dir=tmp_path)
    backend._server_process = psutil.Process(child.pid)  # as start() records it
    assert backend.server_pid == child.pid
    backend.kill_server_now()
    assert child.wait(timeout=10) is not None
    assert backend.server_pid is None
    backend.kill_server_now()  # a second call (normal exit after a crash path) is harmless


def test_key_bindings_are_checked_against_the_consoles_actions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tui.app import DeepChatApp
    from tui.keys import KEY_ACTIONS, default_keys

    # BINDINGS come from tui.keys, so the loader checks against the very same actions.
    bindings = [(b.id, b.key) for b in DeepChatApp.BINDINGS]  # type: ignore[union-attr]
    assert bindings == list(default_keys().items())
    assert len(KEY_ACTIONS) == len({action.name for action in KEY_ACTIONS})
    config = tmp_path / "config.yaml"
    config.write_text("ui:\n  key_bindings:\n    qiut: ctrl+x\n    burst: ctrl+q\n")
    assert main(["--config", str(config), "--data-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err.splitlines()
    assert error[0] == (
        f"deepchat-tfs: {config}:3: ui.key_bindings.qiut: expected one of quit, help, "
        "command_palette, pause_panels, retry, clear_chat, export_transcript, replicas, "
        "burst, focus_prompt (did you mean 'quit'?), got 'qiut'"
    )
    assert error[1] == (
        f"{config}:4: ui.key_bindings.burst: expected a key no other action uses, got 'ctrl+q', "
        "also bound to quit (its default key)"
    )


FAST_START = """
import dataclasses, sys
from argparse import Namespace
from pathlib import Path
from tui.main import Choices, _cached_options

config_file, cache_dir, data_dir = sys.argv[1:4]
args = Namespace(config=config_file, allow_plaintext_token=False)
choices = Choices((), None, "classify", Path(data_dir), False)
fast = _cached_options(args, {}, Path(cache_dir), choices)
print("pydantic" in sys.modules)
from core.config.schema import load_config
from tui.keys import default_keys
from tui.options import build_options

loaded = load_config(config_file, key_actions=default_keys(), cache_dir=Path(cache_dir))
if fast is None:
    print("stored")
    sys.exit()
slow = build_options(loaded.config, **choices._asdict())
resolved = fast.resolve_config()
plain = [dataclasses.replace(options, config=None) for options in (resolved, slow)]
print(resolved.config == slow.config, plain[0] == plain[1])
print(fast.ui, fast.targets, fast.rest_url, fast.models[0].spec, sep="\\n")
"""


def test_a_cached_config_starts_the_console_without_the_config_models(tmp_path: Path) -> None:
    # The first frame's options from the cache entry alone (no pydantic), equal to the options
    # the validated config gives; the models are built from the entry afterwards.
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        "model_serving:\n"
        "  tensorflow_serving:\n"
        "    host: tfs.internal\n"
        "    targets: ['127.0.0.1:8500', 'localhost:8510']\n"
        "    rest_port: 8601\n"
        "models:\n"
        "  - name: chat\n"
        "    model_name: deepchat_model\n"
        "    version_label: canary\n"
        "ui:\n"
        "  refresh_hz: 2\n"
        "  latency_warn_ms: 50\n"
        "  key_bindings: {help: f9}\n"
    )
    arguments = [str(config_file), str(tmp_path / "cache"), str(tmp_path / "data")]
    runs = [
        subprocess.run(
            [sys.executable, "-c", FAST_START, *arguments],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert runs[0].stdout.split("\n")[:2] == ["False", "stored"]
    lines = runs[1].stdout.splitlines()
    assert lines[:2] == ["False", "True True"], runs[1].stdout
    assert "refresh_hz=2.0" in lines[2] and "'help': 'f9'" in lines[2]
    assert lines[3] == "('127.0.0.1:8500', 'localhost:8510')"
    assert lines[4] == "http://127.0.0.1:8601"
    assert "deepchat_model" in lines[5] and "classify" in lines[5] and "canary" in lines[5]
