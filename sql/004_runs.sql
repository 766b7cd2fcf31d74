-- runs: one row per stage run, from the append-only run_events log.
-- status is the last event of the run: running (no end event yet), finished, skipped (too
-- little data to do its job; the reason is in error), failed, interrupted (Ctrl-C) or killed
-- (a later run found the process gone and recorded it).
create or replace view runs as
with started as (
    select *
    from run_events
    where event = 'started'
),
ended as (
    select *
    from run_events
    where event <> 'started'
    qualify row_number() over (partition by run_id order by event_time desc) = 1
),
final as (
    select
        s.run_id,
        s.stage,
        coalesce(e.event, 'running') as status,
        s.config_hash,
        s.models,
        s.scorer,
        s.executor,
        coalesce(e.rows_in, s.rows_in) as rows_in,
        e.rows_out,
        e.tokens_in,
        e.tokens_out,
        e.cost_usd,
        s.event_time as started,
        e.event_time as finished,
        date_diff('millisecond', s.event_time, e.event_time) / 1000.0 as seconds,
        s.pid,
        s.resumed_from,
        e.error,
        coalesce(e.detail, s.detail) as detail
    from started as s
    left join ended as e
      using (run_id)
)
select * from final
