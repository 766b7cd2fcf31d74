-- mesh_category(tree_number, granularity): the category a tree number belongs to, for the
-- KAILIN-compatible scorer.
--   letter (default, DESIGN.md)  the first letter:               C04.557.470 -> C
--   top    (KAILIN's code)       the first dotted component:     C04.557.470 -> C04
create or replace macro mesh_category(tree_number, granularity := 'letter') as
    case
        when granularity = 'letter' then left(tree_number, 1)
        when granularity = 'top' then split_part(tree_number, '.', 1)
        else error('mesh_category: granularity must be letter or top, not ' || granularity)
    end
