-- pair_scores: the MeSH score of every question with the default scorer: Lin similarity on
-- corpus IC, the mean over the term cross product, the mean over all of a question's contexts.
-- Use pair_scores_with(scorer, ic, aggregate, k) for another scorer.
create or replace view pair_scores as
with final as (
    select * from pair_scores_with('lin', 'corpus', 'mean', null)
)
select * from final
