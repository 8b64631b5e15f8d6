"""Where a run reports: TensorBoard event files, metrics.jsonl and the console, behind one interface."""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from charrnn.console import stderr_console
from charrnn.errors import TrainingFailed
from charrnn.jupyter import NotebookProgress, in_jupyter
from charrnn.safe_files import atomic_write
from charrnn.vocab import visible_char


def _fmt(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "-"


def _hparam_value(value: Any) -> bool | int | float | str:
    # torch files booleans as numbers (0.0/1.0); as strings they read true/false in the HParams table.
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, int | float | str) else str(value)


_STATUS_SUFFIX = ".status"

_GO_ON = "continue with --resume (a run with no checkpoint yet: train it again)"


def _quiet_event_writer_threads() -> None:
    """TensorBoard writes events in a thread that, on a full disk, prints its traceback ("Exception in thread
    ...") and hands the error to the next write in the main thread: there it becomes charrnn's one-line error, so
    the thread's own report is left out. Other threads' exceptions are reported as always."""
    previous = threading.excepthook
    if getattr(previous, "charrnn_quiet", False):
        return

    def hook(args):
        if type(args.thread).__name__ == "_AsyncWriterThread" and issubclass(args.exc_type, OSError):
            return
        previous(args)

    hook.charrnn_quiet = True
    threading.excepthook = hook


