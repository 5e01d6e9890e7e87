-- publications: one row per retained publication (history), read from each snapshot's publication.json.
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
        served_alias: 'varchar'
    })
)
select * from history
order by created_at, publication_id
