"""b12kg: the vitamin B12 post-stroke guideline as a knowledge graph.

The public API is small: :func:`recommend` evaluates patient RDF against the guideline and
returns a :class:`~b12kg.derive.Evaluation`; :func:`load_patient` reads a patient file.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("b12kg")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"

from b12kg.derive import Evaluation, recommend  # noqa: E402
from b12kg.errors import B12kgError, InputError, KnowledgeBaseError  # noqa: E402
from b12kg.patient import load_patient  # noqa: E402

__all__ = [
    "B12kgError",
    "Evaluation",
    "InputError",
    "KnowledgeBaseError",
    "__version__",
    "load_patient",
    "recommend",
]
