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
--   root_bits        a 127-bit filter of the roots (descriptors without a parent) among its
--                    ancestors: two descriptors have a common ancestor exactly when they share a
--                    root, so (x.root_bits & y.root_bits) = 0 proves there is none without a
--                    list scan (a bit is shared by several roots when there are more than 127)
-- The similarity macros read this view by name; materialise it into a table for big jobs.
create or replace view mesh_sim_index as
with ic as materialized (
    select * from mesh_ic
),
ancestors as materialized (
    select * from mesh_ancestors
),
roots as (
    select
        descriptor_ui,
        (row_number() over (order by descriptor_ui) - 1) % 127 as bit
    from ancestors
    group by descriptor_ui
    having max(distance) = 0                    -- no ancestor but itself
),
root_bits as (
    select
        a.descriptor_ui,
        bit_or(1::hugeint << r.bit::hugeint) as root_bits
    from ancestors as a
    join roots as r
      on r.descriptor_ui = a.ancestor_ui
    group by a.descriptor_ui
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
lists as (
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
),
final as (
    select
        l.*,
        coalesce(b.root_bits, 0::hugeint) as root_bits
    from lists as l
    left join root_bits as b
      on b.descriptor_ui = l.descriptor_ui
)
select * from final
