"""The ``mkailin`` command line. Thin: each command parses options and makes one library call."""

from __future__ import annotations

import sys

import click

from mkailin.cli_common import (  # noqa: E402
    CATALOG_NAME,
    INTERRUPTED_EXIT,
    App,
    MkailinGroup,
    echo_summary,
    format_option,
    from_run_option,
    pass_app,
)


@click.group(cls=MkailinGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--lake",
    "lake_path",
    envvar="MKAILIN_LAKE",
    type=click.Path(file_okay=False),
    help="The lake folder (env MKAILIN_LAKE; default ./lake, or the config's).",
)
@click.option(
    "--config",
    "config_path",
    envvar="MKAILIN_CONFIG",
    type=click.Path(dir_okay=False),
    help="A mkailin.toml config (env MKAILIN_CONFIG; default ./mkailin.toml if present).",
)
@click.option(
    "--wait",
    "lock_wait",
    type=float,
    envvar="MKAILIN_LOCK_WAIT",
    help="Seconds to wait when another process is writing the lake (default 0).",
)
@click.version_option(package_name="mkailin")
@click.pass_context
def cli(ctx, lake_path, config_path, lock_wait):
    """mkailin: distil biomedical QA corpora from PubMed, guided by the MeSH hierarchy.

    Example:

        mkailin init && mkailin ingest mesh MeshTree2017.tsv
    """
    ctx.obj = App(lake_path, config_path, lock_wait)


# ------------------------------------------------------------------------------ lake
@cli.command()
@click.argument("path", required=False, type=click.Path(file_okay=False))
@pass_app
def init(app, path):
    """Create a lake (default: the --lake folder).

    Example:

        mkailin init lake
    """
    from mkailin.lake import Lake

    lake = Lake.init(path or app.lake_path)
    click.echo(f"lake ready at {lake.root} ({len(lake.table_names())} tables)")
    click.echo(
        f"query it with: cd {lake.root} && duckdb -readonly {CATALOG_NAME} "
        '-c "select count(*) from articles"'
    )


@cli.group("lake")
def lake_group():
    """Check, repair and compact the lake's tables."""


@lake_group.command("verify")
@pass_app
def lake_verify(app):
    """Check that every part file is whole and every ingested row accounted for (writes
    nothing; exit 1 when something is wrong).

    Example:

        mkailin lake verify
    """
    from mkailin.lake_check import verify

    report = verify(app.lake())
    for line in report.lines():
        click.echo(line)
    if report.problems:
        raise SystemExit(1)


@lake_group.command("repair")
@pass_app
def lake_repair(app):
    """Commit the lake without its damaged parts; files whose rows were lost leave the ledger,
    so ingesting them again restores them. Says what it cannot restore.

    Example:

        mkailin lake repair
    """
    from mkailin.lake_check import repair

    for line in repair(app.lake()):
        click.echo(line)


@lake_group.command("compact")
@click.argument("table", required=False)
@pass_app
def lake_compact(app, table):
    """Merge each table's small part files into one (commits do it past 32 parts).

    Example:

        mkailin lake compact article_records
    """
    lake = app.lake()
    with lake.lock("lake compact"):
        done = lake.compact(table)
    for name, (before, after) in done.items():
        click.echo(f"{name}: {before:,} part files -> {after:,}")
    if not done:
        click.echo("nothing to compact: every table has at most one small part file")


@cli.command()
@click.argument("query")
@format_option
@pass_app
def sql(app, query, fmt):
    """Run a SQL query over the lake's tables and views.

    Example:

        mkailin sql "select pub_year, count(*) from articles group by 1 order by 1"
    """
    from mkailin.output import render

    click.echo(render(app.lake().query_arrow(query), fmt))


