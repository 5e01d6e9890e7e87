-- check: every published row carries this publication's id and a model name and version.
with tagged as (
    select 'recommendations' as table_name, user_id as id, rank, publication_id, model_name, model_version
    from {{recommendations}}
    union all
    select 'similar_items', item_id, rank, publication_id, model_name, model_version
    from {{similar_items}}
)
select * from tagged
where publication_id is distinct from $publication_id or model_name is null or model_version is null
limit 10
