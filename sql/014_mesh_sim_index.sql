-- mesh_sim_index: one row per (IC source, descriptor) with its ancestors ranked by IC, so that
-- the most informative common ancestor (MICA) of two descriptors is the first entry of one list
-- that also appears in the other (a list scan, not a join over ancestors).
--   ic_kind          corpus | intrinsic
--   ic_rank          the descriptor's position when all descriptors are ordered by IC, highest
--                    first (ties by UI; unseen descriptors, IC NULL, last)
--   ancestor_ranks   the ic_rank of every ancestor (itself included), ascending, so the
--                    highest-IC ancestor comes first
--   ancestor_ics     the IC of each of those ancestors, in the same order
--   ancestor_uis     their UIs, in the same order
-- The similarity macros read this view by name; materialise it into a table for big jobs.
create or replace view mesh_sim_index as
with ic as materialized (
    select * from mesh_ic
),
ancestors as materialized (
    select * from mesh_ancestors
),
ic_long as (
    select 'corpus' as ic_kind, descriptor_ui, ic_corpus as ic from ic
    union all
    select 'intrinsic' as ic_kind, descriptor_ui, ic_intrinsic as ic from ic
),
ranked as (
    select
        ic_kind,
        descriptor_ui,
        ic,
        row_number() over (
            partition by ic_kind
            order by ic desc nulls last, descriptor_ui
        )::integer as ic_rank
    from ic_long
),
final as (
    select
        d.ic_kind,
        d.descriptor_ui,
        any_value(d.ic) as ic,
        any_value(d.ic_rank) as ic_rank,
        list(r.ic_rank order by r.ic_rank) as ancestor_ranks,
        list(r.ic order by r.ic_rank) as ancestor_ics,
        list(r.descriptor_ui order by r.ic_rank) as ancestor_uis
    from ancestors as a
    join ranked as d
      on d.descriptor_ui = a.descriptor_ui
    join ranked as r
      on r.descriptor_ui = a.ancestor_ui
     and r.ic_kind = d.ic_kind
    group by d.ic_kind, d.descriptor_ui
)
select * from final
