"""The OWL API's own OWL 2 DL profile checker (Debian ``libowlapi-java``), for ``b12kg check``.

``src/b12kg/java/ProfileCheck.java`` is compiled once with ``javac`` into a cache folder
(``$XDG_CACHE_HOME/b12kg``, or ``~/.cache/b12kg``; keyed by the source and the OWL API jar) and run
with ``java`` on the knowledge base's ontology folder: each module and the closure are loaded through
``catalog-v001.xml`` (never the network) and checked with ``OWL2DLProfile``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

JAVA_DIR = Path(os.environ.get("B12KG_JAVA_LIBS", "/usr/share/java"))
OWLAPI_JAR = JAVA_DIR / "owlapi-distribution.jar"
SOURCE = Path(__file__).with_name("java") / "ProfileCheck.java"
INSTALL_HINT = "install the OWL API and a JDK (Debian: apt-get install libowlapi-java default-jdk-headless)"


class OwlApiMissing(Exception):
    """The OWL API, java or javac is not installed."""


@dataclass(frozen=True)
class Violation:
    module: str  #: the file whose imports closure was checked
    kind: str  #: the OWL API's violation class, e.g. UseOfUndeclaredClass
    entity: str  #: the IRI the violation is about, or ""
    axiom: str  #: the axiom, in the OWL API's functional syntax, or ""
    ontology: str  #: the IRI of the ontology holding the axiom


def _classpath(folder: Path) -> str:
    # the OWL API's dependencies are Debian packages of their own: the whole Debian Java library,
    # the OWL API first
    return os.pathsep.join([str(OWLAPI_JAR), str(JAVA_DIR / "*"), str(folder)])


def _compiled() -> Path:
    for tool in ("java", "javac"):
        if shutil.which(tool) is None:
            raise OwlApiMissing(f"{tool} not found: {INSTALL_HINT}")
    if not OWLAPI_JAR.is_file():
        raise OwlApiMissing(f"{OWLAPI_JAR} not found: {INSTALL_HINT}")
    key = hashlib.sha256(SOURCE.read_bytes() + str(OWLAPI_JAR.stat().st_size).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "b12kg" / f"owlapi-{key}"
    if not (cache / "ProfileCheck.class").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["javac", "-nowarn", "-cp", _classpath(cache), "-d", str(cache), str(SOURCE)],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise OwlApiMissing(f"javac could not compile {SOURCE.name} against {OWLAPI_JAR}: "
                                f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    return cache


def check_profile(ontology_dir: Path, files: list[str]) -> list[Violation]:
    """OWL 2 DL violations of each file's imports closure, as the OWL API reports them."""
    folder = _compiled()
    done = subprocess.run(["java", "-cp", _classpath(folder), "ProfileCheck", str(ontology_dir), *files],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith(("SLF4J", "\tat "))]
        raise RuntimeError(lines[0] if lines else f"the OWL API exited {done.returncode}")
    out: list[Violation] = []
    module = ""
    for line in done.stdout.splitlines():
        if line.startswith("# "):
            module = line[2:]
            continue
        kind, entity, axiom, ontology = (line.split("\t") + ["", "", "", ""])[:4]
        out.append(Violation(module, kind, entity, axiom, ontology))
    return out
