-- mesh_kailin_index_with(include_self, granularity): one row per descriptor with what the
-- KAILIN-compatible scorer needs, as short lists, so that scoring a pair is a few list lookups.
--   descriptor_id    a dense integer id
--   prefix_ranks     every dotted prefix of every tree number of the descriptor (itself
--                    included), as its rank in the order (length desc, tree number asc),
--                    ascending; the first entry of a's list also in b's list is KAILIN's LCA:
--                    the longest common dotted prefix over all pairs of tree numbers, ties to
--                    the first pair (tree numbers sorted)
--   prefix_owners    descriptor_id of the descriptor owning each prefix, same order
--   top_bits         a 127-bit filter of the first dotted components of its tree numbers: two
--                    descriptors have a common prefix only if they share one, so
--                    (x.top_bits & y.top_bits) = 0 proves there is no LCA without a list scan
--   categories       the ids of the descriptor's categories (mesh_category of its tree numbers)
--   category_ics     IC in each of them, same order
--   lca_categories   the category ids where the descriptor, as an LCA, counts: those with
--                    max_ic > 0
--   lca_tmps         in each: ictmp = ic / max_ic of the category
--   lca_rels         in each: 1 - 10^(-ictmp * max_ic), the factor of KAILIN's Rel
create or replace macro mesh_kailin_index_with(include_self := true, granularity := 'letter') as table
with kic as materialized (
    select * from mesh_kailin_ic_with(include_self, granularity)
),
categories as (
    select
        category,
        row_number() over (order by category)::integer as category_id
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
per_category as (
    select
        k.descriptor_ui,
        list(c.category_id order by c.category_id) as categories,
        list(k.ic order by c.category_id) as category_ics,
        coalesce(
            list(c.category_id order by c.category_id) filter (where k.max_ic > 0),
            []::integer[]
        ) as lca_categories,
        coalesce(
            list(k.ic / k.max_ic order by c.category_id) filter (where k.max_ic > 0),
            []::double[]
        ) as lca_tmps,
        coalesce(
            list(1 - pow(10, -(k.ic / k.max_ic) * k.max_ic) order by c.category_id)
                filter (where k.max_ic > 0),
            []::double[]
        ) as lca_rels
    from kic as k
    join categories as c
      on c.category = k.category
    group by k.descriptor_ui
),
tops as (
    select
        top,
        (row_number() over (order by top) - 1) % 127 as bit
    from (select distinct split_part(tree_number, '.', 1) as top from mesh_tree)
),
top_bits as (
    select
        t.descriptor_ui,
        bit_or(1::hugeint << b.bit::hugeint) as top_bits
    from mesh_tree as t
    join tops as b
      on b.top = split_part(t.tree_number, '.', 1)
    group by t.descriptor_ui
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
        coalesce(b.top_bits, 0::hugeint) as top_bits,
        coalesce(c.categories, []::integer[]) as categories,
        coalesce(c.category_ics, []::double[]) as category_ics,
        coalesce(c.lca_categories, []::integer[]) as lca_categories,
        coalesce(c.lca_tmps, []::double[]) as lca_tmps,
        coalesce(c.lca_rels, []::double[]) as lca_rels
    from descriptors as d
    left join per_prefix as p
      on p.descriptor_ui = d.descriptor_ui
    left join top_bits as b
      on b.descriptor_ui = d.descriptor_ui
    left join per_category as c
      on c.descriptor_ui = d.descriptor_ui
)
select * from final
