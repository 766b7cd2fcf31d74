-- mesh_term_sim(pairs, ic, index_table): Resnik, Lin and Jiang-Conrath similarity of term pairs.
--   pairs        name of a table, view or CTE with columns a and b (descriptor UIs); other
--                columns pass through
--   ic           corpus (default) | intrinsic
--   index_table  mesh_sim_index (default) or a table materialised from it
-- Per pair, with MICA the common ancestor of highest IC:
--   resnik = IC(MICA)
--   lin    = 2 IC(MICA) / (IC(a) + IC(b)); 1 when a = b; 0 when the denominator is 0
--   jc     = 1 / (1 + ((IC(a) - IC(MICA)) + (IC(b) - IC(MICA))))   (summed so that it is
--            exactly symmetric and never above 1 in floating point)
-- No common ancestor gives 0 for all three. A UI missing from MeSH, or a term never seen in the
-- corpus (IC NULL), gives NULL. ic_a, ic_b and mica_ui are returned for explanation.
create or replace macro mesh_term_sim(pairs, ic := 'corpus', index_table := 'mesh_sim_index') as table
with term_index as (
    select *
    from query_table(index_table)
    where ic_kind = ic
),
matched as (
    select
        p.*,
        x.ic as ic_a,
        y.ic as ic_b,
        -- 1-based position in a's IC-ordered ancestors of the first one that b shares; the
        -- scan is skipped when a and b share no root (no common ancestor)
        case
            when (x.root_bits & y.root_bits) <> 0 then list_position(
                list_transform(x.ancestor_ranks, lambda r: list_contains(y.ancestor_ranks, r)),
                true
            )
        end as mica_pos,
        x.ancestor_ics[mica_pos] as ic_mica,
        x.ancestor_uis[mica_pos] as mica_ui
    from query_table(pairs) as p
    left join term_index as x
      on x.descriptor_ui = p.a
    left join term_index as y
      on y.descriptor_ui = p.b
),
final as (
    select
        * exclude (mica_pos, ic_mica),
        case
            when ic_a is null or ic_b is null then null
            when mica_pos is null then 0.0
            else ic_mica
        end as resnik,
        case
            when ic_a is null or ic_b is null then null
            when a = b then 1.0
            when mica_pos is null or ic_a + ic_b = 0 then 0.0
            else 2 * ic_mica / (ic_a + ic_b)
        end as lin,
        case
            when ic_a is null or ic_b is null then null
            when a = b then 1.0
            when mica_pos is null then 0.0
            else 1 / (1 + ((ic_a - ic_mica) + (ic_b - ic_mica)))
        end as jc
    from matched
)
select * from final
