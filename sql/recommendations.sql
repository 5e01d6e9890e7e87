-- recommendations: top-N items per user from the live publication's Parquet; sorted (user_id, rank).
create or replace table {{recommendations}} as
with staged as (
    select user_id, rank, item_id, score, source, model_name, model_version, publication_id
    from read_parquet($path)
)
select * from staged
order by user_id, rank
