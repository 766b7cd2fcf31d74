"""The table contract: the Arrow schema of every physical table in the lake.

Stages talk to each other only through these tables. Views in ``sql/`` build the
user-facing relations (``articles``, ``article_mesh``, ``runs``, the MeSH similarity views)
on top of them.
"""

from __future__ import annotations

import pyarrow as pa

_str = pa.string()
_i64 = pa.int64()
_i32 = pa.int32()
_f64 = pa.float64()
_ts = pa.timestamp("us", tz="UTC")


def _schema(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(n, t) for n, t in fields])


TABLES: dict[str, pa.Schema] = {
    # One row per PubMed record version seen, in ingest order; the `articles` view resolves them.
    "article_records": _schema(
        ("pmid", _i64),
        ("title", _str),
        ("abstract", _str),
        ("journal", _str),
        ("pub_year", _i32),
        ("language", _str),
        ("source", _str),  # pubmed | pubmedqa
        ("source_file", _str),
        ("version", _i32),
        ("ingest_seq", _i64),  # file_seq * 1e8 + record index: later wins
        ("deleted", pa.bool_()),  # a DeleteCitation tombstone
    ),
    "article_mesh_records": _schema(
        ("pmid", _i64),
        ("ingest_seq", _i64),
        ("descriptor_ui", _str),  # NULL when a name could not be mapped
        ("descriptor_name", _str),
        ("major_topic", pa.bool_()),
        ("qualifiers", pa.list_(_str)),
    ),
    "ingested_files": _schema(
        ("source", _str),
        ("path", _str),
        ("file_key", _str),  # sha256 of the bytes
        ("size", _i64),
        ("file_seq", _i64),
        ("records", _i64),
        ("quarantined", _i64),
        ("status", _str),  # complete | partial
        ("ingested_at", _ts),
        ("rows", _i64),  # the rows it put in article_records (lake verify checks them)
    ),
    "mesh_descriptors": _schema(
        ("descriptor_ui", _str),
        ("name", _str),
        ("tree_numbers", pa.list_(_str)),
        ("entry_terms", pa.list_(_str)),
    ),
    "mesh_tree": _schema(
        ("tree_number", _str),
        ("descriptor_ui", _str),
        ("parent_tree_number", _str),
        ("depth", _i32),
        ("category", _str),
    ),
    "pubmedqa": _schema(
        ("pmid", _i64),
        ("question", _str),
        ("contexts", pa.list_(_str)),
        ("labels", pa.list_(_str)),
        ("meshes", pa.list_(_str)),
        ("year", _i32),
        ("reasoning_required_pred", _str),
        ("reasoning_free_pred", _str),
        ("final_decision", _str),
        ("long_answer", _str),
        ("split", _str),  # test (the 500 of the official leaderboard) | train
    ),
    "seed_qa": _schema(
        ("qa_id", _str),
        ("question", _str),
        ("type", _str),
        ("pmids", pa.list_(_i64)),
        ("snippets", pa.list_(_str)),
        ("ideal_answer", _str),
        ("exact_answer", _str),  # JSON text: BioASQ exact answers vary in shape by type
        ("source", _str),
    ),
    "quarantine": _schema(
        ("source", _str),
        ("file", _str),
        ("record_key", _str),
        ("error", _str),
        ("raw_excerpt", _str),
        ("action", _str),  # dropped | repaired
        ("run_id", _str),
        ("created_at", _ts),
        ("reason", _str),  # the error's class (mkailin.errors.reason_class): retry by it
    ),
    "run_events": _schema(
        ("run_id", _str),
        ("stage", _str),
        ("event", _str),  # started | finished | skipped | failed | interrupted | killed
        ("event_time", _ts),
        ("config_hash", _str),
        ("models", _str),  # JSON object: role -> model id
        ("scorer", _str),
        ("executor", _str),
        ("rows_in", _i64),
        ("rows_out", _i64),
        ("tokens_in", _i64),
        ("tokens_out", _i64),
        ("cost_usd", _f64),
        ("pid", _i64),
        ("resumed_from", _str),
        ("error", _str),
        ("detail", _str),  # JSON object of stage-specific figures
    ),
    "questions": _schema(
        ("question_id", _str),
        ("pmid", _i64),
        ("agent", _str),  # domain | general | heuristic | final
        ("model", _str),
        ("prompt_version", _str),
        ("question", _str),
        ("run_id", _str),
    ),
    "contexts": _schema(
        ("question_id", _str),
        ("rank", _i32),
        ("pmid", _i64),
        ("score", _f64),
        ("retriever", _str),
        ("top_k", _i32),  # the k of the retrieve run that wrote it
        ("run_id", _str),
    ),
    "preferences": _schema(
        ("pmid", _i64),
        ("chosen_id", _str),
        ("rejected_id", _str),
        ("chosen", _str),
        ("rejected", _str),
        ("chosen_score", _f64),
        ("rejected_score", _f64),
        ("margin", _f64),
        ("judge", _str),  # rule | llm | zero-shot
        ("scorer", _str),
        ("run_id", _str),
    ),
    "answers": _schema(
        ("question_id", _str),
        ("answer", _str),
        ("model", _str),
        ("prompt_tokens", _i64),
        ("completion_tokens", _i64),
        ("cost_usd", _f64),
        ("run_id", _str),
    ),
    "eval_predictions": _schema(
        ("model", _str),
        ("pmid", _i64),
        ("setting", _str),
        ("prediction", _str),
        ("gold", _str),
        ("run_id", _str),
    ),
}


def empty(name: str) -> pa.Table:
    """A zero-row table with the contract schema of ``name``."""
    return TABLES[name].empty_table()


def conform(name: str, table: pa.Table) -> pa.Table:
    """Reorder and cast ``table`` to the contract schema; missing columns become NULL."""
    schema = TABLES[name]
    cols = []
    for field in schema:
        if field.name in table.column_names:
            cols.append(table.column(field.name).cast(field.type))
        else:
            cols.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(cols, schema=schema)
