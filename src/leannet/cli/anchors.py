"""`leannet anchors --data SOURCE -k 5`: YOLO9000's k-means anchors (distance 1 - IoU) and the
mean IoU they reach."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def register(app: typer.Typer) -> None:
    """Add the `anchors` command."""

    @app.command("anchors")
    def anchors(
        data: str = typer.Option(..., "--data", help="Detection source: digits-detect, yolo:PATH."),
        k: int = typer.Option(5, "-k", help="Number of anchors (v2: 5, v3: 9)."),
        root: Optional[Path] = typer.Option(None, "--root", help="Data root folder."),
        image_size: Optional[int] = typer.Option(None, "--image-size", help="Input size (px)."),
        seed: int = typer.Option(0, "--seed", help="k-means seed."),
    ) -> None:
        """Print anchors by k-means on the training boxes, and the mean IoU for 1..k clusters."""
        from leannet.data import get_source
        from leannet.detect.anchors import kmeans_anchors
        from leannet.errors import LeannetError

        if k < 1:
            raise LeannetError(f"-k must be at least 1, got {k}")
        source = get_source(data, root, image_size=image_size, augment=False)
        sizes = getattr(source.train, "box_sizes", None)
        if source.task != "detect" or sizes is None:
            raise LeannetError(f"{data!r} is not a detection source; expected digits-detect or "
                               "yolo:PATH")
        wh = sizes()
        curve = Table("clusters", "mean IoU", title=f"k-means on {len(wh)} boxes ({data})")
        for clusters in range(1, k + 1):
            found, mean = kmeans_anchors(wh, clusters, seed=seed)
            curve.add_row(str(clusters), f"{mean:.3f}")
        console.print(curve)
        table = Table("anchor", "width (px)", "height (px)",
                      title=f"{k} anchors at {source.image_size} px, mean IoU {mean:.3f}")
        for index, (w, h) in enumerate(found.tolist()):
            table.add_row(str(index), f"{w:.1f}", f"{h:.1f}")
        console.print(table)
