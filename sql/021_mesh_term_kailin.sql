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
        x.ics as ics_a,
        y.ics as ics_b,
        x.prefix_owners[
            list_position(
                list_transform(x.prefix_ranks, lambda r: list_contains(y.prefix_ranks, r)),
                true
            )
        ] as lca_id
    from query_table(pairs) as p
    left join term_index as x
      on x.descriptor_ui = p.a
    left join term_index as y
      on y.descriptor_ui = p.b
),
scored as (
    select
        m.* exclude (known, ics_a, ics_b, lca_id),
        l.descriptor_ui as lca_ui,
        case
            when not m.known then null
            when m.a = m.b then 1.0
            when l.descriptor_ui is null then 0.0
            else coalesce(
                list_avg(list_transform(
                    list_filter(l.lca_categories, lambda c: m.ics_a[c] + m.ics_b[c] > 0),
                    lambda c: (
                        greatest(0.0, least(1.0,
                            2 * l.lca_tmps[c] / (m.ics_a[c] + m.ics_b[c])))
                        + greatest(0.0, least(1.0,
                            1 - least(1.0, m.ics_a[c] + m.ics_b[c] - 2 * l.lca_tmps[c])))
                        + greatest(0.0, least(1.0,
                            2 * l.lca_tmps[c] / (m.ics_a[c] + m.ics_b[c]) * l.lca_rels[c]))
                    ) / 3
                )),
                0.0
            )
        end as kailin
    from matched as m
    left join term_index as l
      on l.descriptor_id = m.lca_id
),
final as (
    select * from scored
)
select * from final
