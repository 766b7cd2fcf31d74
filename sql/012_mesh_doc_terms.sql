-- mesh_doc_terms: the distinct MeSH descriptors of each current article (its MeSH "document").
-- Headings that could not be mapped to a descriptor UI are left out; a heading listed twice
-- counts once.
create or replace view mesh_doc_terms as
with final as (
    select distinct
        pmid,
        descriptor_ui
    from article_mesh
    where descriptor_ui is not null
)
select * from final