@cli.command()
@click.option(
    "--views/--no-views",
    default=True,
    show_default=True,
    help="List (and count) the views too; --no-views lists the tables only (the MeSH "
    "similarity views take seconds to count).",
)
@format_option
@pass_app
def tables(app, views, fmt):
    """List every table and view with its row count.

    Example:

        mkailin tables --no-views --format csv
    """
    import pyarrow as pa

    from mkailin.output import render

    rows = app.lake().relations(count_views=views)
    click.echo(
        render(
            pa.Table.from_pylist(
                [{"name": n, "kind": k, "rows": c} for n, k, c in rows if views or k == "table"],
                schema=pa.schema(
                    [("name", pa.string()), ("kind", pa.string()), ("rows", pa.int64())]
                ),
            ),
            fmt,
        )
    )


# ------------------------------------------------------------------------------ ingest
@cli.group()
def ingest():
    """Load PubMed, MeSH, PubMedQA and BioASQ files into the lake."""


@ingest.command("mesh")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@pass_app
def ingest_mesh_cmd(app, files):
    """Load MeSH: NLM descriptor XML (descYYYY.xml[.gz]) and/or a MeshTree TSV.

    Example:

        mkailin ingest mesh ../shared/data/mesh/MeshTree2017.tsv
    """
    from mkailin.ingest.mesh import ingest_mesh

    echo_summary(ingest_mesh(app.lake(create=True), list(files)))


@ingest.command("pubmed")
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option(
    "--jobs", "-j", type=click.IntRange(min=1), help="Parallel processes (default: cores)."
)
@pass_app
def ingest_pubmed_cmd(app, inputs, jobs):
    """Load PubMed baseline/update XML (.xml or .xml.gz files, or folders of them).

    Example:

        mkailin ingest pubmed pubmed/baseline/ --jobs 2
    """
    from mkailin.ingest.pubmed import ingest_pubmed

    echo_summary(ingest_pubmed(app.lake(create=True), list(inputs), jobs=jobs))


@ingest.command("pubmedqa")
@click.argument("file", type=click.Path())
@click.option(
    "--ground-truth", type=click.Path(), help="test_ground_truth.json: marks the test split."
)
@click.option(
    "--split",
    default="train",
    show_default=True,
    help="Split name for the PMIDs not in the ground truth (e.g. pqa-a).",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Make this file the whole pubmedqa table, dropping every other row, the test split "
    "included (by default a file adds rows, and test rows stay test).",
)
@pass_app
def ingest_pubmedqa_cmd(app, file, ground_truth, split, replace):
    """Add PubMedQA rows (ori_pqal.json or a file of the same shape) to the lake.

    A PMID already there has its row replaced and stays in the test split if it was there;
    every other row is kept.

    Example:

        mkailin ingest pubmedqa ori_pqal.json --ground-truth test_ground_truth.json
    """
    from mkailin.ingest.pubmedqa import ingest_pubmedqa

    lake = app.lake(create=True)
    echo_summary(ingest_pubmedqa(lake, file, ground_truth, split, replace=replace))


@ingest.command("bioasq")
@click.argument("file", type=click.Path())
@click.option(
    "--replace",
    is_flag=True,
    help="Make this file the whole seed_qa table (by default a file adds questions).",
)
@pass_app
def ingest_bioasq_cmd(app, file, replace):
    """Add BioASQ training JSON questions to seed_qa; an id seen again replaces its row.

    Example:

        mkailin ingest bioasq training12b.json
    """
    from mkailin.ingest.bioasq import ingest_bioasq

    echo_summary(ingest_bioasq(app.lake(create=True), file, replace=replace))


@cli.command()
@click.argument("source", type=click.Choice(["pubmedqa", "mesh", "baseline", "updates"]))
@click.option(
    "--dest",
    default="data",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder to download into.",
)
@click.option("--base-url", help="A mirror of the official location.")
@click.option(
    "--limit",
    default=0,
    type=click.IntRange(min=0),
    help="At most this many PubMed files (0 = all).",
)
@click.option("--mesh-year", default=2025, show_default=True, type=int)
def fetch(source, dest, base_url, limit, mesh_year):
    """Download public inputs (PubMed, MeSH, PubMedQA) from their official locations.

    Example:

        mkailin fetch baseline --limit 2 --dest data
    """
    from mkailin.ingest.fetch import fetch as do_fetch

    def report(f):
        state = "already there" if f.skipped else f"{f.bytes:,} bytes"
        click.echo(f"{f.path} ({state})")

    do_fetch(source, dest, base_url=base_url, limit=limit, mesh_year=mesh_year, on_file=report)


