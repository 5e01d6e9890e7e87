-- publication_metrics: reach and bias figures of every publication ever made, one row per publication
-- and metric, read from publications/metrics/<publication_id>.json (tasks/publishing/publication_metrics.py).
create or replace table {{publication_metrics}} as
with recorded as (
    select *
    from read_json($files, format = 'newline_delimited', columns = {
        publication_id: 'varchar',
        metric: 'varchar',
        value: 'double'
    })
)
select publication_id, metric, value from recorded
order by publication_id, metric
