-- publications: one row per retained publication (history), read from each snapshot's publication.json;
-- stale is true when a publication was scored on other data than the warehouse's ratings ($data_hash):
-- items rated since were taken out of its recommendations when the warehouse was built.
create or replace table {{publications}} as
with history as (
    select *
    from read_json($files, format = 'newline_delimited', columns = {
        publication_id: 'varchar',
        created_at: 'timestamptz',
        model_name: 'varchar',
        model_version: 'varchar',
        model_uri: 'varchar',
        similarity_model_name: 'varchar',
        similarity_model_version: 'varchar',
        similarity_model_uri: 'varchar',
        split_id: 'varchar',
        data_hash: 'varchar',
        metrics_json: 'varchar',
        snapshot_path: 'varchar',
        recommendation_rows: 'bigint',
        similar_item_rows: 'bigint',
        health_json: 'varchar',
        evaluated_model_version: 'varchar',
        similarity_evaluated_model_version: 'varchar',
        served_alias: 'varchar',
        rating_model_name: 'varchar',
        rating_model_version: 'varchar',
        rating_model_uri: 'varchar',
        rating_evaluated_model_version: 'varchar'
    })
)
select
    *,
    data_hash is distinct from cast($data_hash as varchar) as stale
from history
order by created_at, publication_id
