-- similar_items: top-K neighbours per item (tasks/publishing/item_similarity.py) from the live publication's Parquet; sorted (item_id, rank).
create or replace table {{similar_items}} as
with staged as (
    select item_id, rank, similar_item_id, similarity, source, model_name, model_version, publication_id
    from read_parquet($path)
)
select * from staged
order by item_id, rank
