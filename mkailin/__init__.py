"""mkailin: distil biomedical question-answer corpora from PubMed, guided by the MeSH hierarchy."""

__version__ = "0.1.0"
