-- mesh_term_kailin(pairs, index_table): the KAILIN-compatible similarity of term pairs,
-- reproducing DPO/mesh_score/cal_mesh_score.py of the KAILIN repository (after pyMeSHSim).
--   pairs        name of a table, view or CTE with columns a and b (descriptor UIs)
--   index_table  mesh_kailin_index (default) or a table built by mesh_kailin_index_with
-- L = the descriptor owning the longest common dotted prefix of any tree number of a and any of
-- b. For each category c of L that a and b also have, with MaxIC_c > 0 and
-- summed = IC_c(a) + IC_c(b) > 0:
--   ictmp = mean(IC_c(L) / MaxIC_c, IC_c(L) / MaxIC_c)     (KAILIN's MaxIC is per category)
--   lin   = 2 ictmp / summed
--   jiang = 1 - min(1, summed - 2 ictmp)
--   rel   = lin * (1 - 10^(-ictmp * MaxIC_c))
-- each clipped to [0, 1]; kailin = the mean of all of them over those categories.
-- a = b gives 1; no common prefix, or no category left, gives 0; an unknown UI gives NULL.
create or replace macro mesh_term_kailin(pairs, index_table := 'mesh_kailin_index') as table
with term_index as (
    select * from query_table(index_table)
),
matched as (
    select
        p.*,
        x.descriptor_ui is not null and y.descriptor_ui is not null as known,
        x.categories as categories_a,
        x.category_ics as ics_a,
        y.categories as categories_b,
        y.category_ics as ics_b,
        -- the LCA: a's first prefix (longest) that b also has; skipped without a shared top
        case
            when (x.top_bits & y.top_bits) <> 0 then x.prefix_owners[
                list_position(
                    list_transform(x.prefix_ranks, lambda r: list_contains(y.prefix_ranks, r)),
                    true
                )
            ]
        end as lca_id
    from query_table(pairs) as p
    left join term_index as x
      on x.descriptor_ui = p.a
    left join term_index as y
      on y.descriptor_ui = p.b
),
per_category as (
    select
        m.* exclude (known, categories_a, ics_a, categories_b, ics_b, lca_id),
        m.known,
        l.descriptor_ui as lca_ui,
        -- per category k of the LCA that counts: ictmp, the Rel factor, and
        -- summed = IC_c(a) + IC_c(b) (NULL when a or b is not in the category)
        list_transform(
            range(1, len(l.lca_categories) + 1),
            lambda k: {
                'ictmp': l.lca_tmps[k],
                'rel': l.lca_rels[k],
                'summed': m.ics_a[list_position(m.categories_a, l.lca_categories[k])]
                    + m.ics_b[list_position(m.categories_b, l.lca_categories[k])]
            }
        ) as terms
    from matched as m
    left join term_index as l
      on l.descriptor_id = m.lca_id
),
scored as (
    select
        * exclude (known, terms),
        case
            when not known then null
            when a = b then 1.0
            when lca_ui is null then 0.0
            else coalesce(
                list_avg(list_transform(
                    list_filter(terms, lambda v: v.summed > 0),
                    lambda v: (
                        greatest(0.0, least(1.0, 2 * v.ictmp / v.summed))
                        + greatest(0.0, least(1.0, 1 - least(1.0, v.summed - 2 * v.ictmp)))
                        + greatest(0.0, least(1.0, 2 * v.ictmp / v.summed * v.rel))
                    ) / 3
                )),
                0.0
            )
        end as kailin
    from per_category
),
final as (
    select * from scored
)
select * from final
