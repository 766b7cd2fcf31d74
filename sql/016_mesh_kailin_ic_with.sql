-- mesh_kailin_ic_with(include_self, granularity): KAILIN's per-category information content.
-- One row per (descriptor, category of one of its tree numbers):
--   annotations(d)   distinct articles annotated with d (mesh_doc_terms)
--   total_c          sum of annotations(d) over the descriptors d with a tree number in c
--                    (a descriptor in several categories counts in each)
--   freq_c(d)        annotations(d) / total_c
--   freq_total       sum of freq_c(d) over the descendants d of t in c, each counted once.
--                    As KAILIN's walk (get_all_descendants): d is a descendant of t in c when
--                    d has a tree number in c whose parent tree number belongs to t or to a
--                    descendant of t (mesh_ancestors). t itself is added when include_self
--                    (default true); KAILIN's walk leaves it out, which gives every leaf IC 0
--   ic               -log10(freq_total) when 0 < freq_total <= 1, else 0 (base 10, as KAILIN)
--   max_ic           the largest ic in the category (KAILIN's MaxIC)
create or replace macro mesh_kailin_ic_with(include_self := true, granularity := 'letter') as table
with tree as materialized (
    select
        descriptor_ui,
        mesh_category(tree_number, granularity) as category,
        array_to_string(string_split(tree_number, '.')[1:-2], '.') as parent_tree_number
    from mesh_tree
    where descriptor_ui is not null
),
term_categories as (
    select distinct
        descriptor_ui,
        category
    from tree
),
annotations as (
    select
        descriptor_ui,
        count(*) as annotations
    from mesh_doc_terms
    group by descriptor_ui
),
category_totals as (
    select
        tc.category,
        sum(a.annotations) as total
    from term_categories as tc
    join annotations as a
      on a.descriptor_ui = tc.descriptor_ui
    group by tc.category
),
child_edges as (
    select
        c.descriptor_ui as child_ui,
        c.category,                             -- the category of the child's tree number
        p.descriptor_ui as parent_ui
    from tree as c
    join mesh_tree as p
      on p.tree_number = c.parent_tree_number
    where p.descriptor_ui <> c.descriptor_ui
),
descendants as (
    select distinct
        a.ancestor_ui as descriptor_ui,
        e.category,
        e.child_ui as descendant_ui
    from child_edges as e
    join mesh_ancestors as a
      on a.descriptor_ui = e.parent_ui
    where e.child_ui <> a.ancestor_ui
    union
    select
        descriptor_ui,
        category,
        descriptor_ui as descendant_ui
    from term_categories
    where include_self
),
sums as (
    select
        d.descriptor_ui,
        d.category,
        sum(a.annotations) / any_value(c.total) as freq_total
    from descendants as d
    join annotations as a
      on a.descriptor_ui = d.descendant_ui
    join category_totals as c
      on c.category = d.category
    group by d.descriptor_ui, d.category
),
ic as (
    select
        tc.descriptor_ui,
        tc.category,
        coalesce(s.freq_total, 0.0) as freq_total,
        case
            when s.freq_total > 0 and s.freq_total <= 1 then -log10(s.freq_total)
            else 0.0
        end as ic
    from term_categories as tc
    left join sums as s
      on s.descriptor_ui = tc.descriptor_ui
     and s.category = tc.category
),
final as (
    select
        descriptor_ui,
        category,
        freq_total,
        ic,
        max(ic) over (partition by category) as max_ic
    from ic
)
select * from final