# ------------------------------------------------------------------------------ stages
def executor_option(f):
    return click.option(
        "--executor",
        type=click.Choice(["local", "ray"]),
        help="Run the batches in-process (default) or on Ray.",
    )(f)


def limit_option(f):
    return click.option(
        "--limit",
        default=0,
        type=click.IntRange(min=0),
        help="Process at most this many rows in this call (0 = all).",
    )(f)


def echo_runs(results) -> None:
    from mkailin.secrets import redact

    for r in results if isinstance(results, list) else [results]:
        for line in r.lines():
            click.echo(redact(line))


@cli.group()
def generate():
    """Model stages that write text: questions."""


@generate.command("questions")
@click.option(
    "--agent",
    "agents",
    multiple=True,
    type=click.Choice(["domain", "general", "heuristic", "final"]),
    help="Which agents (repeatable; default: domain and general).",
)
@click.option(
    "--articles",
    type=click.IntRange(min=0),
    help="Sample this many articles (overrides generate.articles; 0 = all).",
)
@executor_option
@limit_option
@pass_app
def generate_questions_cmd(app, agents, articles, executor, limit):
    """Write one question per sampled article with each question agent.

    Example:

        mkailin generate questions --agent domain --agent general --articles 100
    """
    from mkailin.preflight import need_articles

    lake = app.lake()
    need_articles(lake)  # before any model loads
    from mkailin.agents.question import generate_questions

    cfg = app.config
    if articles is not None:
        cfg.generate.articles = articles
    echo_runs(
        generate_questions(lake, cfg, tuple(agents) or ("domain", "general"), executor, limit)
    )


@cli.group()
def train():
    """LoRA training with trl/peft: question generators, judge, DPO, downstream CPT/SFT."""


def steps_option(f):
    return click.option(
        "--steps", type=click.IntRange(min=1), help="Training steps (overrides train.max_steps)."
    )(f)


@train.command("qg")
@click.option("--agent", required=True, type=click.Choice(["domain", "general"]))
@click.option(
    "--source",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "bioasq", "pubmedqa"]),
    help="Seed pairs: BioASQ seed_qa, PubMedQA's training split, or auto (BioASQ first).",
)
@click.option("--limit", default=0, type=click.IntRange(min=0), help="Use at most N seed pairs.")
@steps_option
@pass_app
def train_qg_cmd(app, agent, source, limit, steps):
    """LoRA-SFT a question generator on seed (abstract -> question) pairs.

    Example:

        mkailin train qg --agent domain --steps 40
    """
    from mkailin.train.sft import train_qg

    cfg = app.config
    if steps:
        cfg.train.max_steps = steps
    echo_runs(train_qg(app.lake(), cfg, agent, source, limit))


@cli.command()
@click.option(
    "--encoder",
    "role",
    type=click.Choice(["domain", "general"]),
    help="Which configured encoder (default: retrieval.encoder).",
)
@executor_option
@limit_option
@pass_app
def embed(app, role, executor, limit):
    """Embed articles (title + abstract) into LanceDB; index above the threshold.

    Example:

        mkailin embed --encoder domain
    """
    from mkailin.agents.retrieval import embed as do_embed

    echo_runs(do_embed(app.lake(), app.config, role, executor, limit))


