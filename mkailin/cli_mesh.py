"""``mkailin mesh``: MeSH similarity of terms and documents. Thin: options -> one library call."""

from __future__ import annotations

import click

from mkailin.cli_common import format_option, pass_app

MEASURE_CHOICE = click.Choice(["resnik", "lin", "jc", "kailin", "kailin-exact"])
IC_CHOICE = click.Choice(["corpus", "intrinsic"])


@click.group()
def mesh():
    """MeSH hierarchy similarity (Resnik, Lin, Jiang-Conrath, KAILIN) of terms and documents."""


@mesh.command("sim")
@click.argument("a", required=False)
@click.argument("b", required=False)
@click.option(
    "--measure",
    type=MEASURE_CHOICE,
    help="One measure (default: resnik, lin, jc and kailin; kailin uses its own per-category "
    "IC; kailin-exact is kailin with the settings of KAILIN's code).",
)
@click.option(
    "--ic",
    type=IC_CHOICE,
    help="IC source (default: corpus when the lake holds MeSH annotations, else intrinsic).",
)
@click.option(
    "--pairs",
    "pairs_path",
    type=click.Path(dir_okay=False),
    help="Score a .csv or .parquet file with columns a and b instead of A B.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False),
    help="The Parquet file --pairs writes: the input plus one column per measure "
    "(kailin_exact for kailin-exact).",
)
@format_option
@pass_app
def sim(app, a, b, measure, ic, pairs_path, out_path, fmt):
    """Similarity of two MeSH descriptor UIs, or of every pair in a file.

    Example:

        mkailin mesh sim D009369 D001943 --measure lin --ic corpus

        mkailin mesh sim D009369 D001943 --measure kailin-exact

        mkailin mesh sim --pairs pairs.csv --out scored.parquet
    """
    from mkailin import mesh as lib
    from mkailin.output import render

    if pairs_path:
        if a or b:
            raise click.UsageError("give either A B or --pairs FILE, not both")
        if not out_path:
            raise click.UsageError("--pairs needs --out FILE.parquet")
        for line in lib.score_pairs(app.lake(), pairs_path, out_path, measure, ic).lines():
            click.echo(line)
        return
    if not (a and b):
        raise click.UsageError("give two descriptor UIs A B, or --pairs FILE --out FILE")
    if out_path:
        raise click.UsageError("--out goes with --pairs")
    click.echo(render(lib.term_similarity(app.lake(), a, b, measure, ic), fmt))


@mesh.command("doc-sim")
@click.argument("pmid_a", type=int)
@click.argument("pmid_b", type=int)
@click.option(
    "--measure",
    type=MEASURE_CHOICE,
    default="lin",
    show_default=True,
    help="Term similarity measure (kailin-exact: KAILIN's code, check tags dropped).",
)
@click.option(
    "--ic",
    type=IC_CHOICE,
    help="IC source (default: corpus when the lake holds MeSH annotations, else intrinsic).",
)
@click.option(
    "--aggregate",
    type=click.Choice(["mean", "bma"]),
    default="mean",
    show_default=True,
    help="mean over all term pairs (the paper's), or best-match average.",
)
@format_option
@pass_app
def doc_sim(app, pmid_a, pmid_b, measure, ic, aggregate, fmt):
    """MeSH similarity of two articles, from the similarities of their MeSH terms.

    Example:

        mkailin mesh doc-sim 2503176 23831910 --measure kailin --aggregate mean

        mkailin mesh doc-sim 2503176 23831910 --measure kailin-exact
    """
    from mkailin import mesh as lib
    from mkailin.output import render

    click.echo(render(lib.doc_similarity(app.lake(), pmid_a, pmid_b, measure, ic, aggregate), fmt))
