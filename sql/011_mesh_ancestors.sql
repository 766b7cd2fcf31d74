-- mesh_ancestors: every descriptor paired with itself (distance 0) and with each ancestor.
-- An ancestor of t is a descriptor with a tree number that is a dotted prefix of one of t's
-- tree numbers. A descriptor with several tree numbers gets the union of the ancestors along
-- each; distance is the fewest tree levels between them over all tree numbers.
-- Top-level categories (A, B, C, ...) are not descriptors and never appear as ancestors.
create or replace view mesh_ancestors as
with all_descriptors as (
    select descriptor_ui from mesh_descriptors where descriptor_ui is not null
    union
    select descriptor_ui from mesh_tree where descriptor_ui is not null
),
self_pairs as (
    select
        descriptor_ui,
        descriptor_ui as ancestor_ui,
        0 as distance
    from all_descriptors
),
tree_pairs as (
    select
        descriptor_ui,
        prefix_ui as ancestor_ui,
        distance
    from mesh_tree_prefixes
),
final as (
    select
        descriptor_ui,
        ancestor_ui,
        min(distance)::integer as distance      -- tree levels; 0 for the descriptor itself
    from (
        select * from self_pairs
        union all
        select * from tree_pairs
    )
    group by descriptor_ui, ancestor_ui
)
select * from final
