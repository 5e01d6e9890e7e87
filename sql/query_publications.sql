-- question: the retained publications, newest first: models, lineage, row counts, where the snapshot is;
-- stale: scored on other data than the warehouse's ratings (items rated since are filtered out).
-- no variables. DuckDB CLI, on the warehouse file: .read sql/query_publications.sql
with history as (
    select * from publications
)
select
    publication_id,
    created_at,
    model_name,
    model_version,
    similarity_model_name,
    similarity_model_version,
    rating_model_name,
    rating_model_version,
    split_id,
    data_hash,
    recommendation_rows,
    similar_item_rows,
    snapshot_path,
    stale
from history
order by created_at desc, publication_id desc
