"""mkailin: distil biomedical question-answer corpora from PubMed, guided by the MeSH hierarchy."""

import os as _os

__version__ = "0.1.0"

# LanceDB's Rust core logs routine events (a new dataset, an index) as warnings on stderr.
_os.environ.setdefault("LANCE_LOG", "error")
