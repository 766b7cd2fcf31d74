-- mesh_kailin_index_with(include_self, granularity): one row per descriptor with what the
-- KAILIN-compatible scorer needs, as lists, so that scoring a pair is a few list lookups.
--   descriptor_id    a dense integer id
--   prefix_ranks     every dotted prefix of every tree number of the descriptor (itself
--                    included), as its rank in the order (length desc, tree number asc),
--                    ascending; the first entry of a's list also in b's list is KAILIN's LCA:
--                    the longest common dotted prefix over all pairs of tree numbers, ties to
--                    the first pair (tree numbers sorted)
--   prefix_owners    descriptor_id of the descriptor owning each prefix, same order
--   ics              ic per category_id (1-based position), NULL where the descriptor has no
--                    tree number in that category
--   lca_tmps         per category: ictmp = ic / max_ic of the category when the descriptor is
--                    the LCA (NULL where max_ic = 0 or not in the category)
--   lca_rels         per category: 1 - 10^(-ictmp * max_ic), the factor of KAILIN's Rel
--   lca_categories   the category ids where lca_tmps is not NULL
create or replace macro mesh_kailin_index_with(include_self := true, granularity := 'letter') as table
with kic as materialized (
    select * from mesh_kailin_ic_with(include_self, granularity)
),
categories as (
    select
        category,
        row_number() over (order by category)::integer as category_id,
        any_value(max_ic) as max_ic
    from kic
    group by category
),
descriptors as materialized (
    select
        descriptor_ui,
        row_number() over (order by descriptor_ui)::integer as descriptor_id
    from (
        select descriptor_ui from mesh_descriptors where descriptor_ui is not null
        union
        select descriptor_ui from mesh_tree where descriptor_ui is not null
    )
),
grid as (
    select
        d.descriptor_ui,
        c.category_id,
        k.ic,
        case when c.max_ic > 0 then k.ic / c.max_ic end as tmp,
        c.max_ic
    from descriptors as d
    cross join categories as c
    left join kic as k
      on k.descriptor_ui = d.descriptor_ui
     and k.category = c.category
),
per_category as (
    select
        descriptor_ui,
        list(ic order by category_id) as ics,
        list(tmp order by category_id) as lca_tmps,
        list(1 - pow(10, -tmp * max_ic) order by category_id) as lca_rels,
        coalesce(
            list(category_id order by category_id) filter (where tmp is not null),
            []::integer[]
        ) as lca_categories
    from grid
    group by descriptor_ui
),
prefix_ranks as (
    select
        tree_number,
        row_number() over (order by length(tree_number) desc, tree_number)::integer as prefix_rank
    from mesh_tree
),
term_prefixes as (
    select distinct
        p.descriptor_ui,
        r.prefix_rank,
        o.descriptor_id as owner_id
    from mesh_tree_prefixes as p
    join prefix_ranks as r
      on r.tree_number = p.prefix
    join descriptors as o
      on o.descriptor_ui = p.prefix_ui
),
per_prefix as (
    select
        descriptor_ui,
        list(prefix_rank order by prefix_rank) as prefix_ranks,
        list(owner_id order by prefix_rank) as prefix_owners
    from term_prefixes
    group by descriptor_ui
),
final as (
    select
        d.descriptor_ui,
        d.descriptor_id,
        coalesce(p.prefix_ranks, []::integer[]) as prefix_ranks,
        coalesce(p.prefix_owners, []::integer[]) as prefix_owners,
        c.ics,
        c.lca_tmps,
        c.lca_rels,
        c.lca_categories
    from descriptors as d
    left join per_prefix as p
      on p.descriptor_ui = d.descriptor_ui
    left join per_category as c
      on c.descriptor_ui = d.descriptor_ui
)
select * from final
