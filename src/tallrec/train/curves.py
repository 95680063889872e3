"""rec_tune's per-epoch curves (train loss, valid AUC), in dvclive's file layout, with or without dvclive."""

from __future__ import annotations

import shutil
from pathlib import Path


def curves(folder: Path, resume: bool):
    """dvclive logger of one configuration's curves (train loss, valid AUC per epoch), written into a
    scratch folder that `train` publishes with the adapter (a killed run leaves the finished curves
    alone). `train` sets its step to the epochs already done; rows from an epoch a kill cut short are
    dropped here."""
    if not resume:
        shutil.rmtree(folder, ignore_errors=True)  # an unfinished older run's
    try:
        from dvclive import Live
    except ImportError:  # a machine without DVC, such as a bare GPU box: the same files, written by hand
        return TsvCurves(folder)
    # no dvc.yaml edits, no report, no git
    return TrimmingLive(Live(str(folder), resume=resume, report=None, save_dvc_exp=False, dvcyaml=None), folder)


def trim_curves(folder: Path, steps: int) -> None:
    """Keep only the rows of steps < `steps` in every curve file of `folder` (dvclive's layout)."""
    for tsv in (Path(folder) / "plots" / "metrics").rglob("*.tsv"):
        header, *rows = tsv.read_text().splitlines()
        at = header.split("\t").index("step")
        kept = [r for r in rows if int(r.split("\t")[at]) < steps]
        if len(kept) != len(rows):
            tsv.write_text("\n".join([header, *kept]) + "\n")


class TrimmingLive:
    """dvclive's Live whose step can be set back to the epochs a resumed run has done (dvclive's own
    resume restarts at step 0 after one finished step, and keeps rows of an epoch a kill cut short)."""

    def __init__(self, live, folder: Path):
        self.live, self.folder, self.ended = live, folder, False

    @property
    def step(self) -> int:
        return self.live.step

    @step.setter
    def step(self, value: int) -> None:
        trim_curves(self.folder, value)
        self.live.step = value

    def log_metric(self, name: str, value: float) -> None:
        self.live.log_metric(name, value)

    def next_step(self) -> None:
        self.live.next_step()

    def end(self) -> None:
        if not self.ended:
            self.live.end()
        self.ended = True


class TsvCurves:
    """The part of dvclive's Live that `train` uses, writing the files dvclive writes
    (`<folder>/plots/metrics/<metric>.tsv`, columns step and the metric's last name part), so
    `dvc plots show` draws curves made where dvclive is not installed."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.root = self.folder / "plots" / "metrics"
        self.pending: dict[str, float] = {}
        self._step = 0

    @property
    def step(self) -> int:
        return self._step

    @step.setter
    def step(self, value: int) -> None:
        trim_curves(self.folder, value)
        self._step = value

    def log_metric(self, name: str, value: float) -> None:
        self.pending[name] = value

    def next_step(self) -> None:
        for name, value in self.pending.items():
            path = self.root / f"{name}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            new = not path.exists()
            with path.open("a") as f:
                f.write((f"step\t{name.split('/')[-1]}\n" if new else "") + f"{self._step}\t{value}\n")
        self.pending.clear()
        self._step += 1

    def end(self) -> None:
        self.pending.clear()
