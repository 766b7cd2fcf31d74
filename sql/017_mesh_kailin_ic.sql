-- mesh_kailin_ic: KAILIN's per-category IC with the defaults (descendants include the term
-- itself; categories are first letters). See mesh_kailin_ic_with for the other settings.
create or replace view mesh_kailin_ic as
with final as (
    select * from mesh_kailin_ic_with(true, 'letter')
)
select * from final
