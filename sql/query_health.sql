-- question: how healthy is the live publication, and how has it moved? Per metric: its value in the live
-- publication (the one `recommendations` serves), in the publication before it, the change, and the
-- range and last five values over every recorded publication up to it. Runs as written in the DuckDB CLI;
-- `set variable health_publication_id = '<id>'` looks at another publication instead.
with chosen as (
    select coalesce(
        getvariable('health_publication_id'),
        (select max(publication_id) from recommendations)
    ) as publication_id
),
history as (
    select
        publication_id,
        metric,
        value,
        lag(publication_id) over (partition by metric order by publication_id) as previous_publication_id,
        lag(value) over (partition by metric order by publication_id) as previous_value
    from publication_metrics
    where publication_id <= (select publication_id from chosen)
),
live as (
    select * from history where publication_id = (select publication_id from chosen)
),
trend as (
    select
        metric,
        count(*) as n_publications,
        min(value) as history_min,
        max(value) as history_max,
        avg(value) as history_mean,
        list(round(value, 4) order by publication_id desc)[1:5] as last_5_newest_first
    from history
    group by metric
)
select
    live.metric,
    live.publication_id as live_publication_id,
    round(live.value, 4) as live_value,
    live.previous_publication_id,
    round(live.previous_value, 4) as previous_value,
    round(live.value - live.previous_value, 4) as change,
    round((live.value - live.previous_value) / nullif(abs(live.previous_value), 0), 4) as relative_change,
    trend.n_publications,
    round(trend.history_min, 4) as history_min,
    round(trend.history_max, 4) as history_max,
    round(trend.history_mean, 4) as history_mean,
    trend.last_5_newest_first
from live
join trend using (metric)
order by live.metric
