-- mesh_term_sim_with(pairs, measure, ic, index_table, kailin_index_table): one similarity
-- column for term pairs, the measure chosen by name.
--   pairs    name of a table, view or CTE with columns a and b (descriptor UIs)
--   measure  resnik | lin (default) | jc | kailin
--   ic       corpus (default) | intrinsic; ignored by kailin, which has its own IC
-- Returns the columns of pairs plus similarity (NULL where the measure is undefined: see
-- mesh_term_sim).
create or replace macro mesh_term_sim_with(
    pairs,
    measure := 'lin',
    ic := 'corpus',
    index_table := 'mesh_sim_index',
    kailin_index_table := 'mesh_kailin_index'
) as table
with checked as (
    select
        case
            when measure not in ('resnik', 'lin', 'jc', 'kailin')
                then error('mesh: measure must be resnik, lin, jc or kailin, not ' || measure)
            when ic not in ('corpus', 'intrinsic')
                then error('mesh: ic must be corpus or intrinsic, not ' || ic)
        end as ok
),
ic_based as (
    select
        s.* exclude (ic_a, ic_b, mica_ui, resnik, lin, jc),
        case measure
            when 'resnik' then s.resnik
            when 'lin' then s.lin
            when 'jc' then s.jc
        end as similarity
    from mesh_term_sim(pairs, ic := ic, index_table := index_table) as s
    where measure <> 'kailin'
),
kailin_based as (
    select
        s.* exclude (lca_ui, kailin),
        s.kailin as similarity
    from mesh_term_kailin(pairs, index_table := kailin_index_table) as s
    where measure = 'kailin'
),
scored as (
    select * from ic_based
    union all
    select * from kailin_based
),
final as (
    select scored.*
    from scored
    left join checked                           -- raises the error of a bad argument
      on checked.ok is not null
)
select * from final
