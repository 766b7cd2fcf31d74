-- mesh_doc_sim(pairs, measure, ic, aggregate, index_table, kailin_index_table, doc_terms_table,
-- kailin_exact_index_table): the MeSH similarity of two documents (articles), from the
-- similarities of their terms.
--   pairs      name of a table, view or CTE with columns a and b (PMIDs)
--   measure    resnik | lin (default) | jc | kailin | kailin-exact; ic: corpus (default) |
--              intrinsic
--   aggregate  mean (default, the paper's and KAILIN's choice): the mean of sim(m, n) over
--              every m in MeSH(a) and n in MeSH(b)
--              bma: best-match average, (mean over m of max over n of sim(m, n)
--                                        + mean over n of max over m of sim(m, n)) / 2
-- Term pairs with a NULL similarity are skipped. A document with no MeSH terms, or no term pair
-- with a similarity, gives NULL. Means are taken over DECIMAL(38, 18) values, an exact sum, so
-- a score is the same in every run (a parallel double sum varies in its last bits).
-- doc_terms_table: where the documents' terms come from (default mesh_doc_terms, the articles'
-- MeSH headings); any relation of (pmid, descriptor_ui) works.
-- kailin-exact (KAILIN's code) keeps only the terms with a tree number: a check tag such as
-- Female (no tree number in descriptor XML) is dropped from the document, as KAILIN's
-- descriptor file has no entry for it. Every other measure keeps every term (kailin scores a
-- check tag 0 against any other term, 1 against itself).
-- Returns one row per distinct (a, b): a, b, similarity, terms_a, terms_b (the terms that
-- enter the score), term_pairs (the number of term pairs with a similarity).
create or replace macro mesh_doc_sim(
    pairs,
    measure := 'lin',
    ic := 'corpus',
    aggregate := 'mean',
    index_table := 'mesh_sim_index',
    kailin_index_table := 'mesh_kailin_index',
    doc_terms_table := 'mesh_doc_terms',
    kailin_exact_index_table := 'mesh_kailin_exact_index'
) as table
with checked as (
    select
        case
            when aggregate not in ('mean', 'bma')
                then error('mesh: aggregate must be mean or bma, not ' || aggregate)
        end as ok
),
doc_pairs as materialized (
    select
        row_number() over () as pair_id,
        doc_a,
        doc_b
    from (
        select distinct
            a as doc_a,
            b as doc_b
        from query_table(pairs)
    )
),
doc_terms as materialized (              -- the distinct terms of the documents in the pairs
    select distinct
        pmid,
        descriptor_ui
    from query_table(doc_terms_table)
    where descriptor_ui is not null
      and pmid in (select doc_a from doc_pairs union select doc_b from doc_pairs)
      and (
          measure <> 'kailin-exact'
          or descriptor_ui in (select descriptor_ui from mesh_tree)   -- KAILIN's terms only
      )
),
term_pairs as (
    select
        dp.pair_id,
        ta.descriptor_ui as a,
        tb.descriptor_ui as b
    from doc_pairs as dp
    join doc_terms as ta
      on ta.pmid = dp.doc_a
    join doc_terms as tb
      on tb.pmid = dp.doc_b
),
scored as (
    -- every term pair scored where it stands: measured faster than scoring the distinct term
    -- pairs once and joining the scores back (bench/mesh_sim.py)
    select
        pair_id,
        a,
        b,
        similarity
    from mesh_term_sim_with(
        'term_pairs',
        measure,
        ic,
        index_table,
        kailin_index_table,
        kailin_exact_index_table
    )
),
by_mean as (
    select
        pair_id,
        avg(similarity::decimal(38, 18)) as similarity,   -- an exact sum: the same result
        count(similarity) as term_pairs                   -- whatever order threads add in
    from scored
    where aggregate = 'mean'
    group by pair_id
),
scored_for_bma as materialized (
    select * from scored where aggregate = 'bma'
),
best_of_a as (
    select
        pair_id,
        a,
        max(similarity) as best,
        count(similarity) as term_pairs
    from scored_for_bma
    group by pair_id, a
),
best_of_b as (
    select
        pair_id,
        b,
        max(similarity) as best
    from scored_for_bma
    group by pair_id, b
),
by_bma as (
    select
        x.pair_id,
        (x.mean_best + y.mean_best) / 2 as similarity,
        x.term_pairs
    from (
        select
            pair_id,
            avg(best::decimal(38, 18)) as mean_best,
            sum(term_pairs)::bigint as term_pairs
        from best_of_a
        group by pair_id
    ) as x
    join (
        select
            pair_id,
            avg(best::decimal(38, 18)) as mean_best
        from best_of_b
        group by pair_id
    ) as y
      on y.pair_id = x.pair_id
),
doc_scores as (
    select pair_id, similarity, term_pairs from by_mean
    union all
    select pair_id, similarity, term_pairs from by_bma
),
term_counts as (
    select pmid, count(*) as terms from doc_terms group by pmid
),
final as (
    select
        dp.doc_a as a,
        dp.doc_b as b,
        s.similarity,
        coalesce(ca.terms, 0) as terms_a,
        coalesce(cb.terms, 0) as terms_b,
        coalesce(s.term_pairs, 0)::bigint as term_pairs
    from doc_pairs as dp
    left join doc_scores as s
      on s.pair_id = dp.pair_id
    left join term_counts as ca
      on ca.pmid = dp.doc_a
    left join term_counts as cb
      on cb.pmid = dp.doc_b
    left join checked
      on checked.ok is not null
)
select * from final