def _writes_events(method):
    """A TensorBoard write that fails (a full disk) is a one-line TrainingFailed naming the run folder."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except OSError as exc:
            raise TrainingFailed(f"could not write the TensorBoard log in {self.run_dir} ({exc.strerror or exc}); "
                                 f"free some space, then {_GO_ON}") from None

    return wrapper


def _wait_to_sort_after_existing_event_files(run_dir: Path, limit_s: float = 2.0) -> None:
    """TensorBoard reads a run's event files in name order, and a name starts with the second it was made: a
    session resumed within the second of the one before must wait for the next second (at most limit_s, in case
    a file's time lies in the future) so its file sorts after the earlier one."""
    newest = 0
    for path in run_dir.glob("events.out.tfevents.*"):
        stamp = path.name.split(".")[3]
        if stamp.isdigit() and not path.name.endswith(_STATUS_SUFFIX):
            newest = max(newest, int(stamp))
    wait = newest + 1 - time.time()
    if 0 < wait <= limit_s:
        time.sleep(wait)


class Tracker:
    """Logs scalars, text and evals of a training run; only rank 0 of a distributed run writes anything."""

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True, quiet: bool = False,
                 enabled: bool = True, total_steps: int | None = None, time_budget: float | None = None,
                 start_step: int = 0, purge_step: int | None = None):
        self.run_dir, self.enabled, self.quiet = Path(run_dir), enabled, quiet
        self.writer = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: it is slow to import

            _quiet_event_writer_threads()
            if purge_step is not None:
                _wait_to_sort_after_existing_event_files(self.run_dir)
            # purge_step hides events a crashed session logged after the checkpoint it resumes from.
            self.writer = SummaryWriter(log_dir=str(self.run_dir), flush_secs=10, purge_step=purge_step)
        self.console = stderr_console()
        self.total_steps, self.time_budget = total_steps, time_budget
        self._progress = None
        self._task = None
        self._last_val = float("nan")
        by_steps = time_budget is None  # a step limit alone: the bar ends at a known step, else with the clock
        if enabled and not quiet and in_jupyter():  # a notebook: an HTML bar, updated in place
            self._progress = NotebookProgress()
        elif enabled and not quiet and self.console.is_terminal and sys.stdout.isatty():
            self._progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[where]}"),
                TextColumn("loss [cyan]{task.fields[loss]}"),
                TextColumn("val [magenta]{task.fields[val]}"),
                TextColumn("{task.fields[speed]} chars/s"),
                TextColumn("ETA" if by_steps else "left"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
        if self._progress is not None:
            start = start_step / total_steps if by_steps and total_steps else 0.0  # the bar: the fraction done
            self._task = self._progress.add_task("train", total=1.0, completed=start, where="", loss="-", val="-",
                                                 speed="-")
            self._progress.start()

    # -- TensorBoard -------------------------------------------------------------------------------
    @_writes_events
    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                if value is not None and math.isfinite(value):
                    self.writer.add_scalar(tag, value, step)

    @_writes_events
    def text(self, step: int, tag: str, text: str) -> None:
        if self.writer is not None:
            from tensorboard.plugins.text.summary_v2 import text_pb

            # TensorBoard renders text as Markdown: a code block keeps line breaks and spacing. text_pb keeps
            # the tag as given, where SummaryWriter.add_text would file it under "<tag>/text_summary".
            markdown = "```\n" + text.replace("```", "'''") + "\n```"
            self.writer.file_writer.add_summary(text_pb(tag, markdown), step)

    @_writes_events
    def hparams(self, hparams: dict[str, Any], metric_tags: list[str]) -> None:
        """Declare the run's hyperparameters and the scalar tags that score it (HParams tab)."""
        if self.writer is None:
            return
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        clean = {k: _hparam_value(v) for k, v in hparams.items()}
        exp, ssi, _ = hparams_summary(clean, {tag: 0.0 for tag in metric_tags})  # the end comes at the end
        for summary in (exp, ssi):  # file_writer: the writer's public FileWriter, set while it is open
            self.writer.file_writer.add_summary(summary)

    @_writes_events
    def session_status(self, status: str) -> None:
        """The HParams session status: running, success, failure or aborted. TensorBoard keeps the first status
        it reads for a run, so the status lives alone in a small event file of its own that each change replaces
        (a session that was killed stays 'running'; one that is resumed and finishes becomes 'success')."""
        if self.writer is None:
            return
        from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
        from torch.utils.tensorboard.writer import FileWriter

        end = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value(f"STATUS_{status.upper()}"),
                                             end_time_secs=time.time())
        content = plugin_data_pb2.HParamsPluginData(session_end_info=end, version=metadata.PLUGIN_DATA_VERSION)
        plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString())
        summary = Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG,
                                               metadata=SummaryMetadata(plugin_data=plugin))])
        for old in self.run_dir.glob(f"events.out.tfevents.*{_STATUS_SUFFIX}"):
            old.unlink(missing_ok=True)
        writer = FileWriter(str(self.run_dir), filename_suffix=_STATUS_SUFFIX)
        writer.add_summary(summary)
        writer.close()

    @_writes_events
    def parameter_histograms(self, step: int, model: Any) -> None:
        """The distribution of every weight and of its gradient (weights/NAME, grads/NAME)."""
        if self.writer is None:
            return
        for name, p in model.named_parameters():
            self.writer.add_histogram(f"weights/{name}", p.detach().float().cpu(), step)
            if p.grad is not None:
                self.writer.add_histogram(f"grads/{name}", p.grad.detach().float().cpu(), step)

    @_writes_events
    def embedding(self, step: int, weights: Any, chars: list[str]) -> None:
        """The character embedding in the Projector, each point labelled by its character."""
        if self.writer is not None:
            labels = [visible_char(c) for c in chars]
            self.writer.add_embedding(weights.detach().float().cpu(), metadata=labels, tag="char_embedding",
                                      global_step=step)

    # -- metrics.jsonl and console -----------------------------------------------------------------
    def eval_record(self, record: dict[str, Any]) -> None:
        """One line in metrics.jsonl, the val/* scalars and a console line for an evaluation."""
        if not self.enabled:
            return
        # Strict JSON: a value that is not a finite number (no train steps since the last eval) is null.
        clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
        # One write(2) of the whole line on an O_APPEND descriptor: a kill leaves a line whole or absent.
        path = self.run_dir / "metrics.jsonl"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                line = (json.dumps(clean) + "\n").encode("utf-8")
                if os.write(fd, line) != len(line):
                    raise OSError(28, "No space left on device")  # a short write: the rest did not fit
            finally:
                os.close(fd)
        except OSError as exc:
            raise TrainingFailed(f"could not write {path} ({exc.strerror or exc}); free some space, then {_GO_ON}"
                                 ) from None
        self.scalars(record["step"], {"val/loss": record.get("val_loss"), "val/bpc": record.get("val_bpc"),
                                      "val/accuracy": record.get("val_accuracy")})
        if "val_loss_average" in record:  # train.ema: both were scored, val/loss is the better
            self.scalars(record["step"], {"val/loss_average": record["val_loss_average"],
                                          "val/loss_weights": record["val_loss_weights"]})
        self._last_val = record.get("val_loss", float("nan"))
        if self._progress is not None:  # the bar was last drawn before this eval: show its val loss now
            self._progress.update(self._task, val=_fmt(self._last_val))
        train_loss = record["train_loss"]  # none before the first step (a fine-tuned run is scored at step 0)
        shown = f"{train_loss:.4f}" if isinstance(train_loss, float) and math.isfinite(train_loss) else "-"
        line = (f"step {record['step']}: train loss {shown}"
                f"  val loss {record['val_loss']:.4f}{_which(record)}  bpc {record['val_bpc']:.3f}"
                f"  acc {record['val_accuracy']:.3f}  {record['chars_per_sec']:,.0f} chars/s")
        if self._progress is not None:
            self._progress.console.print(line)
        elif not self.quiet:
            print(line, file=sys.stderr, flush=True)

    def progress(self, step: int, done: float, loss: float, chars_per_sec: float) -> None:
        """The bar after a step; `done` is the fraction of the run done, the Trainer's (by steps or by time, the
        larger: whichever limit ends the run)."""
        if self._progress is None:
            return
        where = f"{step}/{self.total_steps}" if self.total_steps and not self.time_budget else f"step {step}"
        self._progress.update(self._task, completed=min(done, 1.0), where=where, loss=f"{loss:.3f}",
                              val=_fmt(self._last_val),
                              speed=f"{chars_per_sec:,.0f}")

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.console.print(text)
        elif not self.quiet:
            print(text, file=sys.stderr, flush=True)

    @_writes_events
    def flush(self) -> None:
        """Write buffered events to disk now (before a checkpoint, so a crash loses no logged step)."""
        if self.writer is not None:
            self.writer.flush()

    @_writes_events
    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.flush()
            finally:
                writer.close()


def flat_hparams(config: dict) -> dict:
    """A config as HParams: model.* and train.* settings (set ones only) and the top-level values."""
    flat = {}
    for section, values in config.items():
        if isinstance(values, dict):
            for key, value in values.items():
                if section in ("model", "train") and value is not None:
                    flat[f"{section}.{key}"] = value
        else:
            flat[section] = values
    return flat


def truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop eval lines written after the checkpoint (they will be written again), and a half
    line that a kill may have left."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if int(json.loads(line)["step"]) <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    atomic_write(path, lambda f: f.write("".join(line + "\n" for line in kept).encode("utf-8")))


def _which(record: dict[str, Any]) -> str:
    """Under train.ema, which of the two scored models val loss is (the one validation kept), and the other's:
    " (average; weights 1.4612)"."""
    if "val_loss_average" not in record:
        return ""
    average, weights = record["val_loss_average"], record["val_loss_weights"]
    if record["val_loss"] == average:
        return f" (average; weights {weights:.4f})"
    return f" (weights; average {average:.4f})"
