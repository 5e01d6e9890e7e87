-- split_ratings: which part (train, valid, test) each rating belongs to in the CURRENT split.
create or replace table {{split_ratings}} as
with parts as (
    select user_id, item_id, $train as part from read_parquet($train_file)
    union all
    select user_id, item_id, $valid as part from read_parquet($valid_file)
    union all
    select user_id, item_id, $test as part from read_parquet($test_file)
)
select
    user_id,
    item_id,
    part,
    $split_id as split_id
from parts
order by user_id, item_id