@cli.command()
@click.option(
    "--retriever",
    type=click.Choice(["dense", "bm25", "hybrid"]),
    help="Retrieval method (default: retrieval.retriever).",
)
@click.option(
    "-k", "k", type=click.IntRange(min=1), help="Contexts per question (default: retrieval.k)."
)
@click.option(
    "--agent", "agents", multiple=True, help="Only questions of these agents (repeatable)."
)
@click.option(
    "--keep-source", is_flag=True, help="Keep the question's own article among its contexts."
)
@executor_option
@limit_option
@pass_app
def retrieve(app, retriever, k, agents, keep_source, executor, limit):
    """Fetch the top-k contexts for every question into `contexts`.

    Example:

        mkailin retrieve --retriever hybrid -k 4
    """
    from mkailin.preflight import need_questions

    lake = app.lake()
    cfg = app.config
    need_questions(lake, tuple(agents), cfg)  # before the encoder loads
    if agents:
        from mkailin.upstream import describe_questions

        click.echo(describe_questions(lake, cfg, tuple(agents)))
    from mkailin.agents.retrieval import retrieve as do_retrieve

    if keep_source:
        cfg.retrieval.keep_source = True
    echo_runs(do_retrieve(lake, cfg, retriever, k, tuple(agents), executor, limit))


@cli.group("eval")
def eval_group():
    """Quality checks and evaluations: retrieval, PubMedQA."""


@eval_group.command("retrieval")
@click.option(
    "--retriever",
    "methods",
    multiple=True,
    type=click.Choice(["dense", "bm25", "hybrid"]),
    help="Retrievers to compare (repeatable; default: all three).",
)
@click.option("--limit", default=0, type=click.IntRange(min=0), help="Use the first N questions.")
@format_option
@pass_app
def eval_retrieval_cmd(app, methods, limit, fmt):
    """PubMedQA sanity check: each question retrieves its own article; recall@1/4/10 and MRR.

    Example:

        mkailin eval retrieval --format csv
    """
    from mkailin.agents.retrieval import eval_retrieval
    from mkailin.output import render

    table = eval_retrieval(
        app.lake(), app.config, tuple(methods) or ("dense", "bm25", "hybrid"), limit=limit
    )
    click.echo(render(table, fmt))


@cli.command()
@click.option(
    "--judge",
    type=click.Choice(["rule", "llm", "zero-shot"]),
    help="rule: MeSH hierarchy; llm: the trained judge; zero-shot: an untrained LLM "
    "(the w/o MeSH ablation). Default: preference.judge.",
)
@click.option(
    "--scorer",
    type=click.Choice(["lin", "resnik", "jc", "kailin", "kailin-exact"]),
    help="MeSH similarity for the rule (default: preference.scorer).",
)
@click.option("--ic", type=click.Choice(["corpus", "intrinsic"]), help="IC for the rule.")
@click.option(
    "--aggregate",
    type=click.Choice(["mean", "bma"]),
    help="Document-to-context aggregate: mean (the paper) or best-match average.",
)
@click.option("--min-margin", type=float, help="Drop pairs with a smaller margin.")
@click.option(
    "--max-score",
    type=float,
    help="KAILIN's filter: drop a pair when either score is above this (e.g. 0.5).",
)
@from_run_option
@executor_option
@limit_option
@pass_app
def prefer(app, judge, scorer, ic, aggregate, min_margin, max_score, from_run, executor, limit):
    """Label each document's better question-context pair into `preferences`.

    Example:

        mkailin prefer --judge rule --scorer kailin --max-score 0.5
    """
    from mkailin.upstream import pick_contexts

    lake = app.lake()
    cfg, src = pick_contexts(lake, app.config, from_run=from_run)
    click.echo(src.describe())
    from mkailin.agents.preference import PAIR_AGENTS
    from mkailin.agents.preference import prefer as do_prefer
    from mkailin.upstream import describe_questions

    click.echo(describe_questions(lake, cfg, PAIR_AGENTS))

    p = cfg.preference
    for key, value in (
        ("scorer", scorer),
        ("ic", ic),
        ("aggregate", aggregate),
        ("min_margin", min_margin),
        ("max_score", max_score),
    ):
        if value is not None:
            setattr(p, key, value)
    echo_runs(do_prefer(lake, cfg, judge, executor, limit))


@train.command("judge")
@steps_option
@pass_app
def train_judge_cmd(app, steps):
    """Fine-tune the pairwise judge on the rule labels; report agreement on a held-out split.

    Example:

        mkailin train judge --steps 40
    """
    from mkailin.train.judge import train_judge

    cfg = app.config
    if steps:
        cfg.train.max_steps = steps
    echo_runs(train_judge(app.lake(), cfg))


