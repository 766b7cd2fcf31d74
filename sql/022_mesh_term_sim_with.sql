-- mesh_term_sim_with(pairs, measure, ic, index_table, kailin_index_table,
-- kailin_exact_index_table): one similarity column for term pairs, the measure chosen by name.
--   pairs    name of a table, view or CTE with columns a and b (descriptor UIs)
--   measure  resnik | lin (default) | jc | kailin | kailin-exact
--            kailin-exact is mesh_term_kailin over kailin_exact_index_table (default
--            mesh_kailin_exact_index: KAILIN's code's settings; NULL for a descriptor without a
--            tree number)
--   ic       corpus (default) | intrinsic; ignored by kailin and kailin-exact, which have their
--            own IC
-- Returns the columns of pairs plus similarity (NULL where the measure is undefined: see
-- mesh_term_sim).
create or replace macro mesh_term_sim_with(
    pairs,
    measure := 'lin',
    ic := 'corpus',
    index_table := 'mesh_sim_index',
    kailin_index_table := 'mesh_kailin_index',
    kailin_exact_index_table := 'mesh_kailin_exact_index'
) as table
with checked as (
    select
        case
            when measure not in ('resnik', 'lin', 'jc', 'kailin', 'kailin-exact')
                then error(
                    'mesh: measure must be resnik, lin, jc, kailin or kailin-exact, not '
                    || measure
                )
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
    where measure not in ('kailin', 'kailin-exact')
),
kailin_based as (
    select
        s.* exclude (lca_ui, kailin),
        s.kailin as similarity
    from mesh_term_kailin(
        pairs,
        index_table := case
            when measure = 'kailin-exact' then kailin_exact_index_table
            else kailin_index_table
        end
    ) as s
    where measure in ('kailin', 'kailin-exact')
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
