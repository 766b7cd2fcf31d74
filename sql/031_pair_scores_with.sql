-- pair_scores_with(scorer, ic, aggregate, k, index_table, kailin_index_table, retriever,
-- versions): the MeSH score of every generated question, the evaluation agent's signal.
--   A question's document is questions.pmid; its contexts are the contexts rows of the question
--   with rank <= k, from the retrieve run with that k (all of them when k is NULL, the default),
--   from the given retriever (a label
--   such as dense:minilm or bm25; every retriever when NULL, the default).
--   versions: the questions to score, as 'agent|model|prompt_version' strings (the questions one
--   config wrote; 'agent|*' takes the agent's rows that record no model or prompt); every
--   question when NULL, the default.
--   context score   = mesh_doc_sim(document, context) with the given measure and aggregate
--   question score  = the mean of its context scores (contexts without a score are skipped)
--   scorer          resnik | lin (default) | jc | kailin | kailin-exact; ic: corpus (default) |
--                   intrinsic;
--                   aggregate: mean (default) | bma
-- One row per question: question_id, pmid, agent, similarity (NULL when no context could be
-- scored), scorer (a label such as lin/corpus/mean or kailin/mean/top5), n_contexts (the top-k
-- contexts found), n_scored (those with a score).
create or replace macro pair_scores_with(
    scorer := 'lin',
    ic := 'corpus',
    aggregate := 'mean',
    k := null,
    index_table := 'mesh_sim_index',
    kailin_index_table := 'mesh_kailin_index',
    retriever := null,
    versions := null
) as table
with question_docs as (
    select
        question_id,
        pmid,
        agent
    from questions
    where versions is null
       or list_contains(
           versions, agent || '|' || coalesce(model || '|' || prompt_version, '*')
       )
),
top_contexts as (
    select
        question_id,
        rank,
        pmid
    from contexts
    where (k is null or rank <= k)
      and (k is null or contexts.top_k is null or contexts.top_k = k)
      and (retriever is null or contexts.retriever = retriever)
),
doc_pairs as (
    select distinct
        q.pmid as a,
        c.pmid as b
    from question_docs as q
    join top_contexts as c
      on c.question_id = q.question_id
),
doc_sims as (
    select a, b, similarity
    from mesh_doc_sim('doc_pairs', scorer, ic, aggregate, index_table, kailin_index_table)
),
context_sims as (
    select
        c.question_id,
        d.similarity
    from top_contexts as c
    join question_docs as q
      on q.question_id = c.question_id
    left join doc_sims as d
      on d.a = q.pmid
     and d.b = c.pmid
),
per_question as (
    select
        question_id,
        avg(similarity::decimal(38, 18)) as similarity,   -- exact: the same in every run
        count(*) as n_contexts,
        count(similarity) as n_scored
    from context_sims
    group by question_id
),
final as (
    select
        q.question_id,
        q.pmid,
        q.agent,
        p.similarity,
        case when scorer like 'kailin%' then scorer else scorer || '/' || ic end
            || '/' || aggregate
            || coalesce('/top' || cast(k as varchar), '') as scorer,
        coalesce(p.n_contexts, 0) as n_contexts,
        coalesce(p.n_scored, 0) as n_scored
    from question_docs as q
    left join per_question as p
      on p.question_id = q.question_id
)
select * from final
