-- rule_preferences_with(scorer, ic, aggregate, k, threshold, agents, ..., retriever, versions):
-- the rule label of each document, from the MeSH scores of the questions generated for it.
--   versions (default NULL, all): only the questions whose 'agent|model|prompt_version' is
--   listed, i.e. those one config wrote (see pair_scores_with).
--   Among the questions of a PMID from the given agents (default domain and general) that have
--   a score, the best-scoring one is chosen and the worst-scoring one rejected (ties among
--   equals broken by question_id). margin = chosen_score - rejected_score.
--   No pair when the two scores tie (a margin of at most 1e-12, so that scores equal but for
--   floating-point rounding still tie) or the PMID has fewer than two scored questions.
--   threshold (default NULL, off): KAILIN's filter, which keeps a pair only when both scores
--   are <= threshold (0.5 in KAILIN's README).
-- Columns: pmid, chosen_id, rejected_id, chosen, rejected (question texts), chosen_score,
-- rejected_score, margin, scorer.
create or replace macro rule_preferences_with(
    scorer := 'lin',
    ic := 'corpus',
    aggregate := 'mean',
    k := null,
    threshold := null,
    agents := ['domain', 'general'],
    index_table := 'mesh_sim_index',
    kailin_index_table := 'mesh_kailin_index',
    retriever := null,
    versions := null
) as table
with scored as (
    select
        s.question_id,
        s.pmid,
        s.similarity,
        s.scorer as scorer_label,
        q.question
    from pair_scores_with(
        scorer, ic, aggregate, k, index_table, kailin_index_table, retriever, versions
    )
        as s
    join questions as q
      on q.question_id = s.question_id
    where s.similarity is not null
      and (agents is null or list_contains(agents, s.agent))
),
ranked as (
    select
        *,
        row_number() over (partition by pmid order by similarity desc, question_id) as best,
        row_number() over (partition by pmid order by similarity asc, question_id) as worst
    from scored
),
final as (
    select
        c.pmid,
        c.question_id as chosen_id,
        r.question_id as rejected_id,
        c.question as chosen,
        r.question as rejected,
        c.similarity as chosen_score,
        r.similarity as rejected_score,
        c.similarity - r.similarity as margin,
        c.scorer_label as scorer
    from ranked as c
    join ranked as r
      on r.pmid = c.pmid
     and r.worst = 1
    where c.best = 1
      and c.similarity - r.similarity > 1e-12
      and (
          threshold is null
          or (c.similarity <= threshold and r.similarity <= threshold)
      )
)
select * from final
