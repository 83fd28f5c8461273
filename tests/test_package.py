"""The package's top: the seed's API, importable with NumPy alone."""

import subprocess
import sys

import fashionnet
from fashionnet.model import functions, two_layer_net

HEAVY = ("prefect", "pandas", "pyarrow", "tensorflow")


def test_the_seed_api_is_at_the_top():
    from fashionnet import TwoLayerNet, cross_entropy_error, relu, softmax

    assert TwoLayerNet is two_layer_net.TwoLayerNet
    assert (relu, softmax, cross_entropy_error) == (
        functions.relu,
        functions.softmax,
        functions.cross_entropy_error,
    )
    assert sorted(fashionnet.__all__) == ["TwoLayerNet", "cross_entropy_error", "relu", "softmax"]
    assert fashionnet.__version__


def heavy_modules_after(statement: str, heavy: tuple[str, ...]) -> str:
    """Which of `heavy` a fresh interpreter has imported after `statement` (this one has
    imported Prefect and pandas for other tests)."""
    script = f"import sys\n{statement}\nprint(sorted(n for n in {heavy!r} if n in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def test_importing_fashionnet_imports_nothing_heavy():
    assert heavy_modules_after("from fashionnet import *", HEAVY) == "[]\n"


def test_the_command_line_starts_without_the_stages_libraries():
    """`fashionnet --help` (and every command before its work) imports neither Prefect nor the
    report's and the statistics' libraries: each command imports what it uses."""
    late = ("prefect", "scipy", "matplotlib", "tensorflow", "fashionnet.pipeline")
    assert heavy_modules_after("import fashionnet_flows.cli", late) == "[]\n"


def test_reading_runs_and_running_the_pipeline_import_matplotlib_only_to_draw():
    """`fashionnet runs` and `fashionnet report` (the terminal views), the pipeline and scoring
    do without matplotlib until they draw: its import took a third of those commands' time."""
    statement = "import fashionnet.report.terminal, fashionnet.pipeline, fashionnet.score.batch"
    assert heavy_modules_after(statement, ("matplotlib",)) == "[]\n"


def test_core_imports_no_later_stage():
    """fashionnet.core is what every stage stands on: it imports none of them (beyond the seed
    API that `import fashionnet` brings)."""
    script = (
        "import pkgutil, sys\nimport fashionnet.core\nbefore = set(sys.modules)\n"
        "for module in pkgutil.iter_modules(fashionnet.core.__path__):\n"
        "    __import__(f'fashionnet.core.{module.name}')\n"
        "print(sorted(name for name in set(sys.modules) - before\n"
        "    if name.startswith('fashionnet.') and not name.startswith('fashionnet.core')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == "[]\n"