@train.command("dpo")
@click.option(
    "--judge",
    type=click.Choice(["rule", "llm", "zero-shot"]),
    help="Whose preferences to learn from (default: preference.judge).",
)
@click.option("--beta", type=float, help="DPO beta (default: train.beta).")
@steps_option
@from_run_option
@pass_app
def train_dpo_cmd(app, judge, beta, steps, from_run):
    """DPO the general question generator on the preferences (trl DPOTrainer + LoRA).

    Example:

        mkailin train dpo --judge rule --steps 40 --beta 0.1
    """
    from mkailin.train.dpo import train_dpo
    from mkailin.upstream import pick_preferences

    lake = app.lake()
    cfg, src = pick_preferences(lake, app.config, judge, from_run)
    click.echo(src.describe())
    if steps:
        cfg.train.max_steps = steps
    if beta is not None:
        cfg.train.beta = beta
    echo_runs(train_dpo(lake, cfg, cfg.preference.judge))


@cli.group()
def report():
    """Reports with plots over the lake."""


@report.command("preferences")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for the PNG plots, CSV tables and index.html.",
)
@pass_app
def report_preferences(app, out):
    """Margins, agent win rates, scores by MeSH category, judge agreement (PNG + HTML).

    Example:

        mkailin report preferences --out reports/prefs
    """
    from mkailin.report import preferences_report

    files = preferences_report(app.lake(), out)
    click.echo(f"wrote {len(files)} files to {out} (open {out}/index.html)")


@report.command("coverage")
@click.option(
    "--export",
    "export_dir",
    type=click.Path(file_okay=False),
    help="An export folder (default: the lake's newest, corpus_cpt or corpus_sft).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Folder for coverage.csv and coverage.svg (default: <export>_coverage beside it).",
)
@pass_app
def report_coverage(app, export_dir, out):
    """A corpus against its lake by MeSH category: rows, articles, shares, ratio (CSV + SVG).

    Example:

        mkailin report coverage --export lake/exports/corpus_sft
    """
    from mkailin.coverage import CSV_NAME, PLOT_NAME, describe, newest_export, write_coverage
    from mkailin.output import render

    lake = app.lake()
    r = write_coverage(lake, export_dir or newest_export(lake, app.config), out)
    click.echo(describe(r))
    shown = ["category", "name", "corpus_rows", "corpus_article_share", "lake_share", "ratio"]
    click.echo(render(r["table"].select(shown)))
    click.echo(f"wrote {CSV_NAME} and {PLOT_NAME} to {r['out']}")


@cli.command()
@click.option(
    "--agent",
    "agents",
    multiple=True,
    help="Answer the questions of these agents (repeatable; default: answer.agents).",
)
@click.option(
    "--batch-api", is_flag=True, help="Use the OpenAI Batch API: submit, poll, collect (resumable)."
)
@click.option("--no-wait", is_flag=True, help="With --batch-api: submit/collect once and return.")
@click.option("--poll", default=30.0, show_default=True, help="Seconds between Batch API polls.")
@from_run_option
@executor_option
@limit_option
@pass_app
def answer(app, agents, batch_api, no_wait, poll, from_run, executor, limit):
    """Answer each final question from its top-k contexts into `answers`.

    Example:

        mkailin answer --agent final --batch-api
    """
    from mkailin.agents import answer as ans
    from mkailin.output import format_money
    from mkailin.upstream import pick_contexts

    lake = app.lake()
    cfg, src = pick_contexts(lake, app.config, from_run=from_run)
    click.echo(src.describe())
    from mkailin.upstream import describe_questions

    click.echo(describe_questions(lake, cfg, tuple(agents) or tuple(cfg.answer.agents)))
    if batch_api:
        s = ans.batch_answer(lake, cfg, tuple(agents) or None, poll, not no_wait)
        click.echo(
            f"answer (Batch API): {s['submitted']:,} submitted, {s['collected']:,} collected,"
            f" {s['failed']:,} failed, {s['pending']:,} pending; tokens {s['tokens_in']:,} "
            f"in / {s['tokens_out']:,} out, {format_money(s['cost_usd'])} [run {s['run_id']}]"
        )
    else:
        echo_runs(ans.answer(lake, cfg, tuple(agents) or None, executor, limit))


