-- check split_ratings: every row returned is a broken rule (empty result = pass).
-- $split_id: the current split; $parts: the allowed part names.
with duplicate_pairs as (
    select 'rating in more than one part: user ' || user_id || ' item ' || item_id as problem
    from {{split_ratings}}
    group by user_id, item_id
    having count(*) > 1
),
bad_part as (
    select distinct 'unknown part ' || coalesce(part, 'null') as problem
    from {{split_ratings}}
    where part is null or not list_contains($parts, part)
),
counts as (
    select part, count(*) as n
    from {{split_ratings}}
    group by part
),
expected as (
    select unnest(['train', 'valid', 'test']) as part,
           unnest([train_rows, valid_rows, test_rows]) as n
    from {{splits}}
    where split_id = $split_id
),
count_mismatch as (
    select 'part ' || e.part || ' has ' || coalesce(a.n, 0) || ' rows, split.json says ' || e.n as problem
    from expected as e
    left join counts as a using (part)
    where coalesce(a.n, 0) <> e.n
),
missing_split as (
    select 'current split ' || $split_id || ' is not in splits' as problem
    where not exists (select 1 from {{splits}} where split_id = $split_id)
)
select * from duplicate_pairs
union all select * from bad_part
union all select * from count_mismatch
union all select * from missing_split
