"""Where a project's files live, from one root folder (the repo root by default)."""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def parquet_dir(self) -> Path:
        return self.data_dir / "parquet"

    @property
    def predictions_dir(self) -> Path:
        return self.data_dir / "predictions"

    @property
    def validation_dir(self) -> Path:
        """The validate stage's files: each split's card, and the last validation's CSVs
        (anomalies.csv outlives a run it stopped)."""
        return self.data_dir / "validation"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def champion_link(self) -> Path:
        """The blessed model's folder (a link to models/<model key>)."""
        return self.models_dir / "champion"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def runs_dir(self) -> Path:
        return self.reports_dir / "runs"

    @property
    def latest_link(self) -> Path:
        return self.reports_dir / "latest"

    @property
    def history_csv(self) -> Path:
        return self.reports_dir / "history.csv"

    @property
    def figure_cache_dir(self) -> Path:
        """The figures of the last report drawn, kept for a report drawn from the same data."""
        return self.root / ".cache" / "figures"

    @property
    def lock_file(self) -> Path:
        return self.data_dir / ".run.lock"

    @property
    def owned_folders(self) -> tuple[Path, ...]:
        """The folders a run makes and owns (besides data/, the lock's, and each model's), each
        after the folder it is in: what stands in their place is moved aside
        (`paths.clear_way`)."""
        return (
            self.raw_dir,
            self.parquet_dir,
            self.predictions_dir,
            self.validation_dir,
            self.cards_dir,
            self.models_dir,
            self.reports_dir,
            self.runs_dir,
        )

    def parquet(self, split: str) -> Path:
        return self.parquet_dir / f"{split}.parquet"

    def predictions(self, split: str) -> Path:
        return self.predictions_dir / f"{split}.parquet"

    @property
    def cards_dir(self) -> Path:
        return self.validation_dir / "cards"

    def card(self, split: str) -> Path:
        return self.cards_dir / f"{split}.npz"
