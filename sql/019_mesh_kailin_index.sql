-- mesh_kailin_index: mesh_kailin_index_with at the defaults (descendants include the term
-- itself; categories are first letters). Read by mesh_term_kailin.
create or replace view mesh_kailin_index as
with final as (
    select * from mesh_kailin_index_with(true, 'letter')
)
select * from final
