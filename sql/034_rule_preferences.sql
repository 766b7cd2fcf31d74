-- rule_preferences: the rule label of each document with the default scorer of pair_scores
-- (lin/corpus/mean, all contexts), domain against general questions, no threshold.
-- Use rule_preferences_with(...) for another scorer, top-k, agents or KAILIN's threshold.
create or replace view rule_preferences as
with final as (
    select * from rule_preferences_with('lin', 'corpus', 'mean', null, null)
)
select * from final
