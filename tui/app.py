"""The console: chat pane on top, live ops panels below, commands and key bindings."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Footer, Input

from core.chat.transcript import Transcript, TranscriptError
from core.identity import APP_NAME
from tui.commands import ConsoleCommands, SlashCommand, SlashError, parse_slash
from tui.conversation import Conversation
from tui.messages import (
    MetricsSampled,
    ModelProblem,
    ModelStateChanged,
    ServerStateChanged,
    while_mounted,
)
from tui.options import ChatModel, ConsoleOptions, pin_text
from tui.screens import HelpScreen
from tui.slash import SlashCommands
from tui.widgets.chat import ChatLog, HistoryInput, spec_label
from tui.widgets.header import StatusHeader
from tui.widgets.panels import (
    BatchPanel,
    BurstPanel,
    LatencyPanel,
    MemoryPanel,
    ModelPanel,
    Panel,
    ThroughputPanel,
    burst_progress_lines,
    burst_report_lines,
)

if TYPE_CHECKING:
    from core.client.monitor import ModelMonitor, ModelState
    from core.metrics.stats import StatsCollector
    from tui.backend import ConsoleBackend

# What talks to servers (gRPC, numpy, protos, the batcher): loaded after the first frame.
SERVING_MODULES = (
    "core.client.serving",
    "core.chat.adapters",
    "core.metrics.stats",
    "core.client.monitor",
    "tui.backend",
    "tui.live",
)


class DeepChatApp(Conversation, SlashCommands, App[int]):
    """The deepchat-tfs console."""

    CSS_PATH = "app.tcss"
    TITLE = APP_NAME
    COMMANDS = App.COMMANDS | {ConsoleCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (130, "-wide")]  # noqa: RUF012
    # Binding ids are the action names config.ui.key_bindings remaps.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "quit", id="quit", priority=True),
        Binding("f1,question_mark", "help", "help", id="help"),
        Binding(
            "ctrl+p", "command_palette", "commands", id="command_palette", show=False, priority=True
        ),
        Binding("f2,ctrl+o", "pause_panels", "pause", id="pause_panels", priority=True),
        Binding("ctrl+r", "retry", "retry", id="retry", priority=True),
        Binding("ctrl+l", "clear_chat", "clear", id="clear_chat", priority=True),
        Binding("ctrl+e", "export_transcript", "export", id="export_transcript", priority=True),
        Binding("f5", "burst", "burst", id="burst"),
        Binding("escape", "focus_prompt", "prompt", id="focus_prompt", show=False),
    ]

    def __init__(self, options: ConsoleOptions, *, stats: StatsCollector | None = None) -> None:
        super().__init__()
        self.options = options
        # Created by ensure_backend() once the serving modules are loaded (after the first frame).
        self.stats: StatsCollector | None = stats
        self.backend: ConsoleBackend | None = None
        self._current: ChatModel | None = None
        self.transcript: Transcript | None = None
        self.monitor: ModelMonitor | None = None
        self.model_state: ModelState | None = None
        self.server_state = "starting" if options.embedded else "connecting"
        self.paused = False
        self.last_served: int | None = None
        self.last_prompt: str | None = None
        self._panel_timer: Timer | None = None
        self._live_started = False
        self._quitting = False

    @property
    def current(self) -> ChatModel:
        """The model the chat talks to (built on first use: it loads the serving modules)."""
        if self._current is None:
            self._current = self.options.models[0]
        return self._current

    @current.setter
    def current(self, model: ChatModel) -> None:
        self._current = model

    def ensure_backend(self) -> ConsoleBackend:
        """The shared stats and backend, created on first use."""
        if self.backend is None:
            from core.metrics.stats import StatsCollector
            from tui.backend import ConsoleBackend

            if self.stats is None:
                self.stats = StatsCollector()
            self.backend = ConsoleBackend(self.options, self.stats)
        return self.backend

    # ---- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        ui = self.options.config.ui
        yield StatusHeader(self.options.clock, id="header")
        with Vertical(id="chat-pane"):
            yield ChatLog(id="chat-log")
            yield HistoryInput(
                self._history(), placeholder="type a message · / for commands", id="prompt"
            )
        with Grid(id="panels"):
            yield ThroughputPanel(id="throughput")
            yield LatencyPanel(ui.latency_warn_ms, ui.latency_crit_ms, id="latency")
            yield BatchPanel(id="batch")
            yield ModelPanel(id="model")
            yield BurstPanel("F5 or /burst 200rps 30s", id="burst")
            yield MemoryPanel(id="memory")
        yield Footer()

    def _history(self) -> list[str]:
        try:
            self.transcript = Transcript(
                self.options.transcript_path,
                target=self.options.target_label,
                model_name=self.options.choices[0].name,
            )
        except (TranscriptError, OSError) as error:
            self._transcript_problem = str(error)
            return []
        self._transcript_problem = ""
        return self.transcript.prompt_history()

    async def on_mount(self) -> None:
        # Every binding id is in the keymap, so the footer keeps BINDINGS' order after remapping.
        keymap = {binding.id: binding.key for binding in self._own_bindings() if binding.id}
        self.set_keymap({**keymap, **self.options.config.ui.key_bindings})
        header = self.query_one(StatusHeader)
        header.target_text = self.options.target_label
        self._show_model()
        self._set_server_state(self.server_state if self.options.connect else "offline")
        memory = self.query_one(MemoryPanel)
        memory.server_note = (
            "n/a (offline)"
            if not self.options.connect
            else "starting"
            if self.options.embedded
            else "remote"
        )
        self.query_one("#prompt", HistoryInput).focus()
        if self._transcript_problem:
            await self.chat_log.add_note(
                f"transcript disabled: {self._transcript_problem}", error=True
            )
        self._refresh_panels()
        if self.options.connect:
            # After the first frame: opening channels and polling must not delay it.
            self.call_after_refresh(
                self.run_worker, self._start_backend(), name="start-backend", exit_on_error=False
            )

    @property
    def chat_log(self) -> ChatLog:
        """The chat transcript widget."""
        return self.query_one("#chat-log", ChatLog)

    def panels(self) -> list[Panel]:
        """Every live panel."""
        return list(self.query(Panel))

    # ---- serving link ----------------------------------------------------------------------

    async def _start_backend(self) -> None:
        """Worker: start the embedded server / open the client, then the live loops."""
        embedded = self.options.embedded
        self.post_message(
            ServerStateChanged(
                "starting" if embedded else "connecting",
                "loading the model in a child process" if embedded else "",
            )
        )
        # Imported in a thread so the first frame is out and keys keep working meanwhile.
        for name in SERVING_MODULES:
            await asyncio.to_thread(importlib.import_module, name)
        backend = self.ensure_backend()
        try:
            await backend.start()
        except Exception as error:  # any start-up failure is shown; the console stays up
            self.post_message(ServerStateChanged("failed", str(error).splitlines()[0]))
            self.post_message(ModelProblem("UNAVAILABLE", str(error)))
            return
        self.post_message(ServerStateChanged("connecting", ", ".join(backend.targets)))

    def _start_live_loops(self) -> None:
        from tui.live import poll_model, sample_metrics

        backend = self.ensure_backend()
        if self._live_started or backend.client is None:
            return
        self._live_started = True
        self._new_monitor()
        self.run_worker(
            poll_model(lambda: self.monitor, self.post_message), name="poll-model", group="live"
        )
        self.run_worker(
            sample_metrics(backend, lambda: self.current.spec.name, self.post_message),
            name="sample-metrics",
            group="live",
        )

    def _new_monitor(self) -> None:
        from core.client.monitor import ModelMonitor

        if self.backend is None or self.backend.client is None:
            return
        labels = [m.spec.version_label for m in self.options.models if m.spec.version_label]
        self.monitor = ModelMonitor(self.backend.client, self.current.spec, labels=labels)

    def _set_server_state(self, state: str, detail: str = "") -> None:
        self.server_state = state
        header = self.query_one(StatusHeader)
        header.server_state = state
        header.detail = detail
        down = state in ("down", "failed")
        for panel in self.panels():
            panel.set_class(down, "-down")

    @on(ServerStateChanged)
    @while_mounted
    def _server_state_changed(self, message: ServerStateChanged) -> None:
        if message.state == "connecting":
            self.query_one(StatusHeader).target_text = (
                f"{self.options.target_label} {message.detail}".strip()
                if self.options.embedded
                else self.options.target_label
            )
            self._start_live_loops()
        if message.state == "failed":
            self.notify(message.detail, title="server failed", severity="error", timeout=15)
        if (message.state, message.detail) != (
            self.server_state,
            self.query_one(StatusHeader).detail,
        ):
            self._set_server_state(message.state, message.detail)

    @on(ModelStateChanged)
    @while_mounted
    def _model_state_changed(self, message: ModelStateChanged) -> None:
        state = message.model_state
        if state.model_name != self.current.spec.name:
            return  # a poll that started before /model switched
        self.model_state = state
        for version in state.newly_available:
            self.ensure_backend().forget_adapters()  # a new version may bring a new signature
            self.notify(
                f"{state.model_name} version {version} is AVAILABLE",
                title="new version",
                timeout=8,
            )
        self._show_model()

    @on(ModelProblem)
    @while_mounted
    def _model_problem(self, message: ModelProblem) -> None:
        self._show_model(problem=f"{message.code}: {message.message}")

    def _show_model(self, problem: str | None = None) -> None:
        if self._current is None:  # before the serving modules load: the config's first choice
            choice = self.options.choices[0]
            label, signature = choice.describe(), choice.signature_name
            pinned = pin_text(choice.version, choice.version_label)
        else:
            spec = self._current.spec
            label, signature = spec_label(spec), spec.signature_name
            pinned = pin_text(spec.version, spec.version_label)
        self.query_one(ModelPanel).show(
            self.model_state, signature_name=signature, pinned=pinned, problem=problem
        )
        self.query_one(StatusHeader).model_text = label
        self.query_one("#chat-pane").border_title = f"Chat · {label} ({pinned})"

    @on(MetricsSampled)
    @while_mounted
    def _metrics_sampled(self, message: MetricsSampled) -> None:
        self.query_one(BatchPanel).show_server(message.server_batching, message.metrics_detail)
        note = "remote" if not self.options.embedded else "not running"
        self.query_one(MemoryPanel).show(message.console_rss, message.server_rss, note)

    # ---- burst (tui/burst.py's BurstScreen posts these to the app) ---------------------------

    @while_mounted
    def on_burst_screen_progress(self, message: Message) -> None:
        """A running burst's live figures go to the Burst panel."""
        self.query_one(BurstPanel).show(burst_progress_lines(message.progress))  # type: ignore[attr-defined]

    @while_mounted
    def on_burst_screen_finished(self, message: Message) -> None:
        """A finished burst's summary stays in the Burst panel."""
        self.query_one(BurstPanel).show(burst_report_lines(message.report))  # type: ignore[attr-defined]

    # ---- live panels -----------------------------------------------------------------------

    def _refresh_panels(self) -> None:
        """Render every panel from one snapshot, then schedule the next refresh."""
        try:
            self.query_one(StatusHeader).tick()
            if not self.paused and self.stats is not None:
                snapshot = self.stats.snapshot()
                self.query_one(ThroughputPanel).show(snapshot)
                self.query_one(LatencyPanel).show(snapshot)
                self.query_one(BatchPanel).show(snapshot)
                self.query_one(ModelPanel).show_served(self.last_served, snapshot.versions)
        except NoMatches:
            return  # torn down: no next refresh
        if not self._quitting:
            # Rescheduled after each render, so a slow render never stacks refreshes.
            self._panel_timer = self.set_timer(
                1 / self.options.config.ui.refresh_hz, self._refresh_panels
            )

    def action_pause_panels(self) -> None:
        """Pause or resume the live panels."""
        self.paused = not self.paused
        for panel in self.panels():
            panel.border_subtitle = "paused" if self.paused else ""
        self.notify("live panels paused" if self.paused else "live panels resumed", timeout=2)

    # ---- chat ------------------------------------------------------------------------------

    @on(Input.Submitted, "#prompt")
    async def _prompt_submitted(self, event: Input.Submitted) -> None:
        text = event.value
        prompt_input = self.query_one("#prompt", HistoryInput)
        prompt_input.value = ""
        if not text.strip():
            return
        prompt_input.remember(text)
        await self.run_slash(text)

    async def run_slash(self, text: str) -> None:
        """Run an input line: a slash command, or a prompt to send."""
        try:
            command = parse_slash(text)
        except SlashError as error:
            await self.chat_log.add_note(str(error), error=True)
            return
        if command is None:
            await self.send_prompt(text[1:] if text.lstrip().startswith("//") else text)
        else:
            await self.run_command(command)

    def prefill(self, text: str) -> None:
        """Put text in the prompt line for the reader to complete."""
        prompt_input = self.query_one("#prompt", HistoryInput)
        prompt_input.value = text
        prompt_input.cursor_position = len(text)
        prompt_input.focus()

    # ---- other actions ---------------------------------------------------------------------

    def _own_bindings(self) -> list[Binding]:
        return [binding for binding in self.BINDINGS if isinstance(binding, Binding)]

    def key_rows(self) -> list[tuple[str, str]]:
        """(keys, description) of each binding after the config's remapping, for help."""
        keymap = self.options.config.ui.key_bindings
        rows = []
        for binding in self._own_bindings():
            keys = keymap.get(binding.id or "", binding.key)
            rows.append((keys, binding.description or binding.action))
        rows += [("up,down", "walk earlier prompts"), ("enter", "send / run a /command")]
        return rows

    def action_help(self) -> None:
        """Show keys and commands."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.key_rows()))

    def action_focus_prompt(self) -> None:
        """Move focus back to the prompt line."""
        self.query_one("#prompt", HistoryInput).focus()

    async def action_clear_chat(self) -> None:
        """Clear the chat pane and start a new conversation."""
        await self.run_slash("/clear")

    async def action_export_transcript(self) -> None:
        """Export this conversation as Markdown and JSONL."""
        await self.run_slash("/export")

    async def action_burst(self) -> None:
        """Open the burst load form."""
        await self.run_slash("/burst")

    async def action_quit(self) -> None:
        """Stop the server (if embedded), close the client, and exit."""
        if self._quitting:
            return
        self._quitting = True
        self._set_server_state("offline", "stopping…")
        if self._panel_timer is not None:
            self._panel_timer.stop()
        self.workers.cancel_all()
        if self.backend is not None:
            await self.backend.close()
        if self.transcript is not None:
            self.transcript.close()
            self.transcript = None
        self.exit(0)

    def export_dir(self, argument: str | None) -> Path:
        """Where /export writes: the given directory or the data dir's exports folder."""
        return Path(argument).expanduser() if argument else self.options.data_dir / "exports"

    async def run_command(self, command: SlashCommand) -> None:
        """Run a parsed slash command (see tui.slash)."""
        await self.dispatch_slash(command)
