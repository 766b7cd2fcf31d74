-- mesh_names: every lower-cased descriptor name and entry term, mapped to its descriptor UI.
-- Used to resolve MeSH headings that arrive as names only (PubMedQA's MESHES).
create or replace view mesh_names as
with names as (
    select
        descriptor_ui,
        lower(name) as name_lc,
        0 as preference          -- a heading name beats an entry term
    from mesh_descriptors
    union all
    select
        descriptor_ui,
        lower(unnest(entry_terms)) as name_lc,
        1 as preference
    from mesh_descriptors
),
final as (
    select
        name_lc,
        arg_min(descriptor_ui, preference) as descriptor_ui
    from names
    group by name_lc
)
select * from final
