"""The console: chat pane on top, live ops panels below, commands and key bindings.

The app wires its parts: the chat pane (tui.widgets.chat_pane) owns the chat, the slash runner
(tui.runner) runs commands, the live loops (tui.live) poll the server, and a core ChatSession
talks to it. Workers post typed messages; the handlers here update the header and panels.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Container, Grid
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.timer import Timer

from core.identity import APP_NAME
from tui.keys import KEY_ACTIONS
from tui.messages import (
    BurstRequested,
    FleetSampled,
    HelpRequested,
    MetricsSampled,
    ModelProblem,
    ModelStateChanged,
    ReplicasRequested,
    ServerStateChanged,
    SessionFailed,
    SessionStarted,
    while_mounted,
)
from tui.options import ChatModel, ConsoleOptions
from tui.runner import SlashRunner
from tui.widgets.chat_pane import ChatPane
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
    from core.chat.session import ChatSession
    from core.client.monitor import ModelMonitor, ModelState
    from core.fleet.snapshot import FleetSnapshot
    from core.metrics.stats import StatsCollector
    from tui.burst import BurstScreen
    from tui.replicas import ReplicasScreen

# The chat entries' rules: not needed for the first frame, which has no entry.
CHAT_CSS_PATH = Path(__file__).with_name("chat.tcss")

# Stages of the console's life whose heap has been frozen (DeepChatApp.freeze_long_lived).
_FROZEN_STAGES: set[str] = set()

# What talks to servers (gRPC, numpy, protos, the batcher): loaded after the first frame.
SERVING_MODULES = (
    "core.client.serving",
    "core.chat.adapters",
    "core.metrics.stats",
    "core.client.monitor",
    "core.chat.session",
    "tui.live",
)


class DeepChatApp(App[int]):
    """The deepchat-tfs console."""

    CSS_PATH = "app.tcss"
    TITLE = APP_NAME
    # Focused as the screen mounts, so the footer's bindings are composed once for the prompt.
    AUTO_FOCUS = "#prompt"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (130, "-wide")]  # noqa: RUF012
    # Built from tui.keys, the one list of default keys. Binding ids are the action names
    # config.ui.key_bindings remaps; the config only holds overrides.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            action.keys,
            action.name,
            action.description,
            id=action.name,
            show=action.show,
            priority=action.priority,
        )
        for action in KEY_ACTIONS
    ]

    def __init__(self, options: ConsoleOptions, *, stats: StatsCollector | None = None) -> None:
        super().__init__()
        self.options = options
        # Every binding id is in the keymap, so the footer keeps BINDINGS' order after remapping.
        # Set before mounting: a keymap change later recomposes the footer.
        keymap = {binding.id: binding.key for binding in self._own_bindings() if binding.id}
        self.set_keymap({**keymap, **options.ui.key_bindings})
        # The session is created by ensure_session() once the serving modules are loaded.
        self.stats: StatsCollector | None = stats
        self.session: ChatSession | None = None
        self.monitor: ModelMonitor | None = None
        self.model_state: ModelState | None = None
        self.server_state = "starting" if options.embedded else "connecting"
        self.paused = False
        self.last_served: int | None = None
        self._panel_timer: Timer | None = None
        # What the panels last drew from the console's stats (snapshot less its time, served).
        self._shown_figures: tuple[object, int | None] | None = None
        self._live_started = False
        self._quitting = False
        self.fleet_snapshot: FleetSnapshot | None = None
        self.fleet_detail = "waiting for the servers' metrics"
        self._replicas: ReplicasScreen | None = None
        self._burst_screen: BurstScreen | None = None
        # The parts the app wires: the chat pane and the runner of its slash commands.
        self.chat = ChatPane(
            options.models[0],
            self.ensure_session,
            transcript_path=options.transcript_path,
            exports_dir=options.exports_dir,
            target_label=options.target_label,
            id="chat-pane",
        )
        self.slash = SlashRunner(options, self.chat, lambda: self.model_state)
        self._footer_bar = Container(id="footer-bar")

    def ensure_session(self) -> ChatSession:
        """The shared stats and chat session, created on first use."""
        if self.session is None:
            from core.chat.session import ChatSession
            from core.metrics.stats import StatsCollector
            from tui.heap import pin_malloc_thresholds

            # Before the stats' histograms: freed histogram-sized blocks go back to the system
            # instead of fragmenting the heap (tui.heap; ctypes loads after the first frame).
            pin_malloc_thresholds()

            if self.stats is None:
                self.stats = StatsCollector()
            options = self.options = self.options.resolve_config()
            self.session = ChatSession(
                options.config,
                self.stats,
                targets=options.targets,
                rest_url=options.rest_url,
                embedded=options.embedded,
                data_dir=options.data_dir,
                connect=options.connect,
            )
        return self.session

    # ---- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        ui = self.options.ui
        yield StatusHeader(self.options.clock, id="header")
        yield self.chat
        with Grid(id="panels"):
            yield ThroughputPanel(id="throughput")
            yield LatencyPanel(ui.latency_warn_ms, ui.latency_crit_ms, id="latency")
            yield BatchPanel(id="batch")
            yield ModelPanel(id="model")
            yield BurstPanel("F5 or /burst 200rps 30s", id="burst")
            yield MemoryPanel(id="memory")
        # The footer's keys are drawn a frame after the first one, whatever is done: its bar
        # holds the row until then, and the Footer (its module and CSS) comes after that frame.
        yield self._footer_bar

    def on_mount(self) -> None:
        self.query_one(StatusHeader).target_text = self.options.target_label
        self.watch(self.chat, "model", self._chat_model_changed, init=False)
        self.watch(self.chat, "last_served", self._served_changed, init=False)
        self._show_model()
        if not self.options.connect:
            self._set_server_state("offline")
        elif self.options.embedded:
            self._set_server_state("starting", "loading the model in a child process")
        else:
            self._set_server_state("connecting")
        self.query_one(MemoryPanel).server_note = (
            "n/a (offline)"
            if not self.options.connect
            else "starting"
            if self.options.embedded
            else "remote"
        )
        self._refresh_panels()
        # An interval, not a timer set again after each refresh: Textual wraps every set_timer
        # callback in a new partial whose signature it inspects, ~0.5 ms a refresh at 4 Hz. An
        # interval that falls behind skips the missed ticks, so refreshes never stack either.
        self._panel_timer = self.set_interval(
            1 / self.options.ui.refresh_hz, self._refresh_panels, name="panels"
        )
        self.call_after_refresh(self.first_frame_drawn)
        if self.options.connect:
            # After the first frame: opening channels and polling must not delay it.
            self.call_after_refresh(self.start_session)

    async def first_frame_drawn(self) -> None:
        """The first frame is out: the cyclic collector, off while the console started
        (tui.main), runs again, the chat entries' rules (tui/chat.tcss) are read, and the
        footer is mounted in its bar."""
        from textual.widgets import Footer

        gc.enable()
        if not self.stylesheet.has_source(str(CHAT_CSS_PATH), ""):
            self.stylesheet.read(CHAT_CSS_PATH)
            self.stylesheet.update(self)
        if not self._footer_bar.children:
            await self._footer_bar.mount(Footer())
            # A Footer composes its keys when the screen's bindings change: say they did.
            self._footer_bar.screen.refresh_bindings()

    @staticmethod
    def freeze_long_lived(stage: str) -> None:
        """Take every object alive now out of the cyclic collector's walks (gc.freeze), once.

        What the console loads (Textual, grpc, the protos, the load modules) is about 100,000
        objects that live until exit; a full collection walks them all holding the GIL, 50-70 ms
        on an idle 2-core machine and more during a burst, and every key typed meanwhile waits.
        Frozen, they are skipped by later collections; reference counting still frees them. No
        collection runs first (it would be the very pause this avoids), and each stage freezes
        once per process: cyclic garbage alive at that moment stays, a bounded one-off.
        """
        if stage not in _FROZEN_STAGES:
            _FROZEN_STAGES.add(stage)
            gc.freeze()

    def panels(self) -> list[Panel]:
        """Every live panel."""
        return list(self.query(Panel))

    # ---- serving link ----------------------------------------------------------------------

    @work(group="serving", exit_on_error=False, description="start the server link")
    async def start_session(self) -> None:
        """Start the embedded server / open the client; posts SessionStarted or SessionFailed."""
        # Imported in a thread so the first frame is out and keys keep working meanwhile; a
        # cached config's models are built there too.
        for name in SERVING_MODULES:
            await asyncio.to_thread(importlib.import_module, name)
        self.options = await asyncio.to_thread(self.options.resolve_config)
        session = self.ensure_session()
        try:
            await session.start()
        except Exception as error:  # any start-up failure is shown; the console stays up
            self.post_message(SessionFailed(str(error)))
            return
        self.post_message(SessionStarted(session.targets))

    def _start_live_loops(self) -> None:
        from tui.live import poll_model, sample_memory

        session = self.ensure_session()
        if self._live_started or session.client is None:
            return
        self._live_started = True
        self._new_monitor()
        self.run_worker(
            poll_model(lambda: self.monitor, self.post_message), name="poll-model", group="live"
        )
        self.run_worker(sample_memory(session, self.post_message), name="memory", group="live")
        self.run_worker(
            self._watch_fleet,
            name="fleet",
            group="live",
            thread=True,
            exit_on_error=False,
            description="sample the servers' metrics",
        )

    def _watch_fleet(self) -> None:
        """Thread worker: sample the fleet in its own event loop until the worker is cancelled."""
        from textual.worker import get_current_worker

        from tui.live import FleetWatch, fleet_sampler_for

        worker = get_current_worker()
        session = self.ensure_session()
        watch = FleetWatch(
            lambda: fleet_sampler_for(session, window_s=self.options.fleet_window_s),
            self.post_message,
            model_name=lambda: self.chat.model.spec.name,
            paused=lambda: self.paused,
            stopped=lambda: worker.is_cancelled or self._quitting,
            interval_s=self.options.fleet_interval_s,
        )
        watch.run()

    def _new_monitor(self) -> None:
        from core.client.monitor import ModelMonitor

        if self.session is None or self.session.client is None:
            return
        spec = self.chat.model.spec
        labels = [m.spec.version_label for m in self.options.models if m.spec.version_label]
        if spec.version_label:
            labels.append(spec.version_label)
        self.monitor = ModelMonitor(self.session.client, spec, labels=labels)

    def _set_server_state(self, state: str, detail: str = "") -> None:
        self.server_state = state
        header = self.query_one(StatusHeader)
        header.server_state = state
        header.detail = detail
        down = state in ("down", "failed")
        for panel in self.panels():
            panel.set_class(down, "-down")

    @on(SessionStarted)
    @while_mounted
    def _session_started(self, message: SessionStarted) -> None:
        targets = ", ".join(message.targets)
        if self.options.embedded:
            self.query_one(StatusHeader).target_text = f"{self.options.target_label} {targets}"
        self._start_live_loops()
        self._set_server_state("connecting", targets)
        self.freeze_long_lived("serving")  # the serving modules are loaded: start-up is done

    @on(SessionFailed)
    @while_mounted
    def _session_failed(self, message: SessionFailed) -> None:
        first_line = message.reason.splitlines()[0] if message.reason else "failed to start"
        self.notify(first_line, title="server failed", severity="error", timeout=15)
        self._set_server_state("failed", first_line)
        self._show_model(problem=f"UNAVAILABLE: {message.reason}")

    @on(ServerStateChanged)
    @while_mounted
    def _server_state_changed(self, message: ServerStateChanged) -> None:
        if (message.state, message.detail) != (
            self.server_state,
            self.query_one(StatusHeader).detail,
        ):
            self._set_server_state(message.state, message.detail)

    # ---- the model -------------------------------------------------------------------------

    def _chat_model_changed(self, previous: ChatModel, model: ChatModel) -> None:
        """The chat switched models or pins: poll the new spec and show it."""
        if model.spec.name != previous.spec.name:
            self.model_state = None
        self._new_monitor()
        self._show_model()

    def _served_changed(self, served_version: int | None) -> None:
        self.last_served = served_version
        served = f"v{served_version}" if served_version is not None else "v?"
        self.query_one(StatusHeader).served_text = f"last reply {served}"

    @on(ModelStateChanged)
    @while_mounted
    def _model_state_changed(self, message: ModelStateChanged) -> None:
        state = message.model_state
        if state.model_name != self.chat.model.spec.name:
            return  # a poll that started before /model switched
        self.model_state = state
        for version in state.newly_available:
            self.ensure_session().forget_adapters()  # a new version may bring a new signature
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
        spec = self.chat.model.spec
        self.query_one(ModelPanel).show(
            self.model_state,
            signature_name=spec.signature_name,
            pinned=spec.pin_text(),
            problem=problem,
        )
        self.query_one(StatusHeader).model_text = spec.describe()

    @on(MetricsSampled)
    @while_mounted
    def _metrics_sampled(self, message: MetricsSampled) -> None:
        note = "remote" if not self.options.embedded else "not running"
        self.query_one(MemoryPanel).show(message.console_rss, message.server_rss, note)

    @on(FleetSampled)
    @while_mounted
    def _fleet_sampled(self, message: FleetSampled) -> None:
        """The servers' figures go to Throughput, Latency, Batch fill and the replicas view."""
        if message.snapshot is not None:
            self.fleet_snapshot = message.snapshot
        self.fleet_detail = message.detail
        for panel in (
            self.query_one(ThroughputPanel),
            self.query_one(LatencyPanel),
            self.query_one(BatchPanel),
        ):
            panel.show_fleet(message.snapshot, message.detail)
        if self._replicas is not None:
            self._replicas.show(message.snapshot, message.detail)

    # ---- commands --------------------------------------------------------------------------

    @on(ChatPane.CommandEntered)
    async def _command_entered(self, message: ChatPane.CommandEntered) -> None:
        await self.slash.run(message.command)

    @on(HelpRequested)
    def _help_requested(self) -> None:
        self.action_help()

    @on(ReplicasRequested)
    def _replicas_requested(self) -> None:
        self.action_replicas()

    @on(BurstRequested)
    async def _burst_requested(self, message: BurstRequested) -> None:
        from tui.burst import BurstScreen

        self.freeze_long_lived("burst")  # the load modules just imported live until exit too

        if self.session is None or not self.session.targets:
            await self.chat.add_note(
                "the server is not running yet; /burst can start once it serves", error=True
            )
            return
        # A burst left running behind the console (F4 there) is shown again, not started twice.
        running = self._burst_screen
        if running is not None and running.running:
            if not message.args:
                self.push_screen(running)
                return
            await self.chat.add_note(
                "a burst is already running; F5 shows it, Esc there aborts it", error=True
            )
            return
        if running is not None:
            self.uninstall_screen(running)
        # `/burst 200rps 30s` starts at once; a bare `/burst` (or the key) opens the form.
        screen = BurstScreen(
            list(self.session.targets),
            self.chat.model.spec,
            message.args,
            autostart=bool(message.args),
        )
        # Installed, so leaving it for the console (F4) keeps its run going.
        self.install_screen(screen, name="burst")
        self._burst_screen = screen
        self.push_screen(screen)

    # Named handlers: tui.burst (and gRPC with it) is imported only when a burst starts.
    @while_mounted
    def on_burst_screen_progress(self, message: BurstScreen.Progress) -> None:
        """A running burst's live figures go to the Burst panel."""
        self.query_one(BurstPanel).show(burst_progress_lines(message.progress))

    @while_mounted
    def on_burst_screen_finished(self, message: BurstScreen.Finished) -> None:
        """A finished burst's summary stays in the Burst panel."""
        self.query_one(BurstPanel).show(burst_report_lines(message.report))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The console's commands in the command palette, then Textual's own."""
        from tui.palette import console_commands  # first use: not on the first frame's path

        yield from console_commands(
            run_line=self.slash.run_line,
            prefill=self.chat.prefill,
            run_action=self.run_action,
            models=self.options.models,
            versions=self.slash.known_versions(),
            labels=self.slash.known_labels(),
            signatures=self.slash.known_signatures(),
        )
        yield from super().get_system_commands(screen)

    # ---- live panels -----------------------------------------------------------------------

    def _refresh_panels(self) -> None:
        """Render every panel from one snapshot (the header clock too)."""
        try:
            self.query_one(StatusHeader).tick()
            if not self.paused and self.stats is not None and self._panels_visible():
                snapshot = self.stats.snapshot()
                # An idle console's snapshots repeat (only taken_at moves): nothing to redraw.
                figures = dataclasses.replace(snapshot, taken_at=0.0)
                if (figures, self.last_served) != self._shown_figures:
                    self._shown_figures = (figures, self.last_served)
                    self.query_one(ThroughputPanel).show(snapshot)
                    self.query_one(LatencyPanel).show(snapshot)
                    self.query_one(BatchPanel).show(snapshot)
                    self.query_one(ModelPanel).show_served(self.last_served, snapshot.versions)
        except NoMatches:
            return  # torn down

    def _panels_visible(self) -> bool:
        """Whether the console's screen shows (a full screen such as the burst form hides it)."""
        return self.screen is self.screen_stack[0] or self.screen.is_modal

    def action_pause_panels(self) -> None:
        """Pause or resume the live panels."""
        self.paused = not self.paused
        for panel in self.panels():
            panel.border_subtitle = "paused" if self.paused else ""
        self.notify("live panels paused" if self.paused else "live panels resumed", timeout=2)

    # ---- keys ------------------------------------------------------------------------------

    def _own_bindings(self) -> list[Binding]:
        return [binding for binding in self.BINDINGS if isinstance(binding, Binding)]

    def key_rows(self) -> list[tuple[str, str]]:
        """(keys, description) of each binding after the config's remapping, for help."""
        keymap = self.options.ui.key_bindings
        rows = []
        for binding in self._own_bindings():
            keys = keymap.get(binding.id or "", binding.key)
            rows.append((keys, binding.description or binding.action))
        rows += [("up,down", "walk earlier prompts"), ("enter", "send / run a /command")]
        return rows

    def action_help(self) -> None:
        """Show keys and commands."""
        from tui.screens import HelpScreen  # first use: not on the first frame's path

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.key_rows()))

    def action_focus_prompt(self) -> None:
        """Move focus back to the prompt line."""
        self.chat.focus_prompt()

    async def action_retry(self) -> None:
        """Retry the most recent failed prompt."""
        await self.chat.retry_latest()

    async def action_clear_chat(self) -> None:
        """Clear the chat pane and start a new conversation."""
        await self.slash.run_line("/clear")

    async def action_export_transcript(self) -> None:
        """Export this conversation as Markdown and JSONL."""
        await self.slash.run_line("/export")

    def action_replicas(self) -> None:
        """Open (or close) the replicas view."""
        from tui.replicas import ReplicasScreen

        if self._replicas is not None:
            if self.screen is self._replicas:
                self._replicas.dismiss(None)
            return
        ui = self.options.ui
        self._replicas = ReplicasScreen(ui.latency_warn_ms, ui.latency_crit_ms, self.fleet_snapshot)

        def closed(_: None) -> None:
            self._replicas = None

        self.push_screen(self._replicas, callback=closed)

    async def action_burst(self) -> None:
        """Open the burst load form."""
        await self.slash.run_line("/burst")

    async def action_quit(self) -> None:
        """Stop the server (if embedded), close the client, and exit."""
        if self._quitting:
            return
        self._quitting = True
        self._set_server_state("offline", "stopping…")
        if self._panel_timer is not None:
            self._panel_timer.stop()
        self.workers.cancel_all()
        if self.session is not None:
            await self.session.close()
        self.chat.close_transcript()
        self.exit(0)