@cli.command("export")
@click.argument("kind", type=click.Choice(["cpt", "sft"]))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Parent folder (default: export.out, else <lake>/exports).",
)
@click.option("--push-to-hub", "repo", help="Also upload to this Hugging Face dataset repo.")
@click.option("--dry-run", is_flag=True, help="With --push-to-hub: list what would be uploaded.")
@click.option(
    "--allow-contamination",
    is_flag=True,
    help="Keep records whose source or contexts are on the eval blocklist (the manifest says so).",
)
@from_run_option
@pass_app
def export_cmd(app, kind, out, repo, dry_run, allow_contamination, from_run):
    """Write the CPT or SFT corpus (Parquet + JSONL + dataset card + manifest), deduplicated.

    Example:

        mkailin export sft --push-to-hub me/mkailin-sft --dry-run
    """
    from mkailin.export import export, push_to_hub
    from mkailin.upstream import pick_contexts

    lake = app.lake()
    cfg, src = pick_contexts(lake, app.config, from_run=from_run)
    click.echo(src.describe())
    from mkailin.upstream import describe_questions

    click.echo(describe_questions(lake, cfg, tuple(cfg.answer.agents)))
    if allow_contamination:
        cfg.export.allow_contamination = True
    r = export(lake, cfg, kind, out)
    echo_runs(r)
    if allow_contamination:
        click.echo("  --allow-contamination: eval-blocklist articles kept; manifest.json says so")
    if repo:
        files = push_to_hub(r["path"], repo, dry_run)
        verb = "would upload" if dry_run else "uploaded"
        for name, size in files:
            click.echo(f"  {verb} {name} ({size:,} bytes) to datasets/{repo}")


@cli.command("verify-export")
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
def verify_export_cmd(folder):
    """Check an export folder against its manifest: checksums, record counts, lineage.

    Example:

        mkailin verify-export lake/exports/corpus_sft
    """
    from mkailin.export import verify_export

    ok, bad = verify_export(folder)
    for line in ok:
        click.echo(f"ok: {line}")
    for line in bad:
        click.echo(f"problem: {line}")
    if bad:
        raise click.ClickException(f"{folder}: {len(bad)} problem(s)")
    click.echo(f"{folder}: matches its manifest")


@train.command("cpt")
@click.option(
    "--corpus", type=click.Path(file_okay=False), help="An export folder (default: the lake's)."
)
@steps_option
@pass_app
def train_cpt_cmd(app, corpus, steps):
    """Continued pretraining (LoRA) of the downstream target on corpus_cpt.

    Example:

        mkailin train cpt --steps 50
    """
    from mkailin.train.downstream import train_cpt

    cfg = app.config
    if steps:
        cfg.train.max_steps = steps
    echo_runs(train_cpt(app.lake(), cfg, corpus))


@train.command("sft")
@click.option(
    "--corpus", type=click.Path(file_okay=False), help="An export folder (default: the lake's)."
)
@click.option(
    "--mix-pubmedqa",
    type=click.IntRange(min=0),
    help="Mix this many PubMedQA PQA-L training examples in (default: downstream.mix_pubmedqa).",
)
@steps_option
@pass_app
def train_sft_cmd(app, corpus, mix_pubmedqa, steps):
    """SFT (LoRA) of the downstream target on corpus_sft, on top of its CPT adapter.

    Example:

        mkailin train sft --mix-pubmedqa 450 --steps 100
    """
    from mkailin.train.downstream import train_sft

    cfg = app.config
    if steps:
        cfg.train.max_steps = steps
    echo_runs(train_sft(app.lake(), cfg, corpus, mix_pubmedqa))


