-- articles: the current version of every article in the lake.
-- article_records keeps every record version seen, in ingest order (ingest_seq). The latest
-- version of a PMID wins, and a DeleteCitation tombstone (deleted = true) removes the PMID,
-- following PubMed's update rules.
create or replace view articles as
with ranked as (
    select
        *,
        row_number() over (partition by pmid order by ingest_seq desc) as rn
    from article_records
),
final as (
    select
        pmid,
        title,
        abstract,
        journal,
        pub_year,        -- publication year (PubDate/Year, else the first year in MedlineDate)
        language,
        source,          -- pubmed | pubmedqa
        source_file,
        version,
        ingest_seq
    from ranked
    where rn = 1
      and not deleted
)
select * from final
