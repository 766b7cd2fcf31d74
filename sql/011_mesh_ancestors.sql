-- mesh_ancestors: every descriptor paired with itself (distance 0) and with each ancestor.
-- The parent edges come from tree numbers: the owner of the parent tree number of each of t's
-- tree numbers is a parent of t (`C04.557.470` -> owner of `C04.557`). The ancestors are the
-- transitive closure of those edges over descriptors, so a descriptor with several tree numbers
-- gets the ancestors along each, and the ancestors of its ancestors along theirs.
-- That closure contains every descriptor owning a dotted prefix of one of t's tree numbers
-- (DESIGN.md's definition), and more where MeSH does not repeat a subtree under every tree
-- number of its root (27,530 extra pairs in MeSH 2017); without them an ancestor could have a
-- smaller count than its descendant, and IC would not fall from child to ancestor.
-- distance: the fewest parent steps. Top-level categories (A, B, C, ...) are not descriptors.
create or replace view mesh_ancestors as
with recursive all_descriptors as materialized (
    select
        descriptor_ui,
        row_number() over (order by descriptor_ui)::integer as id
    from (
        select descriptor_ui from mesh_descriptors where descriptor_ui is not null
        union
        select descriptor_ui from mesh_tree where descriptor_ui is not null
    )
),
tree as materialized (
    select
        t.tree_number,
        d.id,
        array_to_string(string_split(t.tree_number, '.')[1:-2], '.') as parent_tree_number
    from mesh_tree as t
    join all_descriptors as d
      on d.descriptor_ui = t.descriptor_ui
),
parent_edges as materialized (
    select distinct
        t.id,
        p.id as parent_id
    from tree as t
    join tree as p
      on p.tree_number = t.parent_tree_number
    where t.id <> p.id
),
walk(id, ancestor_id, distance) as (
    select
        id,
        id,
        0
    from all_descriptors
    union
    select
        w.id,
        e.parent_id,
        w.distance + 1
    from walk as w
    join parent_edges as e
      on e.id = w.ancestor_id
    where w.distance < 64                        -- a guard against a cycle in a broken tree
),
closure as (
    select
        id,
        ancestor_id,
        min(distance) as distance
    from walk
    group by id, ancestor_id
),
final as (
    select
        d.descriptor_ui,
        a.descriptor_ui as ancestor_ui,
        c.distance::integer as distance         -- parent steps; 0 for the descriptor itself
    from closure as c
    join all_descriptors as d
      on d.id = c.id
    join all_descriptors as a
      on a.id = c.ancestor_id
)
select * from final