@eval_group.command("pubmedqa")
@click.option(
    "--model",
    "models",
    multiple=True,
    required=True,
    help="A [models] name, optionally NAME:ADAPTER where ADAPTER is auto, none or a path "
    "(repeatable: several models are reported side by side).",
)
@click.option(
    "--setting",
    type=click.Choice(["reasoning-required", "reasoning-free", "question-only"]),
    help="The question with the abstract (reasoning-required), with the long answer "
    "(reasoning-free) or alone (default: eval.setting).",
)
@click.option(
    "--limit", default=0, type=click.IntRange(min=0), help="Evaluate the first N test items."
)
@click.option(
    "--mesh-slices",
    metavar="paper|N",
    help="MeSH slices: 'paper' (the six named buckets) or N (the N most common MeSH terms) "
    "(default: eval.mesh_slices).",
)
@click.option(
    "--context-chars",
    type=click.IntRange(min=0),
    help="Cut the prompt's context to N characters, 0 = never (default: eval.context_chars).",
)
@click.option(
    "--out", type=click.Path(file_okay=False), help="Write the slice table (CSV) and plots here."
)
@format_option
@pass_app
def eval_pubmedqa_cmd(app, models, setting, limit, mesh_slices, context_chars, out, fmt):
    """PubMedQA test set: accuracy and macro-F1, overall and by year and MeSH slices.

    Scored like the official script: a prediction that is not yes/no/maybe counts as wrong
    (column inv:<model> when there are any).

    Example:

        mkailin eval pubmedqa --model smollm2:none --model smollm2:auto --out reports/pqa
    """
    from mkailin.evaluate import evaluate_pubmedqa
    from mkailin.output import render

    cfg = app.config
    if mesh_slices is not None:
        if mesh_slices != "paper" and not mesh_slices.isdigit():
            raise click.BadParameter(
                f"{mesh_slices!r} is not 'paper' or a number", param_hint="--mesh-slices"
            )
        cfg.eval.mesh_slices = "paper" if mesh_slices == "paper" else int(mesh_slices)
    if context_chars is not None:
        cfg.eval.context_chars = context_chars
    pairs = [(m.split(":", 1)[0], m.split(":", 1)[1] if ":" in m else "none") for m in models]
    res = evaluate_pubmedqa(app.lake(), cfg, pairs, setting, limit, out)
    echo_runs(res["runs"])
    click.echo(render(res["table"], fmt))
    for f in res["files"]:
        click.echo(f"wrote {f}")


@cli.command("plan")
@click.argument("config_file", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--articles",
    required=True,
    type=click.IntRange(min=1),
    help="Articles to plan for (e.g. 37000000 for all of PubMed).",
)
@click.option("--batch-api", is_flag=True, help="Price the answers at the Batch API rate.")
@click.option(
    "--gpu-tokens-per-second",
    default=2500.0,
    show_default=True,
    help="Generated tokens/s one GPU serves (for GPU-hours).",
)
@format_option
@pass_app
def plan_cmd(app, config_file, articles, batch_api, gpu_tokens_per_second, fmt):
    """Estimate rows, tokens, hours and API cost of a run over N articles.

    Example:

        mkailin plan configs/paper.toml --articles 37000000
    """
    from mkailin import config as config_mod
    from mkailin.output import render
    from mkailin.plan import plan

    cfg = config_mod.load(config_file) if config_file else app.config
    lake = None
    try:
        lake = app.lake()
    except Exception:  # planning needs no lake; measured figures are used when one exists
        lake = None
    table = plan(cfg, articles, lake, gpu_tokens_per_second, batch_api=batch_api)
    click.echo(render(table, fmt, footnotes=("basis", "gpu_basis")))


