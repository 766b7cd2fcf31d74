-- mesh_doc_sim(pairs, measure, ic, aggregate, index_table, kailin_index_table): the MeSH
-- similarity of two documents (articles), from the similarities of their terms.
--   pairs      name of a table, view or CTE with columns a and b (PMIDs)
--   measure    resnik | lin (default) | jc | kailin; ic: corpus (default) | intrinsic
--   aggregate  mean (default, the paper's and KAILIN's choice): the mean of sim(m, n) over
--              every m in MeSH(a) and n in MeSH(b)
--              bma: best-match average, (mean over m of max over n of sim(m, n)
--                                        + mean over n of max over m of sim(m, n)) / 2
-- Term pairs with a NULL similarity are skipped. A document with no MeSH terms, or no term pair
-- with a similarity, gives NULL. Each term pair is scored once, however many documents share it.
-- Returns one row per distinct (a, b): a, b, similarity, terms_a, terms_b, term_pairs (the
-- number of term pairs with a similarity).
create or replace macro mesh_doc_sim(
    pairs,
    measure := 'lin',
    ic := 'corpus',
    aggregate := 'mean',
    index_table := 'mesh_sim_index',
    kailin_index_table := 'mesh_kailin_index'
) as table
with checked as (
    select
        case
            when aggregate not in ('mean', 'bma')
                then error('mesh: aggregate must be mean or bma, not ' || aggregate)
        end as ok
),
doc_pairs as (
    select distinct
        a as doc_a,
        b as doc_b
    from query_table(pairs)
),
term_pairs as (
    select
        dp.doc_a,
        dp.doc_b,
        ta.descriptor_ui as a,
        tb.descriptor_ui as b
    from doc_pairs as dp
    join mesh_doc_terms as ta
      on ta.pmid = dp.doc_a
    join mesh_doc_terms as tb
      on tb.pmid = dp.doc_b
),
distinct_term_pairs as (
    select distinct a, b from term_pairs
),
term_sims as (
    select a, b, similarity
    from mesh_term_sim_with(
        'distinct_term_pairs', measure, ic, index_table, kailin_index_table
    )
),
scored as (
    select
        t.doc_a,
        t.doc_b,
        t.a,
        t.b,
        s.similarity
    from term_pairs as t
    join term_sims as s
      on s.a = t.a
     and s.b = t.b
),
by_mean as (
    select
        doc_a,
        doc_b,
        avg(similarity) as similarity,
        count(similarity) as term_pairs
    from scored
    where aggregate = 'mean'
    group by doc_a, doc_b
),
best_of_a as (
    select
        doc_a,
        doc_b,
        a,
        max(similarity) as best,
        count(similarity) as term_pairs
    from scored
    where aggregate = 'bma'
    group by doc_a, doc_b, a
),
best_of_b as (
    select
        doc_a,
        doc_b,
        b,
        max(similarity) as best
    from scored
    where aggregate = 'bma'
    group by doc_a, doc_b, b
),
by_bma as (
    select
        x.doc_a,
        x.doc_b,
        (x.mean_best + y.mean_best) / 2 as similarity,
        x.term_pairs
    from (
        select doc_a, doc_b, avg(best) as mean_best, sum(term_pairs)::bigint as term_pairs
        from best_of_a
        group by doc_a, doc_b
    ) as x
    join (
        select doc_a, doc_b, avg(best) as mean_best
        from best_of_b
        group by doc_a, doc_b
    ) as y
      on y.doc_a = x.doc_a
     and y.doc_b = x.doc_b
),
doc_scores as (
    select doc_a, doc_b, similarity, term_pairs from by_mean
    union all
    select doc_a, doc_b, similarity, term_pairs from by_bma
),
term_counts as (
    select pmid, count(*) as terms from mesh_doc_terms group by pmid
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
      on s.doc_a = dp.doc_a
     and s.doc_b = dp.doc_b
    left join term_counts as ca
      on ca.pmid = dp.doc_a
    left join term_counts as cb
      on cb.pmid = dp.doc_b
    left join checked
      on checked.ok is not null
)
select * from final
