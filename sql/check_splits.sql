-- check splits: every row returned is a broken rule (empty result = pass).
with duplicate_ids as (
    select split_id, 'duplicate split_id' as problem
    from {{splits}}
    group by split_id
    having count(*) > 1
),
bad_rows as (
    select split_id, 'missing field or negative count' as problem
    from {{splits}}
    where split_id is null or strategy is null or data_hash is null
       or train_rows is null or train_rows <= 0 or valid_rows < 0 or test_rows < 0
),
bad_strategy as (
    select split_id, 'unknown strategy ' || strategy as problem
    from {{splits}}
    where strategy not in ('random', 'user_fraction', 'temporal', 'leave_last_k')
),
many_current as (
    select string_agg(split_id, ',') as split_id, 'more than one current split' as problem
    from {{splits}}
    where is_current
    having count(*) > 1
)
select * from duplicate_ids
union all select * from bad_rows
union all select * from bad_strategy
union all select * from many_current
