-- article_mesh: the MeSH headings of the current version of each article.
-- A heading that arrived by name only (descriptor_ui NULL) is resolved through mesh_names at
-- query time, so ingesting PubMedQA before MeSH loses nothing.
create or replace view article_mesh as
with current_records as (
    select
        m.pmid,
        m.descriptor_ui,
        m.descriptor_name,
        m.major_topic,   -- true when the descriptor or any of its qualifiers is starred
        m.qualifiers
    from article_mesh_records as m
    join articles as a
      on a.pmid = m.pmid
     and a.ingest_seq = m.ingest_seq
),
final as (
    select
        c.pmid,
        coalesce(c.descriptor_ui, n.descriptor_ui) as descriptor_ui,
        c.descriptor_name,
        c.major_topic,
        c.qualifiers
    from current_records as c
    left join mesh_names as n
      on c.descriptor_ui is null
     and lower(c.descriptor_name) = n.name_lc
)
select * from final
