-- mesh_kailin_exact_index: the index of the kailin-exact measure, the settings of KAILIN's own
-- code (DPO/mesh_score/cal_mesh_score.py):
--   include_self false   get_all_descendants leaves the term itself out (every leaf has IC 0)
--   granularity top      a category is the first dotted component (item.split('.')[0]: C04)
--   tree numbers only    descriptors without a tree number (check tags such as Female and Male
--                        in descriptor XML) are left out, as KAILIN's descriptor file is built
--                        without them (mesh_process/process_xml.py skips tree == []), so a
--                        term pair with one of them has no kailin-exact score
-- Read by name by mesh_term_sim_with and mesh_doc_sim; materialise it for big jobs.
create or replace view mesh_kailin_exact_index as
with final as (
    select *
    from mesh_kailin_index_with(false, 'top')
    where len(prefix_ranks) > 0                 -- the descriptor has a tree number
)
select * from final
