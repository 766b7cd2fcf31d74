-- mesh_tree_prefixes: every MeSH tree number paired with each of its dotted prefixes that is
-- itself a tree number, and the descriptor that owns that prefix.
-- `C04.557.470` yields `C04.557.470` (distance 0), `C04.557` (1) and `C04` (2).
-- The building block of mesh_ancestors and of the KAILIN-compatible scorer.
create or replace view mesh_tree_prefixes as
with tree as (
    select
        tree_number,
        descriptor_ui,
        string_split(tree_number, '.') as parts
    from mesh_tree
    where tree_number is not null
      and descriptor_ui is not null
),
prefixes as (
    select
        t.descriptor_ui,
        t.tree_number,
        array_to_string(t.parts[1:r.k], '.') as prefix,
        len(t.parts) - r.k as distance          -- levels between the tree number and the prefix
    from tree as t,
        range(1, len(t.parts) + 1) as r(k)
),
final as (
    select
        p.descriptor_ui,                        -- the descriptor below
        p.tree_number,                          -- one of its tree numbers
        p.prefix,                               -- a dotted prefix of it (or itself)
        o.descriptor_ui as prefix_ui,           -- the descriptor that owns the prefix
        p.distance::integer as distance
    from prefixes as p
    join mesh_tree as o
      on o.tree_number = p.prefix
)
select * from final
