-- mesh_ic: the information content of every descriptor, from the corpus and from the tree.
--   count(t)      distinct articles annotated with t or any descendant of t (by
--                 mesh_ancestors); each article counts once per ancestor, however many of
--                 its terms fall below it
--   N             distinct articles with at least one annotation (mesh_doc_terms)
--   ic_corpus     -ln(count / N), in nats; NULL when count = 0 (never seen in the corpus)
--   descendants   distinct descriptors strictly below t
--   M             number of descriptors
--   ic_intrinsic  Seco et al. (2004): 1 - ln(descendants + 1) / ln(M); 1 for a leaf
create or replace view mesh_ic as
with ancestors as materialized (
    select * from mesh_ancestors
),
doc_terms as materialized (
    select * from mesh_doc_terms
),
counts as (
    select
        a.ancestor_ui as descriptor_ui,
        count(distinct d.pmid) as count
    from doc_terms as d
    join ancestors as a
      on a.descriptor_ui = d.descriptor_ui
    group by a.ancestor_ui
),
descendants as (
    select
        ancestor_ui as descriptor_ui,
        count(*) filter (where descriptor_ui <> ancestor_ui) as descendants
    from ancestors
    group by ancestor_ui
),
totals as (
    select
        (select count(distinct pmid) from doc_terms) as n_articles,
        (select count(*) from descendants) as n_descriptors
),
final as (
    select
        d.descriptor_ui,
        coalesce(c.count, 0) as count,
        case
            when c.count > 0 then -ln(c.count::double / t.n_articles)
        end as ic_corpus,
        case
            when t.n_descriptors > 1 then 1 - ln(d.descendants + 1) / ln(t.n_descriptors)
        end as ic_intrinsic,
        d.descendants
    from descendants as d
    cross join totals as t
    left join counts as c
      on c.descriptor_ui = d.descriptor_ui
)
select * from final