@cli.command("run")
@click.argument("config_file", type=click.Path(dir_okay=False))
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False),
    help="Input folder laid out like shared/data (overrides inputs.data).",
)
@click.option("--from", "start", help="Re-run from this step on (ignores completion markers).")
@click.option("--until", help="Stop after this step.")
@click.option("--dry-run", is_flag=True, help="Print the steps and the rows each would process.")
@pass_app
def run_cmd(app, config_file, data_dir, start, until, dry_run):
    """Run the whole pipeline for a config: ingest to corpora and evaluation. Resumable.

    Steps: ingest, train-qg-domain, train-qg-general, questions, retrieve, prefer-rule,
    train-judge, prefer-judge, train-dpo, final-questions, retrieve-final, answer, export,
    downstream, evaluate.

    Example:

        mkailin run configs/demo.toml --data ../shared/data --until export
    """
    from mkailin import config as config_mod
    from mkailin.pipeline import run_pipeline

    cfg = config_mod.load(config_file)
    lake = app.lake(create=True, path=app._lake_path or cfg.lake)
    run_pipeline(lake, cfg, data_dir, start, until, dry_run, echo=click.echo)


@cli.command()
@click.option("--all", "show_all", is_flag=True, help="Every run, not only the last per stage.")
@format_option
@pass_app
def status(app, show_all, fmt):
    """The runs log as a summary: last run per stage, rows, time, tokens, cost, failures.

    Example:

        mkailin status --all
    """
    from mkailin.output import render
    from mkailin.status import quarantine_lines, status_table

    lake = app.lake()
    table, notes = status_table(lake, show_all)
    click.echo(render(table, fmt))
    for line in notes + quarantine_lines(lake):
        click.echo(line)


@cli.command()
@click.argument("stage")
@click.option("--reason", help="Only rows of this reason class (see `mkailin status`).")
@click.option("--release-only", is_flag=True, help="Give the rows back; do not run the stage.")
@pass_app
@click.pass_context
def retry(ctx, app, stage, reason, release_only):
    """Run a stage again on its quarantined rows (all, or one reason class).

    STAGE is the name `mkailin status` shows: answer, generate-questions:AGENT, prefer:llm,
    prefer:zero-shot, embed:ENCODER, retrieve:LABEL:topK. A row that fails again is
    quarantined again.

    Example:

        mkailin retry answer --reason http_5xx
    """
    from mkailin.status import release_quarantined

    n = release_quarantined(app.lake(), stage, reason)
    what = f" ({reason})" if reason else ""
    click.echo(f"{stage}: {n:,} quarantined row(s){what} given back to the stage")
    if release_only or not n:
        return
    kind, _, rest = stage.partition(":")
    common = {"executor": None, "limit": 0}
    if kind == "answer":
        ctx.invoke(
            answer, agents=(), batch_api=False, no_wait=False, poll=30.0, from_run=None, **common
        )
    elif kind == "generate-questions":
        ctx.invoke(generate_questions_cmd, agents=(rest,), articles=None, **common)
    elif kind == "prefer" and rest in ("llm", "zero-shot"):
        ctx.invoke(prefer, judge=rest, scorer=None, ic=None, aggregate=None, min_margin=None,
                   max_score=None, from_run=None, **common)  # fmt: skip
    elif kind == "retrieve":
        label, _, top = rest.rpartition(":top")
        method = label.partition(":")[0] or label
        ctx.invoke(retrieve, retriever=method, k=int(top) if top.isdigit() else None, agents=(),
                   keep_source=False, **common)  # fmt: skip
    elif kind == "embed":
        ctx.invoke(embed, role=None, **common)
    else:
        click.echo(f"run the command that runs {stage} to do them")


# ------------------------------------------------------------------------------ demo
@cli.command()
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False),
    help="Local data laid out like shared/data (mesh/, pubmed/, pubmedqa/). "
    "Without it the demo downloads the small public files.",
)
@pass_app
def demo(app, data_dir):
    """Build a demo lake from real data, end to end.

    Example:

        mkailin demo --data ../shared/data
    """
    from mkailin.demo import run_demo

    run_demo(app.lake_path, data_dir, app.config_path, echo=click.echo, lock_wait=app.lock_wait)


from mkailin.cli_mesh import mesh as _mesh  # noqa: E402

cli.add_command(_mesh)


def main() -> None:
    try:
        cli(prog_name="mkailin")
    except KeyboardInterrupt:  # outside a command (while parsing, importing, exiting)
        click.echo("Interrupted.", err=True)
        sys.exit(INTERRUPTED_EXIT)
